"""The invariant checker: a clean run passes, and each kind of violation made on purpose is found.

Orders run in this process (``drive`` plays the worker, step after step) on the real order
sagas and participants, so the rows the checker reads are the ones a real run leaves.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from uuid import uuid4

import pytest
from django.core.management import call_command
from django.db.models import F
from django.utils import timezone

from backoffice.invariants import invariants_check
from inventory.models import Product
from orders.models import OrderSummary
from orders.services import (
    PLACE_ORDER,
    PlacedOrder,
)
from payments.models import Payment, PaymentStatus, Refund, SimulatedCharge
from sagas.faults import fault_rule_set
from sagas.models import Saga, SagaStep
from sagas.statuses import FaultMode, Phase, SagaStatus, StepStatus
from tests.cards import card_of_charge
from tests.factories import make_product
from tests.invariants.real_runs import cancel_order, place_order
from tests.support.invariants import assert_invariants

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("unconsumed_queue")]

Place = Callable[..., PlacedOrder]


@pytest.fixture
def baseline() -> dict[str, int]:
    make_product("INV-A", stock=20)
    make_product("INV-B", stock=5)
    return {"INV-A": 20, "INV-B": 5}


@pytest.fixture
def place() -> Place:
    return functools.partial(place_order, ("INV-A", "INV-B"))


def kinds(**kwargs: object) -> set[str]:
    return invariants_check(**kwargs).kinds()  # type: ignore[arg-type]


def test_a_clean_run_of_every_outcome_passes(baseline: dict[str, int], place: Place) -> None:
    confirmed = place()
    place("tok_chargeDeclined")
    place(quantity=50)  # out of stock
    cancel_order(place().order_id)
    fault_rule_set(
        saga_type=PLACE_ORDER,
        step="reserve_inventory",
        phase=Phase.COMPENSATION,
        mode=FaultMode.PERMANENT,
        times=None,
    )
    waiting = place("tok_chargeDeclined")

    report = assert_invariants(stock_baseline=baseline)

    assert OrderSummary.objects.get(pk=confirmed.order_id).status == "CONFIRMED"
    assert Saga.objects.get(pk=waiting.saga_id).status == SagaStatus.COMPENSATION_FAILED
    assert report.by_kind("orders") == {"CONFIRMED": 1, "CANCELLED": 3, "PENDING": 1}
    assert report.by_kind("sagas")[SagaStatus.COMPENSATION_FAILED] == 1


def test_a_saga_still_running_is_a_violation_unless_in_flight_is_allowed(
    baseline: dict[str, int], place: Place
) -> None:
    placed = place(run=False)

    found = invariants_check()

    assert [v.kind for v in found.violations] == ["saga"]
    assert str(placed.saga_id) in found.violations[0].subject
    assert invariants_check(allow_in_flight=True).ok


def test_a_compensation_failure_without_a_recorded_error_is_a_violation(
    baseline: dict[str, int], place: Place
) -> None:
    fault_rule_set(
        saga_type=PLACE_ORDER,
        step="charge_payment",
        phase=Phase.COMPENSATION,
        mode=FaultMode.PERMANENT,
        times=None,
    )
    fault_rule_set(
        saga_type=PLACE_ORDER,
        step="confirm_order",
        phase=Phase.ACTION,
        mode=FaultMode.PERMANENT,
        times=1,
    )
    placed = place()
    assert invariants_check().ok
    SagaStep.objects.filter(saga_id=placed.saga_id, status=StepStatus.COMPENSATION_FAILED).update(
        last_error=""
    )

    assert kinds() == {"saga"}


def test_a_due_step_whose_message_was_never_sent_is_a_violation(
    baseline: dict[str, int], place: Place
) -> None:
    placed = place(run=False)
    Saga.objects.filter(pk=placed.saga_id).update(
        due_at=timezone.now() - timedelta(minutes=5), dispatched_at=None
    )

    assert kinds(allow_in_flight=True) == {"dispatch"}


def test_a_refunded_confirmed_order_is_a_money_violation(
    baseline: dict[str, int], place: Place
) -> None:
    placed = place()
    payment = Payment.objects.get(order_id=placed.order_id)
    now = timezone.now()
    Payment.objects.filter(pk=payment.pk).update(status=PaymentStatus.REFUNDED, refunded_at=now)
    Refund.objects.create(
        payment=payment,
        idempotency_key=f"{uuid4()}:manual",
        amount=payment.amount,
        currency=payment.currency,
        gateway_reference="re_manual",
        created_at=now,
    )

    found = invariants_check()

    assert found.kinds() == {"money"}
    assert "charges minus refunds must be 1" in str(found.violations[0])


def test_a_second_charge_at_the_processor_is_a_money_violation(
    baseline: dict[str, int], place: Place
) -> None:
    placed = place()
    payment = Payment.objects.get(order_id=placed.order_id)
    SimulatedCharge.objects.create(
        reference="ch_twice",
        idempotency_key=f"{uuid4()}:charge_payment:action",
        **card_of_charge(),
        amount=payment.amount,
        currency=payment.currency,
        outcome="APPROVED",
        created_at=timezone.now(),
    )

    assert kinds() == {"money"}


def test_a_cancelled_order_still_charged_is_a_money_violation(
    baseline: dict[str, int], place: Place
) -> None:
    placed = place()
    cancel_order(placed.order_id)
    Refund.objects.filter(payment__order_id=placed.order_id).delete()
    Payment.objects.filter(order_id=placed.order_id).update(status=PaymentStatus.CHARGED)

    assert kinds() == {"money"}


def test_stock_not_conserved_is_a_violation(baseline: dict[str, int], place: Place) -> None:
    place()
    cancel_order(place().order_id)
    place("tok_chargeDeclined")
    assert invariants_check(stock_baseline=baseline).ok

    Product.objects.filter(sku="INV-A").update(stock_on_hand=F("stock_on_hand") + 1)
    assert kinds(stock_baseline=baseline) == {"stock"}
    # Without a baseline on-hand stock cannot be judged, but reserved stock always can.
    assert invariants_check().ok
    Product.objects.filter(sku="INV-B").update(stock_reserved=F("stock_reserved") + 1)
    assert kinds() == {"stock"}


def test_a_projection_that_differs_from_a_replay_is_a_violation(
    baseline: dict[str, int], place: Place
) -> None:
    placed = place()
    OrderSummary.objects.filter(pk=placed.order_id).update(total=Decimal("0.01"))

    assert kinds() == {"event_store"}


def test_an_order_left_pending_with_no_saga_acting_on_it_is_a_violation(
    baseline: dict[str, int], place: Place
) -> None:
    placed = place(run=False)
    # The placing saga stops at rest before its order moved: nothing will ever move the order.
    Saga.objects.filter(pk=placed.saga_id).update(status=SagaStatus.COMPENSATED, due_at=None)

    found = invariants_check()

    assert [str(v) for v in found.violations] == [
        f"[order] order {placed.order_id}: PENDING with no saga still acting on it"
    ]


def test_the_command_exits_1_with_a_report_and_0_with_a_summary(
    baseline: dict[str, int], place: Place, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    place()
    stock = tmp_path / "stock.json"
    stock.write_text(json.dumps(baseline))

    call_command("check_invariants", "--stock-baseline", str(stock))
    out = capsys.readouterr().out
    lines = out.splitlines()
    # A line before each check, then the summary with the time taken.
    assert lines[0].startswith("checking 1/")
    assert any(line.startswith("checking ") and "order" in line for line in lines)
    assert lines[-1].startswith("invariants hold: ")
    assert "sagas: 1 COMPLETED" in lines[-1]
    assert lines[-1].endswith("s")

    Product.objects.filter(sku="INV-A").update(stock_on_hand=F("stock_on_hand") + 3)
    with pytest.raises(SystemExit) as exit_info:
        call_command("check_invariants", "--stock-baseline", str(stock))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "1 violation(s)" in err
    assert "[stock] product INV-A: stock_on_hand is 21, expected 18" in err
