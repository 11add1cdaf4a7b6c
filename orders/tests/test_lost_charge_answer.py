"""A charge whose answer never came back: the money moved, so the compensation refunds it.

The place-order saga runs in this process (``drive`` plays the worker) on the real
participants and the simulated processor. Two ways to lose the answer: the processor takes the
money and every reply times out (``tok_lostResponse``), or the worker dies after the call on
every delivery until the poison guard gives up. Either way nothing of ours records the charge,
so ``refund_payment`` has to ask the processor what the charge's key did.
"""

from __future__ import annotations

import subprocess
from decimal import Decimal

import pytest

from backoffice.invariants import invariants_check
from orders.models import OrderSummary
from orders.sagas import GATEWAY_RETRY
from orders.services import OrderLineRequest, PlacedOrder, order_place
from payments.models import Payment, PaymentStatus, SimulatedCharge, SimulatedRefund
from payments.selectors import payment_totals_for_order
from payments.simulated import SimulatedGateway
from sagas.claims import Claimed, attempt_claim
from sagas.definitions import idempotency_key
from sagas.models import Saga
from sagas.statuses import Phase, SagaStatus, StepStatus
from sagas.tests.harness import SteppingClock, drive, log_of, run_step, step_statuses
from sagas.workers import WorkerIdentity, worker_of
from tests.factories import make_product

pytestmark = pytest.mark.django_db

BASELINE = {"LOST-A": 20, "LOST-B": 5}
TOTAL = Decimal("25.00")  # 2 x 10.00 + 1 x 5.00


@pytest.fixture(autouse=True)
def catalogue() -> None:
    make_product("LOST-A", price="10.00", stock=20)
    make_product("LOST-B", price="5.00", stock=5)


def place(token: str) -> PlacedOrder:
    return order_place(
        customer_id="c-lost",
        lines=[OrderLineRequest("LOST-A", 2), OrderLineRequest("LOST-B", 1)],
        payment_token=token,
        actor="user:1",
    )


def charge_key(placed: PlacedOrder) -> str:
    return idempotency_key(saga_id=placed.saga_id, step="charge_payment", phase="action")


def assert_taken_and_given_back(placed: PlacedOrder) -> None:
    """The processor took the order's money once and paid all of it back; our books agree."""
    charge = SimulatedCharge.objects.get(idempotency_key=charge_key(placed))
    assert (charge.outcome, charge.amount) == ("APPROVED", TOTAL)
    assert [r.amount for r in SimulatedRefund.objects.filter(charge=charge)] == [TOTAL]
    payment = Payment.objects.get(order_id=placed.order_id)
    assert (payment.idempotency_key, payment.status, payment.gateway_reference) == (
        charge_key(placed),
        PaymentStatus.REFUNDED,
        charge.reference,
    )
    assert payment_totals_for_order(order_id=placed.order_id) == (TOTAL, TOTAL)
    order = OrderSummary.objects.get(pk=placed.order_id)
    assert (order.status, order.cancellation_reason) == ("CANCELLED", "step_failed")
    report = invariants_check(stock_baseline=BASELINE)
    assert report.violations == [], "\n".join(map(str, report.violations))


def test_a_charge_whose_every_answer_was_lost_is_looked_up_recorded_and_refunded() -> None:
    placed = place("tok_lostResponse")

    saga = drive(placed.saga_id)

    assert saga.status == SagaStatus.COMPENSATED
    # Every try timed out, each time with the money already taken by the first.
    assert log_of(placed.saga_id, "charge_payment") == ["RETRYING"] * (
        GATEWAY_RETRY.max_attempts - 1
    ) + ["FAILED"]
    assert SimulatedCharge.objects.filter(idempotency_key=charge_key(placed)).count() == 1
    assert log_of(placed.saga_id, "charge_payment", "compensation") == ["SUCCEEDED"]
    assert step_statuses(placed.saga_id)["charge_payment"] == StepStatus.COMPENSATED
    assert_taken_and_given_back(placed)


def dead_worker() -> WorkerIdentity:
    """Name a worker process of this host that has just exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    return worker_of(process.pid, "celery@here/dead")


def test_a_charge_whose_worker_died_after_the_call_on_every_delivery_is_refunded() -> None:
    placed = place("tok_visa")
    clock = SteppingClock()
    assert run_step(placed.saga_id, clock=clock).ran  # reserve_inventory
    assert Saga.objects.get(pk=placed.saga_id).current_step == "charge_payment"
    # Each delivery's worker reached the processor, which took the money (the same key
    # each time: one charge), and died before its answer was recorded here.
    for _ in range(3):
        claimed = attempt_claim(
            saga_id=placed.saga_id,
            step="charge_payment",
            phase=Phase.ACTION,
            worker=dead_worker(),
            now=clock(),
        )
        assert isinstance(claimed, Claimed), claimed
        SimulatedGateway().charge(
            amount=TOTAL,
            currency="EUR",
            payment_method=str(Saga.objects.get(pk=placed.saga_id).context["payment_method"]),
            idempotency_key=charge_key(placed),
        )
    Saga.objects.filter(pk=placed.saga_id).update(redeliveries=3)

    gave_up = run_step(placed.saga_id, clock=clock)
    saga = drive(placed.saga_id, clock=clock)

    assert not gave_up.ran and "poison guard" in gave_up.detail

    assert saga.status == SagaStatus.COMPENSATED
    assert "poison guard" in saga.failure_message
    assert_taken_and_given_back(placed)
