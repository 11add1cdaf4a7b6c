"""The order sagas: placing an order, and cancelling a confirmed one.

Each step adapts one participant's service to the saga engine: it passes the step's
idempotency key, so a repeated or redelivered step has its effect once, and it translates the
participant's errors into the engine's two kinds of failure: transient (retry with backoff)
or business (compensate now).

    place_order:  create_order → reserve_inventory → charge_payment → confirm_order
    compensations (reverse):      cancel_order ← release_inventory ← refund_payment

    cancel_order: check_cancellable → refund_payment → restock_items → mark_cancelled

A pending order's cancellation stops its placing saga at the next step boundary (the engine
compensates, the order cancelled with who asked as the reason); when confirm_order had
already run, the placing saga completes and ``cancel_after_late_stop`` starts the cancel
saga in the same transaction (see ``orders.services.order_request_cancellation``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction

from eventstore.records import EventMetadata
from inventory.errors import OutOfStock, ReservationNotActive, UnknownProduct
from inventory.services import (
    reservation_commit,
    reservation_release,
    reservation_reserve,
    reservation_restock,
)
from orders.domain import CancellationReason, OrderNotPending, reason_for_failure
from orders.services import (
    CANCEL_ORDER,
    PLACE_ORDER,
    order_cancel,
    order_confirm,
    order_create_from_context,
    order_repository,
    order_subject,
)
from payments.errors import (
    IdempotencyKeyConflict,
    OrderAlreadyPaid,
    PaymentDeclined,
    PaymentGatewayUnavailable,
    PaymentRequestRejected,
)
from payments.services import payment_charge, payment_refund
from sagas.definitions import (
    LateStop,
    RetryPolicy,
    SagaDefinition,
    Step,
    StepBusinessFailure,
    StepCall,
    TransientStepError,
    idempotency_key,
)
from sagas.errors import SagaAlreadyActive
from sagas.services import is_one_active_exclusive_violation, saga_begin

Result = Mapping[str, Any] | None

# Gateways hiccup: retry a charge or refund for about half a minute before giving up.
GATEWAY_RETRY = RetryPolicy(
    max_attempts=6, initial_delay=0.2, multiplier=2.0, max_delay=8.0, jitter=0.5
)
LOCAL_RETRY = RetryPolicy(
    max_attempts=5, initial_delay=0.1, multiplier=2.0, max_delay=2.0, jitter=0.5
)
# Steps past the point of no return retry forever; after the first few, once a minute.
FORWARD_RETRY = RetryPolicy(
    max_attempts=5, initial_delay=0.1, multiplier=2.0, max_delay=60.0, jitter=0.5
)
# A compensation that fails stops the saga for an operator, so try harder first.
COMPENSATION_RETRY = RetryPolicy(
    max_attempts=8, initial_delay=0.2, multiplier=2.0, max_delay=8.0, jitter=0.5
)


def _metadata(call: StepCall) -> EventMetadata:
    return EventMetadata(
        correlation_id=call.correlation_id, causation_id=call.idempotency_key, actor=call.actor
    )


def _order_id(call: StepCall) -> UUID:
    return UUID(str(call.context["order_id"]))


# --- place_order ---------------------------------------------------------------------------


def create_order(call: StepCall) -> Result:
    order_create_from_context(context=dict(call.context), metadata=_metadata(call))
    return None


def cancel_order(call: StepCall) -> Result:
    """Compensate create_order: cancel the order with the reason the saga failed for."""
    reason = reason_for_failure(call.failure.code if call.failure else "")
    order_cancel(order_id=_order_id(call), reason=reason, metadata=_metadata(call))
    return None


def reserve_inventory(call: StepCall) -> Result:
    lines = [(item["sku"], int(item["quantity"])) for item in call.context["items"]]
    try:
        reservation_reserve(
            order_id=_order_id(call), lines=lines, idempotency_key=call.idempotency_key
        )
    except OutOfStock as exc:
        raise StepBusinessFailure("out_of_stock", str(exc)) from exc
    except UnknownProduct as exc:
        raise StepBusinessFailure("unknown_product", str(exc)) from exc
    return None


def release_inventory(call: StepCall) -> Result:
    reservation_release(order_id=_order_id(call), idempotency_key=call.idempotency_key)
    return None


def _order_total(call: StepCall) -> tuple[Decimal, str]:
    # The amount comes from the order itself, never from anything a client sent.
    order = order_repository().load(str(_order_id(call)))
    return order.total, order.currency


def charge_payment(call: StepCall) -> Result:
    """Charge the card the gateway stored when the order was placed (the context holds the
    gateway's reference to it, never the client's token)."""
    payment_method = call.context.get("payment_method")
    if not payment_method:
        # A saga begun before tokens were vaulted, its token scrubbed by the upgrade
        # (sagas 0008): nothing can be charged, so the order is refused, never charged twice.
        raise StepBusinessFailure("payment_rejected", "the order has no payment method to charge")
    amount, currency = _order_total(call)
    try:
        payment = payment_charge(
            order_id=_order_id(call),
            amount=amount,
            currency=currency,
            payment_method=str(payment_method),
            idempotency_key=call.idempotency_key,
        )
    except PaymentDeclined as exc:
        raise StepBusinessFailure("payment_declined", str(exc)) from exc
    except PaymentGatewayUnavailable as exc:
        raise TransientStepError(str(exc)) from exc
    except (PaymentRequestRejected, OrderAlreadyPaid, IdempotencyKeyConflict) as exc:
        # The gateway or our records refuse this charge outright: retrying cannot help.
        raise StepBusinessFailure("payment_rejected", str(exc)) from exc
    return {"payment_id": str(payment.payment_id)}


def refund_payment(call: StepCall) -> Result:
    """Refund the order's charge (compensating charge_payment, or the cancel saga's action).

    As a compensation it names the charge's own key: a charge whose answer was lost left no
    payment of ours, and the gateway is asked what that key did.
    """
    charge_key = (
        idempotency_key(saga_id=call.saga_id, step=call.step, phase="action")
        if call.phase == "compensation"
        else None
    )
    try:
        payment_refund(
            order_id=_order_id(call),
            idempotency_key=call.idempotency_key,
            charge_idempotency_key=charge_key,
        )
    except PaymentGatewayUnavailable as exc:
        raise TransientStepError(str(exc)) from exc
    except PaymentRequestRejected as exc:
        # Refused by the gateway for good: an operator must settle it (retry or skip).
        raise StepBusinessFailure("refund_rejected", str(exc)) from exc
    return None


def confirm_order(call: StepCall) -> Result:
    order_id = _order_id(call)
    try:
        reservation_commit(order_id=order_id, idempotency_key=call.idempotency_key)
    except ReservationNotActive as exc:
        raise StepBusinessFailure("reservation_not_active", str(exc)) from exc
    try:
        order_confirm(order_id=order_id, metadata=_metadata(call))
    except OrderNotPending as exc:
        raise StepBusinessFailure("order_not_pending", str(exc)) from exc
    return None


def cancel_after_late_stop(late: LateStop) -> None:
    """Start the cancel saga of an order whose placing saga confirmed it before it could stop.

    Runs in the transaction that records the placing saga COMPLETED, so the cancel saga
    starts with that or not at all (the confirmation is committed already, so its check
    finds the order CONFIRMED). A cancel saga already under way (another request met the
    order confirmed) is left to do the work; a savepoint keeps a start that loses that race
    from failing the completion with it.
    """
    order_id = UUID(str(late.context["order_id"]))
    try:
        with transaction.atomic():
            saga_begin(
                saga_type=CANCEL_ORDER,
                context={"order_id": str(order_id), "reason": late.stop.code},
                correlation_id=late.correlation_id,
                actor=late.stop.actor,
                subject=order_subject(order_id),
                exclusive=True,
            )
    except SagaAlreadyActive:
        return
    except IntegrityError as exc:
        if not is_one_active_exclusive_violation(exc):
            raise


PLACE_ORDER_SAGA = SagaDefinition(
    name=PLACE_ORDER,
    on_late_stop=cancel_after_late_stop,
    steps=(
        Step(
            name="create_order",
            participant="orders",
            action=create_order,
            compensation=cancel_order,
            local=True,
            retry=LOCAL_RETRY,
            compensation_retry=COMPENSATION_RETRY,
        ),
        Step(
            name="reserve_inventory",
            participant="inventory",
            action=reserve_inventory,
            compensation=release_inventory,
            retry=LOCAL_RETRY,
            compensation_retry=COMPENSATION_RETRY,
        ),
        Step(
            name="charge_payment",
            participant="payments",
            action=charge_payment,
            compensation=refund_payment,
            retry=GATEWAY_RETRY,
            compensation_retry=COMPENSATION_RETRY,
            timeout=30.0,
        ),
        Step(
            name="confirm_order",
            participant="orders",
            action=confirm_order,
            retry=LOCAL_RETRY,
        ),
    ),
)


# --- cancel_order ----------------------------------------------------------------------------


def check_cancellable(call: StepCall) -> Result:
    """Refuse, inside the request's transaction, to cancel an order that is not confirmed."""
    order = order_repository().load(str(_order_id(call)))
    order.check_cancellation_request()
    return None


def restock_items(call: StepCall) -> Result:
    try:
        reservation_restock(order_id=_order_id(call), idempotency_key=call.idempotency_key)
    except ReservationNotActive as exc:
        raise StepBusinessFailure("reservation_not_active", str(exc)) from exc
    return None


def mark_cancelled(call: StepCall) -> Result:
    reason = CancellationReason(str(call.context["reason"]))
    order_cancel(order_id=_order_id(call), reason=reason, metadata=_metadata(call))
    return None


CANCEL_ORDER_SAGA = SagaDefinition(
    name=CANCEL_ORDER,
    steps=(
        Step(
            name="check_cancellable",
            participant="orders",
            action=check_cancellable,
            local=True,
            retry=LOCAL_RETRY,
        ),
        # The refund is the point of no return: once money went back, the order must end
        # cancelled, so from here failures retry forward instead of compensating. A refund
        # the gateway refuses did nothing and may still compensate (the order stays
        # CONFIRMED, the saga says why).
        Step(
            name="refund_payment",
            participant="payments",
            action=refund_payment,
            retry=COMPENSATION_RETRY,
            forward="transient",
        ),
        Step(
            name="restock_items",
            participant="inventory",
            action=restock_items,
            retry=FORWARD_RETRY,
            forward="always",
        ),
        Step(
            name="mark_cancelled",
            participant="orders",
            action=mark_cancelled,
            retry=FORWARD_RETRY,
            forward="always",
        ),
    ),
)
