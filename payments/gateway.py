"""Define the payment gateway port: what any card processor adapter must offer.

``get_gateway()`` builds the adapter named by ``settings.PAYMENT_GATEWAY`` (the simulated one by
default), so a real processor plugs in through settings. Adapters make network calls: callers
never call them inside a database transaction.

Both operations are idempotent by key at the processor: the same key twice returns the first
result (a declined charge is declined again) and never moves money twice. A charge whose answer
never arrived (every try timed out, or the process died after sending it) may still have moved
the money: ``find_charge`` asks the processor what a key did, as card processors let a merchant
look a payment up by the reference it gave with the charge.

The client's payment token is handed to the processor once, when the order is placed
(``create_payment_method``), and the processor answers with its own reference to the card; the
charge, run later by a worker, names that reference. So the raw token is stored nowhere of
ours: not in a saga's context, a broker message, a log line or a payment row.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, cast

from django.conf import settings
from django.utils.module_loading import import_string

DEFAULT_GATEWAY = "payments.simulated.SimulatedGateway"


@dataclass(frozen=True)
class GatewayCharge:
    """Describe an approved charge at the processor."""

    reference: str
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class GatewayRefund:
    """Describe a refund at the processor."""

    reference: str
    charge_reference: str
    amount: Decimal
    currency: str


class GatewayError(Exception):
    """Base of the gateway's errors."""


class GatewayTransientError(GatewayError):
    """Say that the processor timed out or could not be reached; the same call may succeed."""


class CardDeclined(GatewayError):
    """Say that the processor declined the card (a business outcome, final for this key)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class GatewayRequestError(GatewayError):
    """Say that the processor refused the request itself: unknown charge, refund above the
    amount charged, an idempotency key reused with other parameters. Retrying won't help."""


class RefundExceedsCharge(GatewayRequestError):
    """Say that a refund asks for more than is left of the charge (refunds already took it)."""


class PaymentGateway(Protocol):
    """Charge cards and refund charges at a card processor."""

    def create_payment_method(self, *, token: str) -> str:
        """Store the card behind the client's ``token`` at the processor; return the
        processor's reference to it (what ``charge`` takes). Raise ``GatewayTransientError``
        when the processor cannot be reached; a card that will be declined is still stored
        (the decline is the charge's answer)."""
        ...

    def charge(
        self, *, amount: Decimal, currency: str, payment_method: str, idempotency_key: str
    ) -> GatewayCharge:
        """Charge the card the processor knows as ``payment_method``; raise ``CardDeclined``,
        ``GatewayRequestError`` (no such payment method) or ``GatewayTransientError``."""
        ...

    def refund(
        self, *, charge_reference: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> GatewayRefund:
        """Refund ``amount`` of a charge; raise ``GatewayRequestError`` or a transient error."""
        ...

    def find_charge(self, *, idempotency_key: str) -> GatewayCharge | None:
        """Return the approved charge made under ``idempotency_key``, or None when no money
        moved under it (the processor never received it, or declined it); raise
        ``GatewayTransientError`` when the processor cannot say now."""
        ...


def get_gateway() -> PaymentGateway:
    """Build the gateway adapter named by ``settings.PAYMENT_GATEWAY``."""
    path = getattr(settings, "PAYMENT_GATEWAY", DEFAULT_GATEWAY) or DEFAULT_GATEWAY
    return cast(PaymentGateway, import_string(path)())
