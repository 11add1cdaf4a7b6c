"""Concurrent charges and refunds: separate connections, committed transactions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from uuid import uuid4

import pytest
from django.db import connections
from django.db.models import Sum

from payments.errors import OrderAlreadyPaid, PaymentRefundInFlight
from payments.models import (
    Payment,
    PaymentStatus,
    Refund,
    SimulatedCharge,
    SimulatedChargeOutcome,
    SimulatedRefund,
)
from payments.services import (
    PaymentResult,
    RefundOutcome,
    payment_charge,
    payment_method_create,
    payment_refund,
)

pytestmark = pytest.mark.django_db(transaction=True)

JOIN_TIMEOUT = 60.0
AMOUNT = Decimal("19.99")


def run_in_threads(targets: list[Callable[[], object]]) -> list[object]:
    """Run each target in its own thread and connection, starting together; return outcomes."""
    barrier = threading.Barrier(len(targets))
    outcomes: list[object] = [None] * len(targets)

    def run(index: int, target: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=JOIN_TIMEOUT)
            outcomes[index] = target()
        except Exception as exc:  # the outcome under test
            outcomes[index] = exc
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=run, args=(i, t), daemon=True) for i, t in enumerate(targets)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    return outcomes


def test_concurrent_charges_with_one_key_charge_once() -> None:
    order_id, key = uuid4(), f"{uuid4()}:charge_payment:action"
    # One order's card: its saga names the same payment method on every attempt.
    method = payment_method_create(token="tok_visa")

    def charge() -> object:
        return payment_charge(
            order_id=order_id,
            amount=AMOUNT,
            currency="EUR",
            payment_method=method,
            idempotency_key=key,
        )

    outcomes = run_in_threads([charge] * 6)

    results = [o for o in outcomes if isinstance(o, PaymentResult)]
    assert len(results) == 6, outcomes
    assert len({r.payment_id for r in results}) == 1
    assert Payment.objects.count() == 1
    assert SimulatedCharge.objects.count() == 1


def test_concurrent_charges_of_one_order_under_different_keys_keep_one_charge() -> None:
    order_id = uuid4()

    def charge() -> object:
        return payment_charge(
            order_id=order_id,
            amount=AMOUNT,
            currency="EUR",
            payment_method=payment_method_create(token="tok_visa"),
            idempotency_key=str(uuid4()),
        )

    outcomes = run_in_threads([charge] * 4)

    charged = [o for o in outcomes if isinstance(o, PaymentResult)]
    refused = [o for o in outcomes if isinstance(o, OrderAlreadyPaid)]
    assert len(charged) == 1 and len(refused) == 3, outcomes
    assert Payment.objects.filter(order_id=order_id, status=PaymentStatus.CHARGED).count() == 1
    # Whatever reached the processor twice was paid back: the customer paid once.
    taken = SimulatedCharge.objects.filter(outcome=SimulatedChargeOutcome.APPROVED).aggregate(
        total=Sum("amount")
    )["total"]
    returned = SimulatedRefund.objects.aggregate(total=Sum("amount"))["total"] or Decimal(0)
    assert taken - returned == AMOUNT


def test_concurrent_refunds_with_one_key_refund_once() -> None:
    order_id = uuid4()
    payment_charge(
        order_id=order_id,
        amount=AMOUNT,
        currency="EUR",
        payment_method=payment_method_create(token="tok_visa"),
        idempotency_key="c1",
    )

    def refund() -> object:
        return payment_refund(order_id=order_id, idempotency_key="r1")

    outcomes = run_in_threads([refund] * 6)

    assert all(getattr(o, "outcome", None) is RefundOutcome.REFUNDED for o in outcomes), outcomes
    assert Refund.objects.count() == 1
    assert SimulatedRefund.objects.count() == 1
    assert Payment.objects.get().status == PaymentStatus.REFUNDED


def test_concurrent_refunds_under_different_keys_refund_once() -> None:
    order_id = uuid4()
    payment_charge(
        order_id=order_id,
        amount=AMOUNT,
        currency="EUR",
        payment_method=payment_method_create(token="tok_visa"),
        idempotency_key="c1",
    )

    keys = [str(uuid4()) for _ in range(4)]

    def refund(key: str) -> Callable[[], object]:
        return lambda: payment_refund(order_id=order_id, idempotency_key=key)

    outcomes = run_in_threads([refund(key) for key in keys])

    # One refund wins. A loser either sees it recorded, or hears from the processor that the
    # money is back before the winner recorded it: a transient error, so the saga retries.
    winners = [o for o in outcomes if getattr(o, "outcome", None) is RefundOutcome.REFUNDED]
    assert len(winners) == 1, outcomes
    assert all(
        getattr(o, "outcome", None) is RefundOutcome.ALREADY_REFUNDED
        or isinstance(o, PaymentRefundInFlight)
        for o in outcomes
        if o not in winners
    ), outcomes
    retried = [
        payment_refund(order_id=order_id, idempotency_key=key).outcome
        for key, outcome in zip(keys, outcomes, strict=True)
        if outcome not in winners
    ]
    assert retried == [RefundOutcome.ALREADY_REFUNDED] * 3
    assert Refund.objects.count() == 1
    assert SimulatedRefund.objects.count() == 1
