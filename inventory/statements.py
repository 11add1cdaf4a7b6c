"""The SQL of the inventory's tables: the only module that writes it.

Two paths run it: the reservation steps of every order (reserve, confirm, release, restock)
and the catalogue lookup that prices every order inside its POST. Each function is one
statement whose text does not depend on the number of lines, run on a server-binding cursor
(``infrastructure.db``) so that it is prepared after a few runs instead of being compiled by
the ORM on every call (docs/performance.md). The rules live in
``inventory.services``. Table and column names come from the models' fields, every value is
bound, and an INSERT writes every concrete field, a new one with its default
(``inventory/tests/test_statements.py`` checks both).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection
from django.db.models import Field, Model
from django.db.models.fields import AutoFieldMixin

from infrastructure.db import server_binding_cursor
from inventory.models import Product, Reservation, ReservationLine, ReservationStatus
from inventory.results import ProductInfo, ReservationResult, ReservedLine


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _column(model: type[Model], name: str) -> str:
    """Return the quoted column of the model's field ``name`` (an unknown name fails here)."""
    field = model._meta.get_field(name)
    assert isinstance(field, Field)
    return connection.ops.quote_name(field.column)


def _columns(model: type[Model], *names: str) -> str:
    return ", ".join(_column(model, name) for name in names)


def inserted_fields(model: type[Model]) -> list[Field[Any, Any]]:
    """Return the fields an INSERT of ``model`` writes: every concrete one but an auto key."""
    meta = model._meta
    auto_pk = isinstance(meta.pk, AutoFieldMixin)
    return [f for f in meta.concrete_fields if not (auto_pk and f is meta.pk)]


def insert_values(fields: Sequence[Field[Any, Any]], given: Mapping[str, Any]) -> dict[str, Any]:
    """Return each field's value for an INSERT, by column: from ``given`` (by field name),
    else the field's default, prepared for the database as the ORM prepares it.
    """
    values = {}
    for field in fields:
        value = given[field.name] if field.name in given else field.get_default()
        values[field.column] = field.get_db_prep_save(value, connection)
    return values


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


_P, _R, _L = Product, Reservation, ReservationLine
_STOCK = _columns(_P, "id", "sku", "stock_on_hand", "stock_reserved")

_LOCK_STOCK_SQL = f"""
SELECT {_STOCK} FROM {_table(_P)}
WHERE {_column(_P, "sku")} = ANY(%s::text[])
ORDER BY {_column(_P, "sku")}
FOR UPDATE
"""  # noqa: S608

_LOCK_RESERVED_SQL = f"""
SELECT {", ".join(f"p.{c}" for c in _STOCK.split(", "))}, l.{_column(_L, "quantity")}
FROM {_table(_P)} p JOIN {_table(_L)} l ON l.{_column(_L, "product")} = p.{_column(_P, "id")}
WHERE l.{_column(_L, "reservation")} = %s
ORDER BY p.{_column(_P, "sku")}
FOR UPDATE OF p
"""  # noqa: S608

_SAVE_STOCK_SQL = f"""
UPDATE {_table(_P)} AS p
SET {_column(_P, "stock_on_hand")} = s.on_hand, {_column(_P, "stock_reserved")} = s.reserved,
    {_column(_P, "updated_at")} = %s
FROM unnest(%s::bigint[], %s::integer[], %s::integer[]) AS s(id, on_hand, reserved)
WHERE p.{_column(_P, "id")} = s.id
"""  # noqa: S608

_FIND_RESERVATION_SQL = f"""
SELECT r.{_column(_R, "id")}, r.{_column(_R, "status")}, p.{_column(_P, "sku")},
    l.{_column(_L, "quantity")}
FROM {_table(_R)} r
LEFT JOIN {_table(_L)} l ON l.{_column(_L, "reservation")} = r.{_column(_R, "id")}
LEFT JOIN {_table(_P)} p ON p.{_column(_P, "id")} = l.{_column(_L, "product")}
WHERE r.{_column(_R, "order_id")} = %s
"""  # noqa: S608

# Every field of both tables is written (a new one gets its default); a line's own values
# come from the arrays, the rest are the same for every line.
_RESERVATION_FIELDS = inserted_fields(_R)
_LINE_FIELDS = inserted_fields(_L)
_LINE_FROM_ARRAYS = {"reservation": "r.id", "product": "l.product_id", "quantity": "l.quantity"}
_INSERT_RESERVATION_SQL = f"""
WITH r AS (
    INSERT INTO {_table(_R)} ({", ".join(connection.ops.quote_name(f.column) for f in _RESERVATION_FIELDS)})
    VALUES ({", ".join(f"%(r_{f.column})s" for f in _RESERVATION_FIELDS)})
    RETURNING {_column(_R, "id")} AS id
)
INSERT INTO {_table(_L)} ({", ".join(connection.ops.quote_name(f.column) for f in _LINE_FIELDS)})
SELECT {", ".join(_LINE_FROM_ARRAYS.get(f.name, f"%(l_{f.column})s") for f in _LINE_FIELDS)}
FROM r, unnest(%(products)s::bigint[], %(quantities)s::integer[]) AS l(product_id, quantity)
RETURNING {_column(_L, "reservation")}
"""  # noqa: S608, E501

_LOCK_RESERVATION_SQL = f"""
SELECT {_columns(_R, "id", "status", "released_key", "restocked_key")} FROM {_table(_R)}
WHERE {_column(_R, "order_id")} = %s
FOR UPDATE
"""  # noqa: S608

#: Each status a reservation moves to records the key and time of that transition.
_MARK_SQL = {
    status: f"""
UPDATE {_table(_R)}
SET {_column(_R, "status")} = %(status)s, {_column(_R, f"{prefix}_key")} = %(key)s,
    {_column(_R, f"{prefix}_at")} = %(at)s, {_column(_R, "updated_at")} = %(at)s
WHERE {_column(_R, "id")} = %(id)s
"""  # noqa: S608
    for status, prefix in (
        (ReservationStatus.RELEASED, "released"),
        (ReservationStatus.COMMITTED, "committed"),
        (ReservationStatus.RESTOCKED, "restocked"),
    )
}


@functools.lru_cache(maxsize=16)
def _prices_sql(slots: int) -> str:
    return (
        f"SELECT {_columns(_P, 'sku', 'name', 'price', 'currency')} FROM {_table(_P)} "  # noqa: S608
        f"WHERE {_column(_P, 'sku')} IN ({', '.join(['%s'] * slots)})"
    )


def _slots(count: int) -> int:
    """Round ``count`` up to a power of two: few statement texts, each run often."""
    return 1 << (count - 1).bit_length()


def catalogue_prices(skus: Iterable[str]) -> dict[str, ProductInfo]:
    """Return the catalogue entries for these skus, keyed by sku (unknown skus are absent).

    Every order is priced here, inside its POST: one text per power of two of skus, the last
    sku repeated to fill it, so PostgreSQL settles on a generic plan after a few runs and
    stops planning; with one array parameter it planned every run afresh.
    """
    wanted = sorted(set(skus))
    if not wanted:
        return {}
    slots = _slots(len(wanted))
    with server_binding_cursor() as cursor:
        cursor.execute(_prices_sql(slots), [*wanted, *[wanted[-1]] * (slots - len(wanted))])
        rows = cursor.fetchall()
    return {
        sku: ProductInfo(sku=sku, name=name, price=price, currency=currency)
        for sku, name, price, currency in rows
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
    reservation = insert_values(
        _RESERVATION_FIELDS,
        {
            "order_id": order_id,
            "status": ReservationStatus.RESERVED.value,
            "reserved_key": key,
            "reserved_at": at,
            "updated_at": at,
        },
    )
    shared = insert_values([f for f in _LINE_FIELDS if f.name not in _LINE_FROM_ARRAYS], {})
    with server_binding_cursor() as cursor:
        cursor.execute(
            _INSERT_RESERVATION_SQL,
            {
                **{f"r_{column}": value for column, value in reservation.items()},
                **{f"l_{column}": value for column, value in shared.items()},
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
