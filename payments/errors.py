"""Name what can go wrong with a payment, as the saga sees it.

``PaymentDeclined`` is a business failure (compensate at once); ``PaymentGatewayUnavailable``
is transient (retry later: nothing final was recorded). The gateway's own errors live in
``payments.gateway``; the services translate them into these.
"""

from __future__ import annotations

from uuid import UUID


class PaymentError(Exception):
    """Base of the payments' errors."""


class PaymentDeclined(PaymentError):
    """Say that the card was declined; the decline is recorded as a DECLINED payment."""

    def __init__(self, code: str, message: str, *, payment_id: UUID | None = None) -> None:
        self.code = code
        self.message = message
        self.payment_id = payment_id
        super().__init__(f"payment declined ({code}): {message}")


class PaymentGatewayUnavailable(PaymentError):
    """Say that the gateway could not be reached or timed out; retrying may succeed."""


class PaymentRefundInFlight(PaymentGatewayUnavailable):
    """Say that the processor holds a refund of the payment that is not recorded here yet.

    Another call (under another key) is between the processor's answer and its record, or
    died there and will be retried. Transient: a retry finds the refund recorded.
    """

    def __init__(self, *, order_id: UUID) -> None:
        self.order_id = order_id
        super().__init__(
            f"the processor already refunded order {order_id}'s payment; "
            "that refund is not recorded yet (retry)"
        )


class PaymentRequestRejected(PaymentError):
    """Say that the gateway refused the request itself, for a reason retrying will not change
    (not a decline: an unknown charge, a key reused with other parameters at the processor)."""

    operation = "payment"

    def __init__(self, *, order_id: UUID, reason: str) -> None:
        self.order_id = order_id
        self.reason = reason
        super().__init__(f"{self.operation} for order {order_id} rejected: {reason}")


class PaymentChargeRejected(PaymentRequestRejected):
    operation = "charge"


class PaymentRefundRejected(PaymentRequestRejected):
    operation = "refund"


class PaymentMethodRejected(PaymentError):
    """Say that the gateway refused to store the card behind a payment token (the message is
    the gateway's, never the token)."""


class OrderAlreadyPaid(PaymentError):
    """Refuse a second charge for an order that has a charged payment under another key."""

    def __init__(self, *, order_id: UUID, payment_id: UUID) -> None:
        self.order_id = order_id
        self.payment_id = payment_id
        super().__init__(f"order {order_id} is already paid by payment {payment_id}")


class IdempotencyKeyConflict(PaymentError):
    """Refuse an idempotency key reused for a different request (another order or amount)."""

    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        self.detail = detail
        super().__init__(f"idempotency key {key!r} was used for a different request: {detail}")


class InvalidPaymentAmount(PaymentError, ValueError):
    """Refuse an amount that is not positive or has more than two decimal places."""
