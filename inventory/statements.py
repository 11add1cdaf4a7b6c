"""The SQL of the reservation path: every order's reserve, confirm and release steps run it.

The rules live in ``inventory.services``; this module only reads and writes rows, each
function one prepared statement (``infrastructure.db``) whose text does not depend on the number of
lines. The ORM would build and compile its SQL on every call: about a millisecond of a
worker's CPU per statement on the benchmark machine, the largest part of a step's own cost
(docs/benchmarks.md). Table names come from the models; every value is bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db import connection

from infrastructure.db import server_binding_cursor
from inventory.models import Product, Reservation, ReservationLine, ReservationStatus
from inventory.results import ReservationResult, ReservedLine


def _table(model: type[Product | Reservation | ReservationLine]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


@dataclass(frozen=True)
class Stock:
    """One product's stock counters, as locked, or as they are to be written."""

    product_id: int
    sku: str
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


@dataclass(frozen=True)
class LockedReservation:
    """What the release, commit and restock rules need of a locked reservation."""

    id: int
    status: ReservationStatus
    released_key: str
    restocked_key: str


_LOCK_STOCK_SQL = f"""
SELECT id, sku, stock_on_hand, stock_reserved FROM {_table(Product)}
WHERE sku = ANY(%s::text[])
ORDER BY sku
FOR UPDATE
"""  # noqa: S608

_LOCK_RESERVED_SQL = f"""
SELECT p.id, p.sku, p.stock_on_hand, p.stock_reserved, l.quantity
FROM {_table(Product)} p JOIN {_table(ReservationLine)} l ON l.product_id = p.id
WHERE l.reservation_id = %s
ORDER BY p.sku
FOR UPDATE OF p
"""  # noqa: S608

_SAVE_STOCK_SQL = f"""
UPDATE {_table(Product)} AS p
SET stock_on_hand = s.on_hand, stock_reserved = s.reserved, updated_at = %s
FROM unnest(%s::bigint[], %s::integer[], %s::integer[]) AS s(id, on_hand, reserved)
WHERE p.id = s.id
"""  # noqa: S608

_FIND_RESERVATION_SQL = f"""
SELECT r.id, r.status, p.sku, l.quantity
FROM {_table(Reservation)} r
LEFT JOIN {_table(ReservationLine)} l ON l.reservation_id = r.id
LEFT JOIN {_table(Product)} p ON p.id = l.product_id
WHERE r.order_id = %s
"""  # noqa: S608

_INSERT_RESERVATION_SQL = f"""
WITH r AS (
    INSERT INTO {_table(Reservation)} (order_id, status, reserved_key, released_key,
        committed_key, restocked_key, reserved_at, updated_at)
    VALUES (%(order_id)s, %(status)s, %(key)s, '', '', '', %(at)s, %(at)s)
    RETURNING id
)
INSERT INTO {_table(ReservationLine)} (reservation_id, product_id, quantity)
SELECT r.id, l.product_id, l.quantity
FROM r, unnest(%(products)s::bigint[], %(quantities)s::integer[]) AS l(product_id, quantity)
RETURNING reservation_id
"""  # noqa: S608

_LOCK_RESERVATION_SQL = f"""
SELECT id, status, released_key, restocked_key FROM {_table(Reservation)}
WHERE order_id = %s
FOR UPDATE
"""  # noqa: S608

#: Each status a reservation moves to records the key and time of that transition.
_MARK_SQL = {
    status: f"""
UPDATE {_table(Reservation)}
SET status = %(status)s, {prefix}_key = %(key)s, {prefix}_at = %(at)s, updated_at = %(at)s
WHERE id = %(id)s
"""  # noqa: S608
    for status, prefix in (
        (ReservationStatus.RELEASED, "released"),
        (ReservationStatus.COMMITTED, "committed"),
        (ReservationStatus.RESTOCKED, "restocked"),
    )
}


def lock_stock(skus: Iterable[str]) -> dict[str, Stock]:
    """Lock the products with these skus, in sku order; return their counters by sku."""
    with server_binding_cursor() as cursor:
        cursor.execute(_LOCK_STOCK_SQL, [sorted(set(skus))])
        rows = cursor.fetchall()
    return {sku: Stock(pid, sku, on_hand, reserved) for pid, sku, on_hand, reserved in rows}


def lock_reserved_stock(reservation_id: int) -> list[tuple[Stock, int]]:
    """Lock a reservation's products in sku order; pair each with its reserved quantity.

    The lines joined to their products, locking only the products, in sku order as every
    caller locks them, so two never wait for each other in a cycle.
    """
    with server_binding_cursor() as cursor:
        cursor.execute(_LOCK_RESERVED_SQL, [reservation_id])
        rows = cursor.fetchall()
    return [
        (Stock(pid, sku, on_hand, reserved), quantity)
        for pid, sku, on_hand, reserved, quantity in rows
    ]


def save_stock(stocks: Sequence[Stock], *, at: datetime) -> None:
    """Write these products' counters (the table's checks keep them sane)."""
    with server_binding_cursor() as cursor:
        cursor.execute(
            _SAVE_STOCK_SQL,
            [
                at,
                [s.product_id for s in stocks],
                [s.on_hand for s in stocks],
                [s.reserved for s in stocks],
            ],
        )


def reservation_find(order_id: UUID) -> ReservationResult | None:
    """Return the order's reservation with its lines, or None."""
    with server_binding_cursor() as cursor:
        cursor.execute(_FIND_RESERVATION_SQL, [order_id])
        rows = cursor.fetchall()
    if not rows:
        return None
    reservation_id, status = rows[0][0], rows[0][1]
    # Sorted here, not by the database's collation: the same order as a fresh result's lines.
    lines = sorted((sku, quantity) for _, _, sku, quantity in rows if sku is not None)
    return ReservationResult(
        reservation_id=reservation_id,
        order_id=order_id,
        status=ReservationStatus(status),
        lines=tuple(ReservedLine(sku=sku, quantity=quantity) for sku, quantity in lines),
    )


def reservation_insert(
    *, order_id: UUID, key: str, at: datetime, lines: Sequence[tuple[int, int]]
) -> int:
    """Write a RESERVED reservation with its (product id, quantity) lines; return its id."""
    with server_binding_cursor() as cursor:
        cursor.execute(
            _INSERT_RESERVATION_SQL,
            {
                "order_id": order_id,
                "status": ReservationStatus.RESERVED.value,
                "key": key,
                "at": at,
                "products": [product_id for product_id, _ in lines],
                "quantities": [quantity for _, quantity in lines],
            },
        )
        row = cursor.fetchone()
    assert row is not None, "a reservation has at least one line"
    return int(row[0])


def lock_reservation(order_id: UUID) -> LockedReservation | None:
    """Lock the order's reservation row, if it has one."""
    with server_binding_cursor() as cursor:
        cursor.execute(_LOCK_RESERVATION_SQL, [order_id])
        row = cursor.fetchone()
    if row is None:
        return None
    reservation_id, status, released_key, restocked_key = row
    return LockedReservation(
        id=reservation_id,
        status=ReservationStatus(status),
        released_key=released_key,
        restocked_key=restocked_key,
    )


def reservation_mark(
    reservation_id: int, *, status: ReservationStatus, key: str, at: datetime
) -> None:
    """Move a locked reservation to ``status``, recording the transition's key and time."""
    with server_binding_cursor() as cursor:
        cursor.execute(
            _MARK_SQL[status], {"id": reservation_id, "status": status.value, "key": key, "at": at}
        )
