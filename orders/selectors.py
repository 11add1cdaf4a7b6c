"""Reads for orders: lists and pages from the read model, history from the event stream."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncHour

from eventstore.errors import StreamNotFound, VersionNotFound
from eventstore.models import StoredEvent
from orders.domain import Order as OrderAggregate
from orders.domain import OrderStatus
from orders.models import OrderSummary
from orders.services import (
    PLACE_ORDER,
    OrderNotFound,
    PlacedOrder,
    order_repository,
    order_subject,
)
from sagas.statuses import SagaStatus

User = AbstractBaseUser | AnonymousUser


def can_see_all_orders(user: Any) -> bool:
    """Staff with the view permission see every order; everyone else sees their own."""
    return bool(user.is_staff and user.has_perm("orders.view_ordersummary"))


def order_list(
    *, user: Any, status: str | None = None, customer_id: str | None = None
) -> QuerySet[OrderSummary]:
    orders = OrderSummary.objects.all()
    if not can_see_all_orders(user):
        orders = orders.filter(placed_by_user_id=user.pk)
    if status:
        orders = orders.filter(status=status)
    if customer_id:
        orders = orders.filter(customer_id=customer_id)
    return orders.order_by("-created_position")


def order_get(*, user: Any, order_id: UUID) -> OrderSummary:
    """Return the order's read-model row, or raise OrderNotFound (also for others' orders)."""
    order = order_list(user=user).filter(id=order_id).first()
    if order is None:
        raise OrderNotFound(order_id)
    return order


@dataclass(frozen=True)
class OrderAsOf:
    """An order as its first ``version`` events made it."""

    id: UUID
    customer_id: str
    status: str
    cancellation_reason: str
    items: list[dict[str, Any]]
    total: Decimal
    currency: str
    version: int
    created_at: datetime
    updated_at: datetime
    # Sealed, as the read model keeps them (orders.personal_data opens them).
    contact: Any = None
    customer_key: str = ""


def order_as_of(*, user: Any, order_id: UUID, version: int) -> OrderAsOf:
    """Replay the order's stream up to ``version`` (VersionNotFound when out of range)."""
    order_get(user=user, order_id=order_id)  # the caller may see it at all
    return order_replay(order_id=order_id, version=version)


def order_replay(*, order_id: UUID, version: int) -> OrderAsOf:
    """Replay the order's stream up to ``version``, for a caller that already authorised it.

    The admin decides who may view an order with its own permission rules (view or change,
    as Django's admin does); the API's rule is ``order_as_of``'s.
    """
    try:
        aggregate: OrderAggregate = order_repository().load(str(order_id), version=version)
    except StreamNotFound:
        raise OrderNotFound(order_id) from None
    times = list(
        StoredEvent.objects.filter(
            stream_type="order", stream_id=str(order_id), version__in=[1, version]
        )
        .order_by("version")
        .values_list("recorded_at", flat=True)
    )
    if not times:
        raise VersionNotFound(
            stream_type="order", stream_id=str(order_id), version=version, current=0
        )
    return OrderAsOf(
        id=order_id,
        customer_id=aggregate.customer_id,
        status=aggregate.status.value,
        cancellation_reason=aggregate.cancellation_reason.value
        if aggregate.cancellation_reason
        else "",
        items=[
            {
                "sku": line.sku,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": str(line.unit_price),
                "line_total": str(line.line_total),
            }
            for line in aggregate.lines
        ],
        total=aggregate.total,
        currency=aggregate.currency,
        version=aggregate.version,
        created_at=times[0],
        updated_at=times[-1],
        contact=aggregate.contact,
        customer_key=aggregate.customer_key,
    )


def order_events(*, user: Any, order_id: UUID) -> QuerySet[StoredEvent]:
    """Return the order's events in version order, if ``user`` may see the order."""
    order_get(user=user, order_id=order_id)
    return order_stream_events(order_id=order_id)


def order_stream_events(*, order_id: UUID) -> QuerySet[StoredEvent]:
    """Return the order's events in version order, for a caller that already authorised it."""
    return StoredEvent.objects.filter(stream_type="order", stream_id=str(order_id)).order_by(
        "version"
    )


def saga_summaries(*, order_ids: list[UUID]) -> dict[str, list[dict[str, Any]]]:
    """Return each order's sagas (id, type, status), newest first, in one query."""
    from sagas.models import Saga

    subjects = {order_subject(oid): str(oid) for oid in order_ids}
    result: dict[str, list[dict[str, Any]]] = {str(oid): [] for oid in order_ids}
    if not subjects:
        return result
    rows = (
        Saga.objects.filter(subject__in=list(subjects))
        .order_by("-created_at", "-id")
        .values_list("subject", "id", "saga_type", "status")
    )
    for subject, saga_id, saga_type, saga_status in rows:
        result[subjects[subject]].append({"id": saga_id, "type": saga_type, "status": saga_status})
    return result


def just_placed_sagas(placed: PlacedOrder) -> list[dict[str, Any]]:
    """Return the sagas ``saga_summaries`` would list for an order this transaction just placed.

    Its one saga is the one just started, RUNNING until the transaction commits and a worker
    takes it, so the POST's 202 body needs no read for it.
    """
    return [{"id": placed.saga_id, "type": PLACE_ORDER, "status": SagaStatus.RUNNING.value}]


def order_counts_by_status(
    *, created_from: datetime | None = None, created_before: datetime | None = None
) -> dict[str, int]:
    """Count the orders created in [from, before) (default: all) in each status, one query."""
    counts = dict.fromkeys((s.value for s in OrderStatus), 0)
    orders = OrderSummary.objects.all()
    if created_from is not None:
        orders = orders.filter(created_at__gte=created_from)
    if created_before is not None:
        orders = orders.filter(created_at__lt=created_before)
    rows = orders.order_by().values_list("status").annotate(n=Count("id"))
    for status, n in rows:
        counts[status] = n
    return counts


def orders_per_hour(*, since: datetime, until: datetime) -> dict[tuple[datetime, str], int]:
    """Count the orders created in [since, until) by (hour, status), in one query.

    The hour is the UTC hour the order was created in; only (hour, status) pairs with
    orders appear. The created_at index bounds the scan to the window.
    """
    rows = (
        OrderSummary.objects.filter(created_at__gte=since, created_at__lt=until)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .order_by()
        .values_list("hour", "status")
        .annotate(n=Count("id"))
    )
    return {(hour, status): n for hour, status, n in rows}


def cancellation_reasons(*, order_ids: Sequence[UUID]) -> dict[str, int]:
    """Count the cancelled orders among ``order_ids`` by reason, in batches of one query."""
    counts: Counter[str] = Counter()
    for begin in range(0, len(order_ids), 5000):
        rows = (
            OrderSummary.objects.filter(
                id__in=order_ids[begin : begin + 5000], status=OrderStatus.CANCELLED.value
            )
            .order_by()
            .values_list("cancellation_reason")
            .annotate(n=Count("id"))
        )
        counts.update(dict(rows))
    return dict(counts)
