"""The order read model: one ``orders.Order`` row per order stream.

Updated inline, with every append to an order stream (a new order's row in the append's own
statement, as a rider; later changes in its transaction), so a client that POSTs an order
can GET it (and find it in lists) at once, and staff never see a list that disagrees with
an order's page. The price is a little work in each append, which is
short and touches one row. The catch-up runner walks the log for this projection as for any
other, so a rebuild or a damaged row heals the same way.

Handlers are idempotent and gated by version: a row at version n takes only event n + 1. The
global log is ordered by committing transaction, and a transaction that took its id early
can append a stream's next version after another transaction appended the one before, so a
reader may meet version n + 2 before n + 1; on such a gap the row is rebuilt from its
stream, which holds every committed version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection, transaction

from eventstore.postgres import EVENT_COLUMNS, PostgresEventStore, record_from_row
from eventstore.projections import Projector
from eventstore.records import NewEvent, RecordedEvent, Rider
from eventstore.registry import events as registry
from infrastructure.db import server_binding_cursor
from orders.domain import Order as OrderAggregate
from orders.models import Order

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
    "version",
    "created_position",
    "created_at",
    "updated_at",
)


# The row the last OrderCreated handled in this thread (or task) inserted: the POST that placed
# the order answers with it instead of reading it back (orders.selectors.order_just_placed).
# One slot, overwritten by the next order, so nothing accumulates; a placing transaction that
# rolls back raises before anyone asks for it, and a stale slot names another order's id.
_last_created: ContextVar[tuple[UUID, dict[str, Any]] | None] = ContextVar(
    "orders_last_created", default=None
)


def take_created_row(order_id: UUID) -> dict[str, Any] | None:
    """Return (once) the read-model fields just inserted for ``order_id`` here, else None."""
    slot = _last_created.get()
    if slot is None or slot[0] != order_id:
        return None
    _last_created.set(None)
    return slot[1]


_TABLE = connection.ops.quote_name(Order._meta.db_table)
_ROW_COLUMNS = """id, customer_id, status, cancellation_reason, items, total, currency,
    placed_by, placed_by_user_id, correlation_id, version, created_position, created_at,
    updated_at"""
# The values of _ROW_COLUMNS up to version; the log's own three follow.
_ROW_VALUES = """%(id)s, %(customer_id)s, %(status)s, %(cancellation_reason)s, %(items)s::jsonb,
    %(total)s, %(currency)s, %(placed_by)s, %(placed_by_user_id)s::bigint,
    %(correlation_id)s, %(version)s"""

# A new order's row, from its recorded OrderCreated (catch-up, rebuild, a batch append). The
# table name comes from the model; every value is bound.
_INSERT_CREATED_SQL = f"""
INSERT INTO {_TABLE} ({_ROW_COLUMNS})
VALUES ({_ROW_VALUES}, %(created_position)s, %(created_at)s, %(updated_at)s)
ON CONFLICT DO NOTHING
"""  # noqa: S608

# The same row, written by the append that stores the OrderCreated (eventstore.records.Rider):
# every order placed is written here, inside its POST. The log's own fields come from the
# row the append stored.
_CREATED_RIDER_SQL = f"""
order_row AS (
    INSERT INTO {_TABLE} ({_ROW_COLUMNS})
    SELECT {_ROW_VALUES}, appended.position, appended.recorded_at, appended.recorded_at
    FROM appended
    ON CONFLICT DO NOTHING
    RETURNING 1
)"""  # noqa: S608


def _row_params(order_id: UUID, fields: dict[str, Any]) -> dict[str, Any]:
    return {**fields, "id": order_id, "items": json.dumps(fields["items"])}


_UPDATE_SQL = f"""
UPDATE {_TABLE}
SET version = %(version)s, updated_at = %(updated_at)s, status = %(status)s,
    cancellation_reason = COALESCE(%(reason)s::text, cancellation_reason)
WHERE id = %(id)s AND version = %(before)s
"""  # noqa: S608


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
        current = Order.objects.filter(id=event.stream_id).values_list("version", flat=True).first()
        if current is not None and current >= event.version:
            return  # already applied
        self._heal(event.stream_id)

    def rider(self, stream_type: str, stream_id: str, event: NewEvent) -> Rider | None:
        """Insert a new order's row in the statement that appends its OrderCreated.

        The order, its row (and the saga its placing starts, riding on the same append) are
        then one statement: a POST makes one round trip for all its writes.
        """
        if event.event_type != "OrderCreated":
            return None  # updates are gated on the row's version: handle() after the append
        fields = _replayed(stream_id, [event])
        order_id = UUID(stream_id)

        def written(recorded: Sequence[RecordedEvent], rows: int) -> None:
            if rows == 1:  # as in _insert_created: a replay leaves the slot alone
                at = recorded[0].recorded_at
                row = {"created_position": recorded[0].position, "created_at": at}
                _last_created.set((order_id, {**fields, **row, "updated_at": at}))

        return Rider(
            sql=_CREATED_RIDER_SQL,
            params=_row_params(order_id, fields),
            counted="order_row",
            written=written,
        )

    def _insert_created(self, event: RecordedEvent) -> None:
        # ON CONFLICT DO NOTHING makes a replayed OrderCreated a no-op in one round trip.
        # A prepared statement (infrastructure.db), not the ORM's compile on every event.
        fields = row_from_stream([event])
        order_id = UUID(event.stream_id)
        with server_binding_cursor() as cursor:
            cursor.execute(_INSERT_CREATED_SQL, _row_params(order_id, fields))
            inserted = cursor.rowcount == 1
        # A replay (the row was there) leaves the slot alone: the stored row may differ.
        if inserted:
            _last_created.set((order_id, fields))

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
        Order.objects.update_or_create(id=UUID(stream_id), defaults=fields)

    def reset(self) -> None:
        Order.objects.all().delete()

    def verify(self) -> Iterable[str]:
        rows = {str(r.pk): r for r in Order.objects.all().iterator(chunk_size=2000)}
        seen: set[str] = set()
        for stream_id, events in _order_streams():
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


def _order_streams() -> Iterator[tuple[str, list[RecordedEvent]]]:
    """Yield every order stream with its events, reading the table once, in stream order."""
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(
            f"SELECT {EVENT_COLUMNS} FROM eventstore_event "  # noqa: S608 - a constant
            "WHERE stream_type = 'order' ORDER BY stream_id, version"
        )
        current: list[RecordedEvent] = []
        while rows := cursor.fetchmany(2000):
            for row in rows:
                event = record_from_row(row)
                if current and current[-1].stream_id != event.stream_id:
                    yield current[-1].stream_id, current
                    current = []
                current.append(event)
        if current:
            yield current[-1].stream_id, current
