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

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from django.db import IntegrityError, transaction
from django.utils import timezone

from inventory.errors import (
    InvalidReservationLines,
    OutOfStock,
    ReservationNotActive,
    StockBelowReserved,
    StockChanged,
    UnknownProduct,
)
from inventory.models import Product, ReservationStatus
from inventory.results import (
    ReleaseOutcome,
    ReleaseResult,
    ReservationResult,
    ReservedLine,
)
from inventory.statements import (
    lock_reservation,
    lock_reserved_stock,
    lock_stock,
    reservation_find,
    reservation_insert,
    reservation_mark,
    save_stock,
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
            stock = lock_stock(wanted)
            # A repeat, or a concurrent call for the same order that committed while we
            # waited for the locks (this statement's snapshot sees it). Checked under the
            # locks only: a repeat is rare, and a check before them would cost every
            # reservation a query.
            existing = reservation_find(order_id)
            if existing is not None:
                return existing
            unknown = set(wanted) - set(stock)
            if unknown:
                raise UnknownProduct(unknown)
            shortages = {
                sku: (quantity, stock[sku].available)
                for sku, quantity in wanted.items()
                if stock[sku].available < quantity
            }
            if shortages:
                raise OutOfStock(shortages)
            reservation_id = reservation_insert(
                order_id=order_id,
                key=idempotency_key,
                at=at,
                lines=[(stock[sku].product_id, quantity) for sku, quantity in wanted.items()],
            )
            save_stock(
                [
                    replace(stock[sku], reserved=stock[sku].reserved + quantity)
                    for sku, quantity in wanted.items()
                ],
                at=at,
            )
    except IntegrityError:
        # Only the unique order_id can collide here: a concurrent call for this order (with
        # other lines, so it held other locks) committed first. Its reservation is the answer.
        raced = reservation_find(order_id)
        if raced is None:
            raise
        return raced
    return ReservationResult(
        reservation_id=reservation_id,
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
        reservation = lock_reservation(order_id)
        if reservation is None:
            return ReleaseResult(
                order_id=order_id, outcome=ReleaseOutcome.NOTHING_RESERVED, status=None
            )
        status = reservation.status
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
            save_stock(
                [
                    replace(stock, reserved=stock.reserved - quantity)
                    for stock, quantity in lock_reserved_stock(reservation.id)
                ],
                at=at,
            )
            reservation_mark(
                reservation.id, status=ReservationStatus.RELEASED, key=idempotency_key, at=at
            )
            return ReleaseResult(
                order_id=order_id,
                outcome=ReleaseOutcome.RELEASED,
                status=ReservationStatus.RELEASED,
            )
        _restock(reservation.id, idempotency_key=idempotency_key, at=at)
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
        reservation = lock_reservation(order_id)
        status = reservation.status if reservation else None
        if status is ReservationStatus.COMMITTED:
            return
        if reservation is None or status is not ReservationStatus.RESERVED:
            raise ReservationNotActive(order_id=order_id, status=status, action="commit")
        save_stock(
            [
                replace(stock, on_hand=stock.on_hand - quantity, reserved=stock.reserved - quantity)
                for stock, quantity in lock_reserved_stock(reservation.id)
            ],
            at=at,
        )
        reservation_mark(
            reservation.id, status=ReservationStatus.COMMITTED, key=idempotency_key, at=at
        )


def reservation_restock(
    *, order_id: UUID, idempotency_key: str, now: datetime | None = None
) -> None:
    """Put a cancelled confirmed order's units back on hand (COMMITTED → RESTOCKED).

    A restocked reservation is left alone (a repeat). Raises ``ReservationNotActive`` when the
    order has no reservation or it was never committed (reserved or released).
    """
    at = now or timezone.now()
    with transaction.atomic(durable=True):
        reservation = lock_reservation(order_id)
        status = reservation.status if reservation else None
        if status is ReservationStatus.RESTOCKED:
            return
        if reservation is None or status is not ReservationStatus.COMMITTED:
            raise ReservationNotActive(order_id=order_id, status=status, action="restock")
        _restock(reservation.id, idempotency_key=idempotency_key, at=at)


def _restock(reservation_id: int, *, idempotency_key: str, at: datetime) -> None:
    save_stock(
        [
            replace(stock, on_hand=stock.on_hand + quantity)
            for stock, quantity in lock_reserved_stock(reservation_id)
        ],
        at=at,
    )
    reservation_mark(reservation_id, status=ReservationStatus.RESTOCKED, key=idempotency_key, at=at)


def _merge_lines(lines: Sequence[tuple[str, int]]) -> dict[str, int]:
    if not lines:
        raise InvalidReservationLines("a reservation needs at least one line")
    merged: dict[str, int] = {}
    for sku, quantity in lines:
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise InvalidReservationLines(f"{sku}: quantity must be a positive integer")
        merged[sku] = merged.get(sku, 0) + quantity
    return dict(sorted(merged.items()))


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
        stock = lock_stock([sku]).get(sku)
        if stock is None:
            raise UnknownProduct([sku])
        new_on_hand = stock.on_hand + delta
        if new_on_hand < stock.reserved:
            raise StockBelowReserved(
                sku=sku, stock_on_hand=new_on_hand, stock_reserved=stock.reserved
            )
        save_stock([replace(stock, on_hand=new_on_hand)], at=timezone.now())
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
        stock = lock_stock([sku]).get(sku)
        if stock is None:
            raise UnknownProduct([sku])
        if expected_stock_on_hand is not None and stock.on_hand != expected_stock_on_hand:
            raise StockChanged(sku=sku, expected=expected_stock_on_hand, actual=stock.on_hand)
        if stock_on_hand < stock.reserved:
            raise StockBelowReserved(
                sku=sku, stock_on_hand=stock_on_hand, stock_reserved=stock.reserved
            )
        product = Product(
            pk=stock.product_id,
            sku=sku,
            name=name,
            price=price,
            stock_on_hand=stock_on_hand,
            stock_reserved=stock.reserved,
        )
        product.clean()
        product.save(update_fields=["name", "price", "stock_on_hand", "updated_at"])
