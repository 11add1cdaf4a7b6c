"""Write services for the catalogue and for the stock orders reserve (a saga participant).

The reservation services are each one durable transaction, and idempotent: a saga step may
be delivered twice, retried, or run again after a worker crash, so each takes the step's
idempotency key, records it on the transition it made, and answers a repeat with the first
result instead of moving stock again. The catalogue services are each one transaction too,
but join the caller's when there is one: the admin runs its saves inside its own.

Lock order, to stay free of deadlocks: the reservation row first (when there is one), then the
product rows in sku order, always in one ``SELECT … ORDER BY sku FOR UPDATE``. PostgreSQL locks
the rows in the order it returns them, so two transactions wanting the same products queue
for the first of them instead of each holding what the other waits for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from config.db import server_binding_cursor
from inventory.errors import (
    InvalidReservationLines,
    OutOfStock,
    ReservationNotActive,
    StockBelowReserved,
    StockChanged,
    UnknownProduct,
)
from inventory.models import Product, Reservation, ReservationLine, ReservationStatus
from inventory.results import (
    ReleaseOutcome,
    ReleaseResult,
    ReservationResult,
    ReservedLine,
)

__all__ = [
    "NewProduct",
    "ReleaseOutcome",
    "ReleaseResult",
    "ReservationResult",
    "ReservedLine",
    "product_adjust_stock",
    "product_create",
    "product_create_missing",
    "product_update",
    "reservation_commit",
    "reservation_release",
    "reservation_reserve",
    "reservation_restock",
]

_PRODUCT_STOCK_FIELDS = ["stock_on_hand", "stock_reserved", "updated_at"]


# --- reservations ----------------------------------------------------------------------------


def reservation_reserve(
    *,
    order_id: UUID,
    lines: Sequence[tuple[str, int]],
    idempotency_key: str,
    now: datetime | None = None,
) -> ReservationResult:
    """Reserve every line for the order, or nothing.

    Lines naming the same sku are added up. Raises ``UnknownProduct`` for skus missing from the
    catalogue and ``OutOfStock`` (with the skus short) when any line cannot be met; in both
    cases no stock moves. An order that already has a reservation gets it back unchanged,
    whatever its status: a late repeat must never reserve a second time.
    """
    wanted = _merge_lines(lines)
    at = now or timezone.now()
    try:
        with transaction.atomic(durable=True):
            products = _lock_products(wanted)
            # A repeat, or a concurrent call for the same order that committed while we
            # waited for the locks (this statement's snapshot sees it). Checked under the
            # locks only: a repeat is rare, and a check before them would cost every
            # reservation a query.
            existing = _reservation_result(order_id)
            if existing is not None:
                return existing
            unknown = set(wanted) - set(products)
            if unknown:
                raise UnknownProduct(unknown)
            shortages = {
                sku: (quantity, products[sku].stock_available)
                for sku, quantity in wanted.items()
                if products[sku].stock_available < quantity
            }
            if shortages:
                raise OutOfStock(shortages)
            reservation = Reservation.objects.create(
                order_id=order_id,
                status=ReservationStatus.RESERVED,
                reserved_key=idempotency_key,
                reserved_at=at,
                updated_at=at,
            )
            ReservationLine.objects.bulk_create(
                ReservationLine(reservation=reservation, product=products[sku], quantity=quantity)
                for sku, quantity in wanted.items()
            )
            _save_stock(
                [
                    _Stock.of(products[sku], reserved=products[sku].stock_reserved + quantity)
                    for sku, quantity in wanted.items()
                ],
                at=at,
            )
    except IntegrityError:
        # Only the unique order_id can collide here: a concurrent call for this order (with
        # other lines, so it held other locks) committed first. Its reservation is the answer.
        raced = _reservation_result(order_id)
        if raced is None:
            raise
        return raced
    return ReservationResult(
        reservation_id=reservation.pk,
        order_id=order_id,
        status=ReservationStatus.RESERVED,
        lines=tuple(ReservedLine(sku=sku, quantity=q) for sku, q in wanted.items()),
    )


def reservation_release(
    *, order_id: UUID, idempotency_key: str, now: datetime | None = None
) -> ReleaseResult:
    """Undo the order's reservation, whatever became of it (the compensation of reserving).

    A reserved order's units go back to available (RESERVED → RELEASED); a committed order's
    units had left stock and go back on hand (COMMITTED → RESTOCKED). An order without a
    reservation, or one already released or restocked, is left alone and the result says so;
    a repeat with the key that made the change reports that change again.
    """
    at = now or timezone.now()
    with transaction.atomic(durable=True):
        reservation = _lock_reservation(order_id)
        if reservation is None:
            return ReleaseResult(
                order_id=order_id, outcome=ReleaseOutcome.NOTHING_RESERVED, status=None
            )
        status = ReservationStatus(reservation.status)
        if status is ReservationStatus.RELEASED:
            outcome = (
                ReleaseOutcome.RELEASED
                if reservation.released_key == idempotency_key
                else ReleaseOutcome.ALREADY_RELEASED
            )
            return ReleaseResult(order_id=order_id, outcome=outcome, status=status)
        if status is ReservationStatus.RESTOCKED:
            outcome = (
                ReleaseOutcome.RESTOCKED
                if reservation.restocked_key == idempotency_key
                else ReleaseOutcome.ALREADY_RESTOCKED
            )
            return ReleaseResult(order_id=order_id, outcome=outcome, status=status)
        if status is ReservationStatus.RESERVED:
            _save_stock(
                [
                    replace(stock, reserved=stock.reserved - quantity)
                    for stock, quantity in _lock_reserved_stock(reservation)
                ],
                at=at,
            )
            reservation.status = ReservationStatus.RELEASED
            reservation.released_key = idempotency_key
            reservation.released_at = at
            reservation.updated_at = at
            reservation.save(update_fields=["status", "released_key", "released_at", "updated_at"])
            return ReleaseResult(
                order_id=order_id,
                outcome=ReleaseOutcome.RELEASED,
                status=ReservationStatus.RELEASED,
            )
        _restock(reservation, idempotency_key=idempotency_key, at=at)
        return ReleaseResult(
            order_id=order_id, outcome=ReleaseOutcome.RESTOCKED, status=ReservationStatus.RESTOCKED
        )


def reservation_commit(
    *, order_id: UUID, idempotency_key: str, now: datetime | None = None
) -> None:
    """Move the reserved units out of stock as the order is confirmed (RESERVED → COMMITTED).

    Both ``stock_on_hand`` and ``stock_reserved`` drop by the reserved quantities. A committed
    reservation is left alone (a repeat). Raises ``ReservationNotActive`` when the order has
    no reservation, or it was released or restocked.
    """
    at = now or timezone.now()
    with transaction.atomic(durable=True):
        reservation = _lock_reservation(order_id)
        status = ReservationStatus(reservation.status) if reservation else None
        if status is ReservationStatus.COMMITTED:
            return
        if reservation is None or status is not ReservationStatus.RESERVED:
            raise ReservationNotActive(order_id=order_id, status=status, action="commit")
        _save_stock(
            [
                replace(stock, on_hand=stock.on_hand - quantity, reserved=stock.reserved - quantity)
                for stock, quantity in _lock_reserved_stock(reservation)
            ],
            at=at,
        )
        reservation.status = ReservationStatus.COMMITTED
        reservation.committed_key = idempotency_key
        reservation.committed_at = at
        reservation.updated_at = at
        reservation.save(update_fields=["status", "committed_key", "committed_at", "updated_at"])


def reservation_restock(
    *, order_id: UUID, idempotency_key: str, now: datetime | None = None
) -> None:
    """Put a cancelled confirmed order's units back on hand (COMMITTED → RESTOCKED).

    A restocked reservation is left alone (a repeat). Raises ``ReservationNotActive`` when the
    order has no reservation or it was never committed (reserved or released).
    """
    at = now or timezone.now()
    with transaction.atomic(durable=True):
        reservation = _lock_reservation(order_id)
        status = ReservationStatus(reservation.status) if reservation else None
        if status is ReservationStatus.RESTOCKED:
            return
        if reservation is None or status is not ReservationStatus.COMMITTED:
            raise ReservationNotActive(order_id=order_id, status=status, action="restock")
        _restock(reservation, idempotency_key=idempotency_key, at=at)


def _restock(reservation: Reservation, *, idempotency_key: str, at: datetime) -> None:
    _save_stock(
        [
            replace(stock, on_hand=stock.on_hand + quantity)
            for stock, quantity in _lock_reserved_stock(reservation)
        ],
        at=at,
    )
    reservation.status = ReservationStatus.RESTOCKED
    reservation.restocked_key = idempotency_key
    reservation.restocked_at = at
    reservation.updated_at = at
    reservation.save(update_fields=["status", "restocked_key", "restocked_at", "updated_at"])


def _merge_lines(lines: Sequence[tuple[str, int]]) -> dict[str, int]:
    if not lines:
        raise InvalidReservationLines("a reservation needs at least one line")
    merged: dict[str, int] = {}
    for sku, quantity in lines:
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise InvalidReservationLines(f"{sku}: quantity must be a positive integer")
        merged[sku] = merged.get(sku, 0) + quantity
    return dict(sorted(merged.items()))


def _lock_products(skus: Iterable[str]) -> dict[str, Product]:
    """Lock the products with these skus, in sku order, and return them by sku."""
    locked = Product.objects.select_for_update().filter(sku__in=list(skus)).order_by("sku")
    return {product.sku: product for product in locked}


def _lock_reservation(order_id: UUID) -> Reservation | None:
    return Reservation.objects.select_for_update().filter(order_id=order_id).first()


@dataclass(frozen=True)
class _Stock:
    """One product's stock counters, as locked, or as they are to be written."""

    product_id: int
    on_hand: int
    reserved: int

    @classmethod
    def of(cls, product: Product, *, reserved: int) -> _Stock:
        return cls(product_id=product.pk, on_hand=product.stock_on_hand, reserved=reserved)


def _table(model: type[Product | ReservationLine]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


# Table names come from the models; values are bound. Both run on every order's steps, so
# they are prepared (config.db), and their texts do not depend on the number of lines.
_LOCK_RESERVED_SQL = f"""
SELECT p.id, p.stock_on_hand, p.stock_reserved, l.quantity
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


def _lock_reserved_stock(reservation: Reservation) -> list[tuple[_Stock, int]]:
    """Lock the reservation's products in sku order; pair each with its reserved quantity.

    One statement: the lines joined to their products, locking only the products (in sku
    order, as every caller locks them, so two never wait for each other in a cycle).
    """
    with server_binding_cursor() as cursor:
        cursor.execute(_LOCK_RESERVED_SQL, [reservation.pk])
        rows = cursor.fetchall()
    return [(_Stock(pid, on_hand, reserved), quantity) for pid, on_hand, reserved, quantity in rows]


def _save_stock(stocks: Sequence[_Stock], *, at: datetime) -> None:
    """Write these products' counters in one statement (the checks keep them sane)."""
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


def _reservation_result(order_id: UUID) -> ReservationResult | None:
    reservation = Reservation.objects.filter(order_id=order_id).first()
    if reservation is None:
        return None
    # Sorted here, not by the database's collation: the same order as a fresh result's lines.
    lines = sorted(reservation.lines.values_list("product__sku", "quantity"))
    return ReservationResult(
        reservation_id=reservation.pk,
        order_id=reservation.order_id,
        status=ReservationStatus(reservation.status),
        lines=tuple(ReservedLine(sku=sku, quantity=quantity) for sku, quantity in lines),
    )


# --- the catalogue -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NewProduct:
    """Describe a product to add to the catalogue."""

    sku: str
    name: str
    price: Decimal
    stock_on_hand: int = 0
    currency: str | None = None


def _new_product_row(spec: NewProduct) -> Product:
    product = Product(
        sku=spec.sku, name=spec.name, price=spec.price, stock_on_hand=spec.stock_on_hand
    )
    if spec.currency:
        product.currency = spec.currency
    return product


def product_create(
    *,
    sku: str,
    name: str,
    price: Decimal,
    stock_on_hand: int = 0,
    currency: str | None = None,
) -> int:
    """Add a product to the catalogue and return its id.

    Raises ``django.core.exceptions.ValidationError`` for a taken sku, a price not above
    zero or a negative stock.
    """
    product = _new_product_row(
        NewProduct(sku=sku, name=name, price=price, stock_on_hand=stock_on_hand, currency=currency)
    )
    with transaction.atomic():
        product.full_clean()
        product.save()
    return product.pk


def product_create_missing(*, products: Sequence[NewProduct]) -> tuple[str, ...]:
    """Add the products whose skus are not in the catalogue yet; return the skus added.

    Products already present are left exactly as they are (their stock may have moved).
    """
    rows = [_new_product_row(spec) for spec in products]
    for row in rows:
        row.full_clean(validate_unique=False)
    with transaction.atomic():
        present = set(
            Product.objects.filter(sku__in=[row.sku for row in rows]).values_list("sku", flat=True)
        )
        missing = [row for row in rows if row.sku not in present]
        # A concurrent run may add the same skus: theirs stand, ours are skipped.
        Product.objects.bulk_create(missing, ignore_conflicts=True)
    return tuple(row.sku for row in missing)


def product_adjust_stock(*, sku: str, delta: int) -> int:
    """Add ``delta`` units (negative: remove) to a product's stock on hand; return the new figure.

    Raises ``UnknownProduct``, or ``StockBelowReserved`` when fewer units than are reserved
    would remain.
    """
    with transaction.atomic():
        product = _lock_products([sku]).get(sku)
        if product is None:
            raise UnknownProduct([sku])
        new_on_hand = product.stock_on_hand + delta
        if new_on_hand < product.stock_reserved:
            raise StockBelowReserved(
                sku=sku, stock_on_hand=new_on_hand, stock_reserved=product.stock_reserved
            )
        product.stock_on_hand = new_on_hand
        product.save(update_fields=_PRODUCT_STOCK_FIELDS)
        return new_on_hand


def product_update(
    *,
    sku: str,
    name: str,
    price: Decimal,
    stock_on_hand: int,
    expected_stock_on_hand: int | None = None,
) -> None:
    """Change a product's name, price and stock on hand (what staff edit in the admin).

    ``expected_stock_on_hand`` is the figure the editor saw: when stock moved since (an order
    was confirmed or restocked), ``StockChanged`` refuses to overwrite it. Raises
    ``StockBelowReserved`` when the new figure is below the units reserved, and
    ``ValidationError`` for a price not above zero.
    """
    with transaction.atomic():
        product = _lock_products([sku]).get(sku)
        if product is None:
            raise UnknownProduct([sku])
        if expected_stock_on_hand is not None and product.stock_on_hand != expected_stock_on_hand:
            raise StockChanged(
                sku=sku, expected=expected_stock_on_hand, actual=product.stock_on_hand
            )
        if stock_on_hand < product.stock_reserved:
            raise StockBelowReserved(
                sku=sku, stock_on_hand=stock_on_hand, stock_reserved=product.stock_reserved
            )
        product.name = name
        product.price = price
        product.stock_on_hand = stock_on_hand
        product.clean()
        product.save(update_fields=["name", "price", *_PRODUCT_STOCK_FIELDS])
