"""Describe what the payment services hand back: small frozen values."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from payments.models import PaymentStatus


@dataclass(frozen=True)
class PaymentResult:
    """Describe a charged payment (the same on every repeat with its idempotency key).

    ``status`` is CHARGED, or REFUNDED when a later refund paid it back.
    """

    payment_id: UUID
    order_id: UUID
    status: PaymentStatus
    amount: Decimal
    currency: str
    gateway_reference: str


class RefundOutcome(StrEnum):
    """Say what refunding an order's payment did."""

    #: The payment was refunded by this key (now or on the first call with it).
    REFUNDED = "refunded"
    #: Another key refunded it before: nothing changed.
    ALREADY_REFUNDED = "already_refunded"
    #: The order has no charged payment (its charge never happened): nothing to refund.
    NOTHING_TO_REFUND = "nothing_to_refund"


@dataclass(frozen=True)
class RefundResult:
    """Report a refund; ``refund_id`` and the amounts are empty when there was nothing to refund."""

    order_id: UUID
    outcome: RefundOutcome
    payment_id: UUID | None = None
    refund_id: UUID | None = None
    amount: Decimal = Decimal("0.00")
    currency: str = ""
    gateway_reference: str = ""

    @property
    def refunded(self) -> bool:
        """Tell whether the order's payment is paid back (by this key or an earlier one)."""
        return self.outcome is not RefundOutcome.NOTHING_TO_REFUND
