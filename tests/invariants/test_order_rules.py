"""The orders' rules in detail: every order is judged, and each finding says what was found.

``test_each_rule_fires.py`` shows each rule firing alone on one broken order. Here: a rule that
finds one order broken still judges the next ones, an order with no saga at all is judged
rather than crashing the checker, and a violation's detail names the statuses, counts and
lines it found, which is what an operator reads.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest
from django.utils import timezone

from backoffice.invariants import InvariantReport, Violation, invariants_check
from inventory.models import Reservation, ReservationLine, ReservationStatus
from payments.models import Payment, PaymentStatus
from sagas.models import Saga
from tests.factories import make_product
from tests.invariants.real_runs import copy_saga, drop_constraint, place_order, place_order_until

# Plain (rolled back) transactions: nothing commits, so no step message reaches any worker.
pytestmark = pytest.mark.django_db

CATALOGUE = ("RULE-A", "RULE-B")
ITEMS = "{'RULE-A': 2, 'RULE-B': 1}"


@pytest.fixture(autouse=True)
def catalogue() -> None:
    for sku in CATALOGUE:
        make_product(sku, stock=50)


def of_kind(report: InvariantReport, kind: str) -> list[Violation]:
    return [v for v in report.violations if v.kind == kind]


def stray_charge() -> str:
    """Record a settled charge for an order that does not exist; return its subject."""
    now = timezone.now()
    stray = uuid4()
    Payment.objects.create(
        order_id=stray,
        idempotency_key=f"{uuid4()}:charge_payment:action",
        amount=Decimal("5.00"),
        currency="EUR",
        status=PaymentStatus.CHARGED,
        gateway_reference=f"ch_{stray.hex[:8]}",
        created_at=now,
        updated_at=now,
    )
    return f"order {stray}"


def test_an_order_with_no_saga_at_all_has_no_placing_saga() -> None:
    placed = place_order(CATALOGUE)
    Saga.objects.filter(pk=placed.saga_id).delete()

    assert of_kind(invariants_check(), "order") == [
        Violation("order", f"order {placed.order_id}", "has 0 placing sagas, expected 1")
    ]


def test_every_order_is_judged_after_one_with_the_wrong_number_of_placing_sagas() -> None:
    first, second = place_order(CATALOGUE), place_order(CATALOGUE)
    copy_saga(first.saga_id)
    copy_saga(second.saga_id)

    found = of_kind(invariants_check(), "order")

    assert sorted(v.subject for v in found) == sorted(
        f"order {placed.order_id}" for placed in (first, second)
    )


def test_every_charge_for_an_unknown_order_is_reported() -> None:
    place_order(CATALOGUE)
    subjects = {stray_charge(), stray_charge()}

    found = of_kind(invariants_check(), "money")

    assert {v.subject for v in found} == subjects
    assert {v.detail for v in found} == {"1 charge(s) for an unknown order"}


def test_a_confirmed_order_with_no_charge_and_no_refund_is_judged() -> None:
    placed = place_order(CATALOGUE)
    # The processor's charge then has no payment of ours: that rule fires too.
    Payment.objects.filter(order_id=placed.order_id).delete()

    found = invariants_check().violations

    assert (
        Violation(
            "money",
            f"order {placed.order_id}",
            "CONFIRMED with 0 charge(s) and 0 refund(s): charges minus refunds must be 1",
        )
        in found
    )


def test_a_pending_order_charged_twice_may_hold_one_charge_or_none() -> None:
    placed = place_order_until(CATALOGUE, "confirm_order")
    drop_constraint("payments_payment", "payments_payment_one_settled_per_order")
    payment = Payment.objects.get(order_id=placed.order_id)
    payment.pk, payment.idempotency_key = uuid4(), f"{uuid4()}:charge_payment:action"
    payment.save(force_insert=True)

    found = invariants_check(allow_in_flight=True).violations

    assert (
        Violation(
            "money",
            f"order {placed.order_id}",
            "PENDING with 2 charge(s) and 0 refund(s): charges minus refunds must be 0 or 1",
        )
        in found
    )


def test_a_wrong_reservation_status_is_named() -> None:
    placed = place_order(CATALOGUE)
    Reservation.objects.filter(order_id=placed.order_id).update(
        status=ReservationStatus.RELEASED, released_key="manual", released_at=timezone.now()
    )

    assert Violation(
        "stock", f"order {placed.order_id}", "CONFIRMED with reservation RELEASED"
    ) in (invariants_check().violations)


def test_a_missing_reservation_is_named_none() -> None:
    placed = place_order(CATALOGUE)
    Reservation.objects.filter(order_id=placed.order_id).delete()

    assert Violation("stock", f"order {placed.order_id}", "CONFIRMED with reservation none") in (
        invariants_check().violations
    )


def test_a_reservation_for_other_quantities_names_both() -> None:
    placed = place_order(CATALOGUE)
    ReservationLine.objects.filter(
        reservation__order_id=placed.order_id, product__sku="RULE-A"
    ).update(quantity=3)

    assert of_kind(invariants_check(), "stock") == [
        Violation(
            "stock",
            f"order {placed.order_id}",
            f"reservation holds {{'RULE-A': 3, 'RULE-B': 1}} but the order is for {ITEMS}",
        )
    ]


def test_a_reservation_with_no_lines_holds_nothing() -> None:
    placed = place_order(CATALOGUE)
    ReservationLine.objects.filter(reservation__order_id=placed.order_id).delete()

    found = of_kind(invariants_check(), "stock")

    assert (
        Violation(
            "stock",
            f"order {placed.order_id}",
            f"reservation holds {{}} but the order is for {ITEMS}",
        )
        in found
    )
