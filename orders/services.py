"""Write services for orders: place, request cancellation, confirm, cancel.

Each service owns one durable transaction (inside a caller's transaction it refuses to run).
``order_place`` runs its writes in psycopg's pipeline mode (``infrastructure.db``), so its few
statements cost few round trips; the others are plain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from django.db import transaction

from eventstore.errors import ConcurrencyError, StreamNotFound
from eventstore.factory import event_store
from eventstore.records import EventMetadata
from eventstore.repository import Repository
from infrastructure.db import pipelined_transaction
from inventory.selectors import products_by_sku
from orders.domain import (
    CancellationReason,
    InvalidOrder,
    Order,
    OrderAlreadyCancelled,
    PricedItem,
)
from orders.models import OrderSummary
from orders.personal_data import PersonalView, seal_for_customer
from orders.projections import order_row_sent
from payments.services import payment_method_create
from privacy.services import ErasureDone, erase_keys
from sagas.errors import SagaAlreadyActive
from sagas.selectors import sagas_for_subject
from sagas.services import StopVerdict, saga_begin, saga_request_stop, saga_start
from sagas.statuses import ACTIVE_SAGA_STATUSES

PLACE_ORDER = "place_order"
CANCEL_ORDER = "cancel_order"


class OrderNotFound(Exception):
    """Say that no order has this id (or the caller may not see it)."""

    def __init__(self, order_id: UUID | str) -> None:
        self.order_id = str(order_id)
        super().__init__(f"no order {order_id}")


class OrderAlreadyPlaced(Exception):
    """Refuse to place an order under an id that an order already has (nothing was written)."""

    def __init__(self, order_id: UUID | str) -> None:
        self.order_id = str(order_id)
        super().__init__(f"order {order_id} is already placed")


def order_repository() -> Repository[Order]:
    return Repository(Order, store=event_store())


def order_subject(order_id: UUID | str) -> str:
    """Name an order as the subject of the sagas acting on it."""
    return f"order:{order_id}"


@dataclass(frozen=True)
class OrderLineRequest:
    sku: str
    quantity: int


@dataclass(frozen=True)
class PlacedOrder:
    """Carry what placing an order wrote: its id, its saga's, and its read-model row."""

    order_id: UUID
    saga_id: UUID
    order: OrderSummary
    #: The contact as given (the row holds it sealed): the answer needs no key lookup.
    personal: PersonalView


def order_place(
    *,
    customer_id: str,
    lines: Sequence[OrderLineRequest],
    payment_token: str,
    actor: str,
    contact: Mapping[str, Any] | None = None,
    correlation_id: str | None = None,
    order_id: UUID | None = None,
    now: datetime | None = None,
) -> PlacedOrder:
    """Price the lines from the catalogue, create the order and start its placing saga.

    The order's creation is the saga's first step, run here in the service's transaction:
    the order's first event, its read-model row and its saga commit together or not at all;
    the saga's remaining steps (reserve, charge, confirm) are dispatched to the workers after
    the commit. ``order_id`` names the new order (a fresh id by default); an order that
    already has it raises :class:`OrderAlreadyPlaced`. ``now`` is the saga's clock (the
    database's by default). ``contact`` is sealed under the customer's key in the same
    transaction (``orders.personal_data``): the saga's context and the order's events only
    ever hold it encrypted.

    ``payment_token`` is handed to the payment gateway here, before the transaction, and
    goes no further: the saga's context keeps the gateway's reference to the card (what the
    charge step names), so the token is in no table, message or log. Raises
    ``PaymentGatewayUnavailable`` when the gateway cannot take it now (nothing is written).
    """
    catalogue = products_by_sku(skus=[line.sku for line in lines])
    unknown = sorted({line.sku for line in lines} - set(catalogue))
    if unknown:
        raise InvalidOrder({"items": [f"Unknown SKU: {', '.join(unknown)}."]})
    items = [
        PricedItem(
            sku=line.sku,
            name=catalogue[line.sku].name,
            quantity=line.quantity,
            unit_price=catalogue[line.sku].price,
        )
        for line in lines
    ]
    currencies = {catalogue[line.sku].currency for line in lines}
    currency = currencies.pop() if len(currencies) == 1 else ""
    if not currency:
        raise InvalidOrder({"items": ["All lines of an order must share one currency."]})
    # A network call: made outside any transaction, once the order is known to be valid.
    payment_method = payment_method_create(token=payment_token)
    order_id = order_id or uuid4()
    context: dict[str, Any] = {
        "order_id": str(order_id),
        "customer_id": customer_id,
        "items": [
            {
                "sku": i.sku,
                "name": i.name,
                "quantity": i.quantity,
                "unit_price": str(i.unit_price),
            }
            for i in items
        ],
        "currency": currency,
        "payment_method": payment_method,
        "placed_by": actor,
    }
    try:
        with pipelined_transaction():
            # First, and read at once: the customer's key, key-share-locked until the commit, so
            # an erasure of this customer comes wholly before or wholly after this order.
            sealed = seal_for_customer(customer_id, contact)
            context["contact"] = sealed.contact
            context["customer_key"] = sealed.customer_key
            saga_id = saga_begin(
                saga_type=PLACE_ORDER,
                context=context,
                correlation_id=correlation_id or str(uuid4()),
                actor=actor,
                subject=order_subject(order_id),
                now=now,
            )
            # Read in the transaction (once it commits, a worker may move the order on);
            # the answer comes with the saga's writes.
            row_written = order_row_sent(order_id)
        row = row_written()
    except ConcurrencyError as exc:
        # The saga's first step found the order's stream already begun.
        if exc.stream_id == str(order_id):
            raise OrderAlreadyPlaced(order_id) from exc
        raise
    if row is None:  # pragma: no cover - the row is projected inline, in the transaction
        raise OrderNotFound(order_id)
    return PlacedOrder(
        order_id=order_id,
        saga_id=saga_id,
        order=row,
        personal=PersonalView(contact=contact, personal_data_erased=False),
    )


def order_request_cancellation(
    *,
    order_id: UUID,
    actor: str,
    acting_as_staff: bool,
    correlation_id: str | None = None,
    now: datetime | None = None,
) -> UUID:
    """Cancel an order that is not cancelled yet; return the saga that will cancel it.

    ``acting_as_staff`` says the actor is staff allowed to cancel anyone's order; without it,
    an order placed by someone else is reported as not found, as it is to their reads. The
    reason recorded follows from who cancels: ``cancelled_by_staff`` for staff cancelling
    another's order, ``cancelled_by_client`` for anyone cancelling their own. Raises
    ``OrderAlreadyCancelled`` (or ``OrderNotCancellable`` when the cancel saga's own check
    finds it cancelled meanwhile) when there is nothing left to cancel. ``now`` is a cancel
    saga's clock (``seed_demo --orders`` builds a past day with it); the database's by default.

    - A **confirmed** order gets the cancel saga (refund, restock, mark cancelled), started
      in its own transaction whose first step checks the order again. A cancel saga
      already under way is the answer to a repeated request.
    - A **pending** order's placing saga is asked to stop (``sagas.services.
      saga_request_stop``) in one durable transaction with the saga's row locked: a step
      running finishes first and, at its boundary, the saga compensates what it did
      (refund, release, cancel the order with this reason) instead of running the next
      step; with no step running it starts compensating at once.

    The race with the confirmation, thought through: the placing saga's last step appends
    ``OrderConfirmed`` and commits, then its outcome marks the saga COMPLETED. A request that
    reads the order PENDING and locks the saga row either (a) finds the saga still RUNNING:
    the request is recorded, and the confirmation's outcome, which compares the request in
    its compare-and-set, misses, decides again with the request seen, and completes the
    saga as stopped too late, starting the cancel saga in that same transaction
    (``orders.sagas.cancel_after_late_stop``); or (b) finds it COMPLETED (the outcome
    committed between our read and our lock): the order is CONFIRMED by then, and this
    request starts the cancel saga itself, as for any confirmed order. An order read as
    CONFIRMED whose saga is not yet marked COMPLETED gets the cancel saga at once; the
    placing saga then completes unasked. Either way exactly one cancel saga follows a
    confirmation, and the order ends CANCELLED.
    """
    repository = order_repository()
    try:
        order = repository.load(str(order_id))
    except StreamNotFound:
        raise OrderNotFound(order_id) from None
    own_order = order.placed_by == actor
    if not (own_order or acting_as_staff):
        raise OrderNotFound(order_id)
    reason = (
        CancellationReason.CANCELLED_BY_CLIENT
        if own_order
        else CancellationReason.CANCELLED_BY_STAFF
    )
    if order.is_cancelled:
        raise OrderAlreadyCancelled(f"order {order_id} is already cancelled")
    if not order.is_confirmed:
        placing = _placing_saga(order_id)
        with transaction.atomic(durable=True):
            verdict = saga_request_stop(saga_id=placing, code=reason.value, actor=actor)
        if verdict is StopVerdict.COMPENSATED:
            # Undone meanwhile (a declined card, out of stock): the order is CANCELLED.
            raise OrderAlreadyCancelled(f"order {order_id} is already cancelled")
        if verdict is not StopVerdict.COMPLETED:
            return placing
        # Confirmed before the request reached its saga: cancel it as a confirmed order.
    return order_cancel_confirmed(
        order_id=order_id, reason=reason, actor=actor, correlation_id=correlation_id, now=now
    )


def _placing_saga(order_id: UUID) -> UUID:
    placing = (
        sagas_for_subject(subject=order_subject(order_id))
        .filter(saga_type=PLACE_ORDER)
        .values_list("id", flat=True)
        .first()
    )
    if placing is None:  # pragma: no cover - an order is created by its placing saga
        raise OrderNotFound(order_id)
    return placing


def order_cancel_confirmed(
    *,
    order_id: UUID,
    reason: CancellationReason,
    actor: str,
    correlation_id: str | None = None,
    now: datetime | None = None,
) -> UUID:
    """Start the cancel saga of a confirmed order, or return the one already under way.

    The saga's start is the transaction: its first step checks the order again inside it
    (``OrderNotCancellable`` unless CONFIRMED).
    """
    subject = order_subject(order_id)
    try:
        return saga_start(
            saga_type=CANCEL_ORDER,
            context={"order_id": str(order_id), "reason": reason.value},
            correlation_id=correlation_id or str(uuid4()),
            actor=actor,
            subject=subject,
            exclusive=True,
            now=now,
        )
    except SagaAlreadyActive:
        under_way = (
            sagas_for_subject(subject=subject)
            .filter(saga_type=CANCEL_ORDER, status__in=ACTIVE_SAGA_STATUSES)
            .values_list("id", flat=True)
            .first()
        )
        if under_way is None:
            # It finished between the start's check and this read: ask again.
            return order_cancel_confirmed(
                order_id=order_id,
                reason=reason,
                actor=actor,
                correlation_id=correlation_id,
                now=now,
            )
        return under_way


def order_create_from_context(*, context: dict[str, object], metadata: EventMetadata) -> None:
    """Create the order described by a placing saga's context (its first, local step).

    Runs inside the transaction that starts the saga (``order_place``'s): the order and its
    saga commit together. Raises ``ConcurrencyError`` when the order's stream has begun.
    """
    raw_items = context["items"]
    assert isinstance(raw_items, list)
    order = Order.create(
        order_id=str(context["order_id"]),
        customer_id=str(context["customer_id"]),
        items=[
            PricedItem(
                sku=i["sku"],
                name=i["name"],
                quantity=int(i["quantity"]),
                unit_price=Decimal(str(i["unit_price"])),
            )
            for i in raw_items
        ],
        currency=str(context["currency"]),
        placed_by=str(context["placed_by"]),
        contact=context.get("contact"),  # type: ignore[arg-type]
        customer_key=str(context.get("customer_key", "")),
    )
    order_repository().save(order, metadata=metadata)


def order_confirm(*, order_id: UUID | str, metadata: EventMetadata) -> bool:
    """Confirm a pending order; return False when it was already confirmed (a repeat).

    Raises ``OrderNotPending`` for a cancelled order. Reloads and decides again when another
    writer appended first.
    """

    def confirm(order: Order) -> bool:
        if order.is_confirmed:
            return False
        order.confirm()
        return True

    with transaction.atomic(durable=True):
        _, changed, _ = order_repository().execute(str(order_id), confirm, metadata=metadata)
    return changed


def order_cancel(
    *, order_id: UUID | str, reason: CancellationReason, metadata: EventMetadata
) -> bool:
    """Cancel an order for ``reason``; return False when it was already cancelled."""

    def cancel(order: Order) -> bool:
        try:
            order.cancel(reason)
        except OrderAlreadyCancelled:
            return False
        return True

    with transaction.atomic(durable=True):
        _, changed, _ = order_repository().execute(str(order_id), cancel, metadata=metadata)
    return changed


def customer_erase(*, customer_id: str, reason: str, actor: str) -> ErasureDone:
    """Erase the customer's personal data (crypto-shredding); idempotent.

    Destroys the customer's data keys: every order of theirs placed so far reads ``contact:
    null`` and ``personal_data_erased: true`` from then on, its events untouched. An order
    being placed meanwhile either commits first (and is erased with the rest) or starts a
    new key afterwards (``privacy.services.erase_keys``).
    """
    return erase_keys(
        customer_id=customer_id,
        reason=reason,
        actor=actor,
        count_orders=lambda customer: OrderSummary.objects.filter(customer_id=customer).count(),
    )
