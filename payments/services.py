"""Charge and refund orders through the payment gateway (a saga participant).

The gateway is a network call: it is made outside any database transaction, so no lock is held
while the processor thinks, and its answer is recorded afterwards in one durable transaction.
Every call carries the saga step's idempotency key to the gateway too, so a step retried after
a crash between the gateway's answer and our record gets the same charge back, not a new one.

    payment_method_create: the client's token → the gateway's reference to the card (run by
                    the web process when an order is placed; the token goes no further).
    payment_charge: repeat → the first result; approved → CHARGED; declined → DECLINED,
                    raised as PaymentDeclined; transient → PaymentGatewayUnavailable, nothing
                    recorded (the retry, with the same key, finishes the job).
    payment_refund: repeat → the same refund; no charged payment → ask the gateway what the
                    charge's key did (its answer may have been lost), record what it took,
                    refund that; nothing taken there either → "nothing to refund".
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from payments.errors import (
    IdempotencyKeyConflict,
    InvalidPaymentAmount,
    OrderAlreadyPaid,
    PaymentChargeRejected,
    PaymentDeclined,
    PaymentGatewayUnavailable,
    PaymentMethodRejected,
    PaymentRefundInFlight,
    PaymentRefundRejected,
)
from payments.gateway import (
    CardDeclined,
    GatewayError,
    GatewayRequestError,
    GatewayTransientError,
    RefundExceedsCharge,
    get_gateway,
)
from payments.models import SETTLED_STATUSES, Payment, PaymentStatus, Refund
from payments.results import PaymentResult, RefundOutcome, RefundResult

__all__ = [
    "PaymentResult",
    "RefundOutcome",
    "RefundResult",
    "payment_charge",
    "payment_method_create",
    "payment_refund",
]

logger = logging.getLogger(__name__)

_CENT = Decimal("0.01")


def payment_method_create(*, token: str) -> str:
    """Hand the client's payment ``token`` to the gateway; return its reference to the card.

    The reference is what the charge names later, in a worker: the token itself is neither
    stored nor logged. Raises ``PaymentGatewayUnavailable`` when the gateway cannot answer
    now, ``PaymentMethodRejected`` when it refuses the token. Must not be called inside a
    transaction (it is a network call).
    """
    try:
        return get_gateway().create_payment_method(token=token)
    except GatewayTransientError as exc:
        raise PaymentGatewayUnavailable(str(exc)) from exc
    except GatewayRequestError as exc:
        raise PaymentMethodRejected(str(exc)) from exc


def payment_charge(
    *,
    order_id: UUID,
    amount: Decimal,
    currency: str,
    payment_method: str,
    idempotency_key: str,
    now: datetime | None = None,
) -> PaymentResult:
    """Charge the order's amount to the card the gateway knows as ``payment_method`` (from
    ``payment_method_create``), once per idempotency key.

    Returns the CHARGED payment (REFUNDED if it was paid back since, on a repeat). Raises
    ``PaymentDeclined`` for a declined card (recorded as a DECLINED payment, and raised again
    on a repeat), ``PaymentGatewayUnavailable`` when the gateway could not answer (nothing is
    recorded; retry with the same key), ``PaymentChargeRejected`` when the processor refused
    the request itself, ``OrderAlreadyPaid`` when the order was charged under another key,
    ``IdempotencyKeyConflict`` when the key was used for another order or amount.
    Must not be called inside a transaction.
    """
    if amount <= 0 or amount != amount.quantize(_CENT):
        raise InvalidPaymentAmount(f"cannot charge {amount}: positive, in cents")
    # Durable: this read also refuses to run inside a caller's transaction, which would hold
    # its locks across the gateway's network call.
    with transaction.atomic(durable=True):
        # One query for both questions: this key's payment, and another settled payment of
        # the order (at most one of each: the key is unique, and so is an order's settled
        # payment).
        known = list(
            Payment.objects.filter(
                Q(idempotency_key=idempotency_key)
                | Q(order_id=order_id, status__in=SETTLED_STATUSES)
            )
        )
    previous = next((p for p in known if p.idempotency_key == idempotency_key), None)
    settled = next((p for p in known if p.idempotency_key != idempotency_key), None)
    if previous is not None:
        return _replay_charge(previous, order_id=order_id, amount=amount, currency=currency)
    if settled is not None:
        raise OrderAlreadyPaid(order_id=order_id, payment_id=settled.pk)

    gateway = get_gateway()
    at = now or timezone.now()
    row = Payment(
        order_id=order_id,
        idempotency_key=idempotency_key,
        amount=amount,
        currency=currency,
        created_at=at,
        updated_at=at,
    )
    try:
        charge = gateway.charge(
            amount=amount,
            currency=currency,
            payment_method=payment_method,
            idempotency_key=idempotency_key,
        )
    except GatewayTransientError as exc:
        raise PaymentGatewayUnavailable(str(exc)) from exc
    except GatewayRequestError as exc:
        raise PaymentChargeRejected(order_id=order_id, reason=str(exc)) from exc
    except CardDeclined as exc:
        row.status = PaymentStatus.DECLINED
        row.decline_code = exc.code[:64] or "declined"
        row.decline_message = exc.message[:255]
    else:
        row.status = PaymentStatus.CHARGED
        row.gateway_reference = charge.reference

    try:
        with transaction.atomic(durable=True):
            row.save(force_insert=True)
    except IntegrityError:
        previous = Payment.objects.filter(idempotency_key=idempotency_key).first()
        if previous is None:
            # Not our key: the order got a charged payment under another key meanwhile.
            # Ours is a second charge at the processor: pay it back before refusing it.
            _void_duplicate_charge(row)
            settled = Payment.objects.get(order_id=order_id, status__in=SETTLED_STATUSES)
            raise OrderAlreadyPaid(order_id=order_id, payment_id=settled.pk) from None
        # A concurrent call with this key recorded the same gateway answer first.
        row = previous
    return _replay_charge(row, order_id=order_id, amount=amount, currency=currency)


def payment_refund(
    *,
    order_id: UUID,
    idempotency_key: str,
    charge_idempotency_key: str | None = None,
    now: datetime | None = None,
) -> RefundResult:
    """Refund the order's charged payment in full, once per idempotency key.

    A repeat returns the same refund; a payment refunded under another key is reported
    ``ALREADY_REFUNDED``. When no charged payment of the order is recorded and
    ``charge_idempotency_key`` names the charge that may have run, the gateway is asked what
    that key did: a charge whose answer never reached us (every try timed out, or the worker
    died after the call) is recorded as a CHARGED payment, then refunded like any other. An
    order with no charge recorded here or found there (it never happened, or was declined) is
    reported ``NOTHING_TO_REFUND``. Raises ``PaymentGatewayUnavailable`` when the
    gateway could not answer (retry with the same key), its subclass ``PaymentRefundInFlight``
    when the processor already refunded the payment under a key whose record is not written
    yet (retry: the answer becomes ``ALREADY_REFUNDED``), and ``PaymentRefundRejected`` when the
    processor refused the refund. Must not be called inside a transaction.
    """
    with transaction.atomic(durable=True):
        previous = (
            Refund.objects.select_related("payment").filter(idempotency_key=idempotency_key).first()
        )
        payment = Payment.objects.filter(order_id=order_id, status__in=SETTLED_STATUSES).first()
    if previous is not None:
        if previous.payment.order_id != order_id:
            raise IdempotencyKeyConflict(idempotency_key, "it refunded another order")
        return _refund_result(previous, RefundOutcome.REFUNDED)
    if payment is None and charge_idempotency_key is not None:
        payment = _charge_recover(
            order_id=order_id, idempotency_key=charge_idempotency_key, now=now
        )
    if payment is None:
        return RefundResult(order_id=order_id, outcome=RefundOutcome.NOTHING_TO_REFUND)
    if payment.status == PaymentStatus.REFUNDED:
        # Refunded under another key, or under this one by a concurrent call that committed
        # between the two reads above (each statement reads what is committed when it runs).
        settled = payment.refunds.get()
        same_key = settled.idempotency_key == idempotency_key
        return _refund_result(
            settled, RefundOutcome.REFUNDED if same_key else RefundOutcome.ALREADY_REFUNDED
        )

    try:
        refund = get_gateway().refund(
            charge_reference=payment.gateway_reference,
            amount=payment.amount,
            currency=payment.currency,
            idempotency_key=idempotency_key,
        )
    except GatewayTransientError as exc:
        raise PaymentGatewayUnavailable(str(exc)) from exc
    except RefundExceedsCharge as exc:
        # A refund under another key took the money back first: recorded by now, or about to
        # be (its call is between the processor's answer and its record).
        done = Refund.objects.filter(payment=payment).first()
        if done is not None:
            return _refund_result(done, RefundOutcome.ALREADY_REFUNDED)
        raise PaymentRefundInFlight(order_id=order_id) from exc
    except GatewayRequestError as exc:
        raise PaymentRefundRejected(order_id=order_id, reason=str(exc)) from exc

    at = now or timezone.now()
    try:
        with transaction.atomic(durable=True):
            locked = Payment.objects.select_for_update().get(pk=payment.pk)
            recorded = Refund.objects.create(
                payment=locked,
                idempotency_key=idempotency_key,
                amount=refund.amount,
                currency=refund.currency,
                gateway_reference=refund.reference,
                created_at=at,
            )
            locked.status = PaymentStatus.REFUNDED
            locked.refunded_at = at
            locked.updated_at = at
            locked.save(update_fields=["status", "refunded_at", "updated_at"])
    except IntegrityError:
        # A concurrent call recorded the refund first (the gateway gave both the same one).
        recorded = Refund.objects.get(payment=payment)
        outcome = (
            RefundOutcome.REFUNDED
            if recorded.idempotency_key == idempotency_key
            else RefundOutcome.ALREADY_REFUNDED
        )
        return _refund_result(recorded, outcome)
    return _refund_result(recorded, RefundOutcome.REFUNDED)


def _charge_recover(
    *, order_id: UUID, idempotency_key: str, now: datetime | None
) -> Payment | None:
    """Record the charge the gateway made under ``idempotency_key``, if it made one.

    Returns the order's settled payment afterwards (this one, or one recorded meanwhile), or
    None when the gateway took no money under the key.
    """
    try:
        found = get_gateway().find_charge(idempotency_key=idempotency_key)
    except GatewayTransientError as exc:
        raise PaymentGatewayUnavailable(str(exc)) from exc
    if found is None:
        return None
    at = now or timezone.now()
    row = Payment(
        order_id=order_id,
        idempotency_key=idempotency_key,
        amount=found.amount,
        currency=found.currency,
        status=PaymentStatus.CHARGED,
        gateway_reference=found.reference,
        created_at=at,
        updated_at=at,
    )
    try:
        with transaction.atomic(durable=True):
            row.save(force_insert=True)
    except IntegrityError:
        # A late answer to the charge itself was recorded first (the same charge), or the
        # order was paid under another key and this one is a second charge: pay that back.
        recorded = Payment.objects.filter(idempotency_key=idempotency_key).first()
        if recorded is None:
            _void_duplicate_charge(row)
        return Payment.objects.filter(order_id=order_id, status__in=SETTLED_STATUSES).first()
    logger.warning(
        "charge %s of order %s (%s %s) under key %s got no answer here; found at the gateway "
        "and recorded",
        found.reference,
        order_id,
        found.amount,
        found.currency,
        idempotency_key,
    )
    return row


def _replay_charge(
    payment: Payment, *, order_id: UUID, amount: Decimal, currency: str
) -> PaymentResult:
    if payment.order_id != order_id or payment.amount != amount or payment.currency != currency:
        raise IdempotencyKeyConflict(
            payment.idempotency_key,
            f"it charged {payment.amount} {payment.currency} for order {payment.order_id}",
        )
    if payment.status == PaymentStatus.DECLINED:
        raise PaymentDeclined(payment.decline_code, payment.decline_message, payment_id=payment.pk)
    return PaymentResult(
        payment_id=payment.pk,
        order_id=payment.order_id,
        status=PaymentStatus(payment.status),
        amount=payment.amount,
        currency=payment.currency,
        gateway_reference=payment.gateway_reference,
    )


def _void_duplicate_charge(row: Payment) -> None:
    if row.status != PaymentStatus.CHARGED:
        return
    try:
        get_gateway().refund(
            charge_reference=row.gateway_reference,
            amount=row.amount,
            currency=row.currency,
            idempotency_key=f"{row.idempotency_key}:void-duplicate",
        )
    except GatewayError:
        # Nothing of ours records this charge: say loudly where the money is.
        logger.exception(
            "could not void duplicate charge %s of order %s (%s %s); refund it by hand",
            row.gateway_reference,
            row.order_id,
            row.amount,
            row.currency,
        )


def _refund_result(refund: Refund, outcome: RefundOutcome) -> RefundResult:
    return RefundResult(
        order_id=refund.payment.order_id,
        outcome=outcome,
        payment_id=refund.payment_id,
        refund_id=refund.pk,
        amount=refund.amount,
        currency=refund.currency,
        gateway_reference=refund.gateway_reference,
    )
