"""Read payments and refunds."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from django.db.models import QuerySet, Sum

from payments.models import SETTLED_STATUSES, Payment, Refund

__all__ = ["payment_totals_for_order", "payments_for_order"]


def payments_for_order(*, order_id: UUID) -> QuerySet[Payment]:
    """Return the order's payments (declined ones too), oldest first, with their refunds."""
    return (
        Payment.objects.filter(order_id=order_id).order_by("created_at").prefetch_related("refunds")
    )


def payment_totals_for_order(*, order_id: UUID) -> tuple[Decimal, Decimal]:
    """Return ``(charged, refunded)`` for the order: money taken, and money paid back."""
    charged = Payment.objects.filter(order_id=order_id, status__in=SETTLED_STATUSES).aggregate(
        total=Sum("amount")
    )["total"]
    refunded = Refund.objects.filter(payment__order_id=order_id).aggregate(total=Sum("amount"))[
        "total"
    ]
    zero = Decimal("0.00")
    return (charged or zero, refunded or zero)
