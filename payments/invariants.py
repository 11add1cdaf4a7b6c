"""The payments' invariants (``check_invariants``): every payment and refund agree.

- **money**: a refund belongs to a REFUNDED payment and a REFUNDED payment has its refund;
  no order is charged twice (two settled payments); the simulated processor's books agree
  (every charge it approved is a payment of ours, or was voided).

What each order's payments must add up to is the orders app's check.
"""

from __future__ import annotations

from collections import Counter
from uuid import UUID

from django.db.models import Q

from backoffice.invariants import InvariantOptions, InvariantReport, invariant
from payments.models import (
    SETTLED_STATUSES,
    Payment,
    PaymentStatus,
    Refund,
    SimulatedCharge,
    SimulatedChargeOutcome,
    SimulatedRefund,
)


@invariant("payments")
def check_payments(report: InvariantReport, options: InvariantOptions) -> None:
    """Check refunds against payments, and that no order was charged twice."""
    settled: Counter[UUID] = Counter()
    refunded_payments: set[UUID] = set()
    for payment in Payment.objects.filter(status__in=SETTLED_STATUSES):
        settled[payment.order_id] += 1
        if payment.status == PaymentStatus.REFUNDED:
            refunded_payments.add(payment.pk)
    for refund in Refund.objects.select_related("payment"):
        if refund.payment.status != PaymentStatus.REFUNDED:
            report.violation(
                "money",
                f"payment {refund.payment_id}",
                f"has refund {refund.pk} but is {refund.payment.status}",
            )
        refunded_payments.discard(refund.payment_id)
    for payment_id in sorted(refunded_payments):
        report.violation("money", f"payment {payment_id}", "REFUNDED without a refund recorded")
    for order_id, charges in settled.items():
        if charges > 1:
            report.violation(
                "money", f"order {order_id}", f"charged {charges} times (settled payments)"
            )


@invariant("payments")
def check_processor(report: InvariantReport, options: InvariantOptions) -> None:
    """Check that money the simulated processor took and we do not hold was given back."""
    ours = set(
        Payment.objects.filter(status__in=SETTLED_STATUSES).values_list(
            "idempotency_key", flat=True
        )
    )
    refunded = set(SimulatedRefund.objects.values_list("charge_id", flat=True))
    approved = SimulatedCharge.objects.filter(outcome=SimulatedChargeOutcome.APPROVED)
    for charge in approved.filter(~Q(idempotency_key__in=ours)):
        if charge.pk not in refunded:
            report.violation(
                "money",
                f"processor charge {charge.reference}",
                f"approved {charge.amount} {charge.currency} (key {charge.idempotency_key}) "
                "but no payment of ours records it and it was never voided",
            )
