"""The order read model: one ``orders.Order`` row per order stream.

Updated inline, in the transaction of every append to an order stream, so a client that
POSTs an order can GET it (and find it in lists) at once, and staff never see a list that
disagrees with an order's page. The price is a little work in each append, which is short
and touches one row. The catch-up runner walks the log for this projection as for any
other, so a rebuild or a damaged row heals the same way.

Handlers are idempotent and gated by version: a row at version n takes only event n + 1. The
global log is ordered by committing transaction, and a transaction that took its id early
can append a stream's next version after another transaction appended the one before, so a
reader may meet version n + 2 before n + 1; on such a gap the row is rebuilt from its
stream, which holds every committed version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection

from eventstore.postgres import PostgresEventStore
from eventstore.projections import Projector, RebuildCounts
from eventstore.records import NewEvent, RecordedEvent
from eventstore.registry import events as registry
from infrastructure.db import (
    insert_fields,
    prepared_insert_rows,
    prepared_select_sent,
    server_binding_cursor,
)
from orders.domain import Order as OrderAggregate
from orders.models import OrderSummary

ORDER_EVENTS = frozenset({"OrderCreated", "OrderConfirmed", "OrderCancelled"})
COMPARED_FIELDS = (
    "customer_id",
    "status",
    "cancellation_reason",
    "items",
    "total",
    "currency",
    "placed_by",
    "placed_by_user_id",
    "contact",
    "customer_key",
    "version",
    "created_position",
    "created_at",
    "updated_at",
)

# This module owns the SQL of the order read model's table. A new order's row is written
# through infrastructure.db.prepared_insert_rows, whose column list comes from the model's fields;
# later events change only the columns below.
_TABLE = connection.ops.quote_name(OrderSummary._meta.db_table)
_UPDATE_SQL = f"""
UPDATE {_TABLE}
SET version = %(version)s, updated_at = %(updated_at)s, status = %(status)s,
    cancellation_reason = COALESCE(%(reason)s::text, cancellation_reason)
WHERE id = %(id)s AND version = %(before)s
"""  # noqa: S608


# A rebuild's write: insert a missing row, or overwrite one no further along than the replay.
# Gated on the version, so a live confirmation or cancellation committed meanwhile (its row
# already at a later version) is never moved back; READ COMMITTED re-checks the condition
# against the row's latest version after waiting for a writer that held it.
_COLUMNS = [connection.ops.quote_name(f.column) for f in insert_fields(OrderSummary)]
_PK = connection.ops.quote_name(OrderSummary._meta.pk.column)
_VERSION = connection.ops.quote_name(OrderSummary._meta.get_field("version").column)
_REBUILD_COMPARED = (*COMPARED_FIELDS, "correlation_id")


def _upsert_unless_ahead(rows: Sequence[OrderSummary]) -> int:
    """Write ``rows`` unless the stored row is at a later version; return how many were."""
    if not rows:
        return 0
    fields = insert_fields(OrderSummary)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS if c != _PK)
    sql = (
        f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) VALUES {', '.join([row] * len(rows))} "  # noqa: S608
        f"ON CONFLICT ({_PK}) DO UPDATE SET {updates} "
        f"WHERE {_TABLE}.{_VERSION} <= EXCLUDED.{_VERSION}"
    )
    values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in rows for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        return cursor.rowcount


def order_row_sent(order_id: UUID) -> Callable[[], OrderSummary | None]:
    """Send the read of an order's read-model row; return the function that reads the answer.

    One prepared statement (infrastructure.db). In a pipelined transaction its answer comes with
    the transaction's other statements; the row is as this transaction sees it.
    """
    rows = prepared_select_sent(OrderSummary, "id = %s", [order_id])
    return lambda: next(iter(rows()), None)


def _user_id(placed_by: str) -> int | None:
    kind, _, ident = placed_by.partition(":")
    return int(ident) if kind == "user" and ident.isdigit() else None


def row_from_stream(events: Sequence[RecordedEvent]) -> dict[str, Any]:
    """Return the read-model fields for an order stream, by replaying it."""
    return {
        **_replayed(events[0].stream_id, events),
        "created_position": events[0].position,
        "created_at": events[0].recorded_at,
        "updated_at": events[-1].recorded_at,
    }


def _replayed(stream_id: str, events: Sequence[NewEvent | RecordedEvent]) -> dict[str, Any]:
    """Return the fields that replaying the events gives (all but the log's own)."""
    order = OrderAggregate(stream_id)
    for event in events:
        order.replay(registry.decode(event.event_type, event.schema_version, dict(event.data)))
    return {
        "customer_id": order.customer_id,
        "status": order.status.value,
        "cancellation_reason": order.cancellation_reason.value if order.cancellation_reason else "",
        "items": [
            {
                "sku": line.sku,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": str(line.unit_price),
                "line_total": str(line.line_total),
            }
            for line in order.lines
        ],
        "total": order.total,
        "currency": order.currency,
        "placed_by": order.placed_by,
        "placed_by_user_id": _user_id(order.placed_by),
        "correlation_id": str(events[0].metadata.get("correlation_id", "")),
        "contact": dict(order.contact) if order.contact is not None else None,
        "customer_key": order.customer_key,
        "version": order.version,
    }


class OrderProjector(Projector):
    name = "orders"
    event_types = ORDER_EVENTS
    inline = True

    def handle(self, event: RecordedEvent) -> None:
        if event.event_type == "OrderCreated":
            self._insert_created(event)
            return
        changes = self._changes(event)
        # Every order's confirmation or cancellation comes through here: one prepared
        # statement (infrastructure.db), gated on the version before this event.
        with server_binding_cursor() as cursor:
            cursor.execute(
                _UPDATE_SQL,
                {
                    "id": UUID(event.stream_id),
                    "before": event.version - 1,
                    "version": event.version,
                    "updated_at": event.recorded_at,
                    "status": changes["status"],
                    "reason": changes.get("cancellation_reason"),
                },
            )
            updated = cursor.rowcount
        if updated:
            return
        current = (
            OrderSummary.objects.filter(id=event.stream_id)
            .values_list("version", flat=True)
            .first()
        )
        if current is not None and current >= event.version:
            return  # already applied
        self._heal(event.stream_id)

    def _insert_created(self, event: RecordedEvent) -> None:
        # ON CONFLICT DO NOTHING makes a replayed OrderCreated a no-op in one statement. A
        # prepared statement (infrastructure.db), not the ORM's compile on every order placed.
        fields = row_from_stream([event])
        prepared_insert_rows(
            [OrderSummary(id=UUID(event.stream_id), **fields)], ignore_conflicts=True
        )

    @staticmethod
    def _changes(event: RecordedEvent) -> dict[str, Any]:
        if event.event_type == "OrderConfirmed":
            return {"status": "CONFIRMED"}
        return {"status": "CANCELLED", "cancellation_reason": event.data["reason"]}

    def _heal(self, stream_id: str) -> None:
        """Rebuild one row from its whole stream (a gap, or a row missing after a reset)."""
        events = PostgresEventStore().read_stream(stream_type="order", stream_id=stream_id)
        if not events:
            return
        fields = row_from_stream(events)
        OrderSummary.objects.update_or_create(id=UUID(stream_id), defaults=fields)

    def __init__(self) -> None:
        # The streams this instance's rebuild has written (or found current) so far.
        self._met: set[str] = set()

    def rebuild_batch(self, events: Sequence[RecordedEvent]) -> RebuildCounts:
        """Write each order the batch touches from its whole stream, unless its row is ahead.

        A stream met in an earlier batch is skipped: it was written from every event it had
        then, and each event appended since was applied by the inline projector in its own
        append's transaction. A row equal to its replay is not written at all, so a rebuild
        of a healthy read model takes no row locks; the others are written by one upsert
        gated on the version (``_REBUILD_UPSERT_SQL``).
        """
        ids = sorted({e.stream_id for e in events} - self._met)
        if not ids:
            return RebuildCounts()
        self._met.update(ids)
        streams = PostgresEventStore().read_streams_of(stream_type="order", stream_ids=ids)
        rows = {
            str(r["id"]): r
            for r in OrderSummary.objects.filter(id__in=ids).values("id", *_REBUILD_COMPARED)
        }
        stale = []
        for stream_id in ids:
            stream = streams.get(stream_id)
            if not stream:
                continue  # a row without events is for rebuild_remove
            fields = row_from_stream(stream)
            have = rows.get(stream_id)
            if have is None or any(
                _normalise(have[f]) != _normalise(fields[f]) for f in _REBUILD_COMPARED
            ):
                stale.append(OrderSummary(id=UUID(stream_id), **fields))
        written = _upsert_unless_ahead(stale)
        # A stale row the upsert skipped was ahead of the replay: a live write got there first.
        return RebuildCounts(written=written, unchanged=len(ids) - written)

    def rebuild_gone(self, *, batch_size: int) -> Iterator[list[str]]:
        after: UUID | None = None
        while True:
            page = OrderSummary.objects.order_by("id")
            if after is not None:
                page = page.filter(id__gt=after)
            chunk = list(page.values_list("id", flat=True)[:batch_size])
            if not chunk:
                return
            after = chunk[-1]
            unmet = [str(i) for i in chunk if str(i) not in self._met]
            if unmet:
                yield unmet

    def rebuild_remove(self, keys: Sequence[str]) -> int:
        # Asked of the store again, in this transaction: an order placed after the walk read
        # the log has a row the walk never met, and events.
        streams = PostgresEventStore().read_streams_of(stream_type="order", stream_ids=keys)
        gone = [UUID(k) for k in keys if k not in streams]
        if not gone:
            return 0
        removed, _ = OrderSummary.objects.filter(id__in=gone).delete()
        return removed

    def verify(self) -> Iterable[str]:
        rows = {str(r.pk): r for r in OrderSummary.objects.all().iterator(chunk_size=2000)}
        seen: set[str] = set()
        for stream_id, events in PostgresEventStore().read_streams(stream_type="order"):
            seen.add(stream_id)
            row = rows.get(stream_id)
            if row is None:
                yield f"order {stream_id} has events but no row"
                continue
            expected = row_from_stream(events)
            for field in COMPARED_FIELDS:
                have = getattr(row, field)
                want = expected[field]
                if _normalise(have) != _normalise(want):
                    yield f"order {stream_id}: {field} is {have!r}, replay says {want!r}"
        for stream_id in sorted(set(rows) - seen):
            yield f"order {stream_id} has a row but no events"


def _normalise(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value
