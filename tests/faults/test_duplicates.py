"""Every order step and compensation delivered twice at once has one effect.

Two layers can see a duplicate: the saga engine (a broker redelivering a step message while
the first copy runs) and the participant (a worker killed after its effect and before the
saga row recorded it calls the participant again). Both are driven here with two threads
started together on a barrier, for each step and compensation of the place-order and
cancel-order sagas, against real PostgreSQL. Then the effects are counted: one reservation
transition, one charge, one refund, one event per fact, and the invariant checker passes.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
from django.db import connection
from django.utils import timezone

from eventstore.models import StoredEvent
from inventory.models import Product, Reservation
from orders import sagas as order_sagas
from orders.services import (
    CANCEL_ORDER,
    PLACE_ORDER,
    OrderLineRequest,
    order_place,
    order_request_cancellation,
)
from payments.models import Payment, Refund, SimulatedCharge, SimulatedRefund
from sagas.definitions import StepBusinessFailure, StepCall, idempotency_key
from sagas.faults import fault_rule_set
from sagas.models import Saga, SagaStepExecution
from sagas.runner import AttemptReport, step_attempt_run
from sagas.statuses import MOVING_SAGA_STATUSES, FaultMode, Phase, SagaStatus
from sagas.tests.harness import drive
from sagas.workers import WorkerIdentity
from tests.factories import make_product
from tests.support.invariants import assert_invariants

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("unconsumed_queue")]

STOCK = 40
#: Two worker processes on two hosts, each taking one copy of a message.
HOSTS = [WorkerIdentity(host=f"dup-host-{n}", pid=4000 + n, name=f"dup-host-{n}") for n in (1, 2)]


def twice_at_once(work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(0)`` and ``work(1)`` in two threads released together; return what each did."""
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def deliver_each_message_twice(saga_id: UUID) -> Counter[str]:
    """Deliver the saga's next step message twice at once until it rests; count who ran it.

    The real clock, not a stepping one: both copies must agree on the time, as two workers do.
    The copies run as two worker hosts: two threads of one process would share a pid, and a
    claim tells a live attempt of its own pid from a dead one only once the attempt started.
    """
    ran: Counter[str] = Counter()
    for _ in range(50):
        saga = Saga.objects.get(pk=saga_id)
        if saga.status not in MOVING_SAGA_STATUSES:
            return ran
        step, phase = saga.current_step, Phase(saga.current_phase)

        def deliver(index: int, step: str = step, phase: Phase = phase) -> AttemptReport:
            return step_attempt_run(
                saga_id=saga_id,
                step=step,
                phase=phase,
                worker=HOSTS[index],
                clock=timezone.now,
            )

        reports = twice_at_once(deliver)
        for report in reports:
            assert not isinstance(report, Exception), report
        ran[f"{step} {phase.value}"] += sum(1 for r in reports if r.ran)
    raise AssertionError(f"saga {saga_id} never came to rest")


def call_twice_at_once(saga_id: UUID, step: str, phase: Phase) -> list[Any]:
    """Call the participant of ``step``'s ``phase`` twice at once, with one idempotency key."""
    saga = Saga.objects.get(pk=saga_id)
    definition = {
        PLACE_ORDER: order_sagas.PLACE_ORDER_SAGA,
        CANCEL_ORDER: order_sagas.CANCEL_ORDER_SAGA,
    }
    target = definition[saga.saga_type].steps[definition[saga.saga_type].index(step)]
    participant = target.action if phase is Phase.ACTION else target.compensation
    assert participant is not None
    call = StepCall(
        saga_id=saga_id,
        saga_type=saga.saga_type,
        step=step,
        phase="action" if phase is Phase.ACTION else "compensation",
        attempt=1,
        idempotency_key=idempotency_key(saga_id=saga_id, step=step, phase=phase.value),
        context=saga.context,
        correlation_id=saga.correlation_id,
        actor=saga.actor,
        failure=saga.failure,
    )
    return twice_at_once(lambda _index: participant(call))


def attempts_of(saga_id: UUID) -> list[tuple[str, str, int, str, str]]:
    """List the saga's logged attempts (step, phase, attempt, status, error)."""
    return list(
        SagaStepExecution.objects.filter(saga_id=saga_id)
        .order_by("at", "id")
        .values_list("step", "phase", "attempt", "status", "error")
    )


def order_events(order_id: UUID) -> Counter[str]:
    return Counter(
        StoredEvent.objects.filter(stream_id=str(order_id)).values_list("event_type", flat=True)
    )


def place(token: str = "tok_visa") -> tuple[UUID, UUID]:
    placed = order_place(
        customer_id="c-dup",
        lines=[OrderLineRequest("DUP-1", 2), OrderLineRequest("DUP-2", 1)],
        payment_token=token,
        actor="user:1",
    )
    return placed.order_id, placed.saga_id


@pytest.fixture
def baseline() -> dict[str, int]:
    make_product("DUP-1", stock=STOCK)
    make_product("DUP-2", stock=STOCK)
    return {"DUP-1": STOCK, "DUP-2": STOCK}


def test_each_step_message_delivered_twice_at_once_runs_once(baseline: dict[str, int]) -> None:
    ran: dict[UUID, Counter[str]] = {}
    confirmed_order, confirmed = place()
    ran[confirmed] = deliver_each_message_twice(confirmed)
    declined_order, declined = place("tok_chargeDeclined")
    ran[declined] = deliver_each_message_twice(declined)
    fault_rule_set(
        saga_type=PLACE_ORDER, step="confirm_order", phase=Phase.ACTION,
        mode=FaultMode.PERMANENT, times=1,
    )  # fmt: skip
    refunded_order, refunded = place()
    ran[refunded] = deliver_each_message_twice(refunded)
    cancel = order_request_cancellation(
        order_id=confirmed_order,
        actor="user:1",
        acting_as_staff=True,
    )
    ran[cancel] = deliver_each_message_twice(cancel)

    # Every message ran exactly once: its twin found the attempt claimed or already done.
    for saga_id, counts in ran.items():
        assert set(counts.values()) == {1}, attempts_of(saga_id)
    assert set(ran[confirmed]) == {
        "reserve_inventory action", "charge_payment action", "confirm_order action",
    }  # fmt: skip
    assert set(ran[refunded]) == {
        "reserve_inventory action", "charge_payment action", "confirm_order action",
        "charge_payment compensation", "reserve_inventory compensation",
        "create_order compensation",
    }  # fmt: skip
    assert set(ran[cancel]) == {
        "refund_payment action", "restock_items action", "mark_cancelled action",
    }  # fmt: skip
    assert Saga.objects.get(pk=declined).status == SagaStatus.COMPENSATED
    for order_id in (confirmed_order, refunded_order):
        assert Payment.objects.filter(order_id=order_id).count() == 1
        assert Refund.objects.filter(payment__order_id=order_id).count() == 1
        assert order_events(order_id)["OrderCancelled"] == 1
    assert order_events(confirmed_order)["OrderConfirmed"] == 1
    assert Payment.objects.filter(order_id=declined_order, status="DECLINED").count() == 1
    assert_invariants(stock_baseline=baseline)


def test_each_participant_called_twice_at_once_has_one_effect(baseline: dict[str, int]) -> None:
    order_id, saga_id = place()
    for step in ("reserve_inventory", "charge_payment", "confirm_order"):
        results = call_twice_at_once(saga_id, step, Phase.ACTION)
        assert not any(isinstance(r, Exception) for r in results), (step, results)
    # The copies all took effect once: the engine's own run now only replays them.
    assert Reservation.objects.get(order_id=order_id).status == "COMMITTED"
    drive(saga_id)
    assert Saga.objects.get(pk=saga_id).status == SagaStatus.COMPLETED

    cancel = order_request_cancellation(
        order_id=order_id,
        actor="user:1",
        acting_as_staff=True,
    )
    for step in ("refund_payment", "restock_items", "mark_cancelled"):
        results = call_twice_at_once(cancel, step, Phase.ACTION)
        assert not any(isinstance(r, Exception) for r in results), (step, results)
    drive(cancel)

    declined_order, declined = place("tok_chargeDeclined")
    call_twice_at_once(declined, "reserve_inventory", Phase.ACTION)
    for result in call_twice_at_once(declined, "charge_payment", Phase.ACTION):
        assert isinstance(result, StepBusinessFailure) and result.code == "payment_declined"
    Saga.objects.filter(pk=declined).update(
        failure_step="charge_payment", failure_code="payment_declined"
    )
    for step in ("reserve_inventory", "create_order"):
        results = call_twice_at_once(declined, step, Phase.COMPENSATION)
        assert not any(isinstance(r, Exception) for r in results), (step, results)
    Saga.objects.filter(pk=declined).update(failure_step="", failure_code="")
    drive(declined)

    assert Saga.objects.get(pk=cancel).status == SagaStatus.COMPLETED
    assert Saga.objects.get(pk=declined).status == SagaStatus.COMPENSATED
    assert order_events(order_id) == {"OrderCreated": 1, "OrderConfirmed": 1, "OrderCancelled": 1}
    assert order_events(declined_order) == {"OrderCreated": 1, "OrderCancelled": 1}
    assert SimulatedCharge.objects.filter(outcome="APPROVED").count() == 1
    assert SimulatedRefund.objects.count() == 1
    assert Refund.objects.count() == 1
    assert Reservation.objects.get(order_id=declined_order).status == "RELEASED"
    assert list(Product.objects.order_by("sku").values_list("stock_on_hand", "stock_reserved")) == [
        (STOCK, 0),
        (STOCK, 0),
    ]
    assert_invariants(stock_baseline=baseline)


def test_a_refund_compensation_called_twice_at_once_refunds_once(
    baseline: dict[str, int],
) -> None:
    fault_rule_set(
        saga_type=PLACE_ORDER, step="confirm_order", phase=Phase.ACTION,
        mode=FaultMode.PERMANENT, times=1,
    )  # fmt: skip
    order_id, saga_id = place()
    for step in ("reserve_inventory", "charge_payment"):
        call_twice_at_once(saga_id, step, Phase.ACTION)
    results = call_twice_at_once(saga_id, "charge_payment", Phase.COMPENSATION)
    assert not any(isinstance(r, Exception) for r in results), results
    drive(saga_id)

    assert Saga.objects.get(pk=saga_id).status == SagaStatus.COMPENSATED
    assert Refund.objects.filter(payment__order_id=order_id).count() == 1
    assert SimulatedRefund.objects.count() == 1
    assert_invariants(stock_baseline=baseline)
