"""Name what can go wrong with stock: business failures the saga compensates for."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from uuid import UUID


class InventoryError(Exception):
    """Base of the inventory's errors."""


class UnknownProduct(InventoryError):
    """Say that no product has these skus."""

    def __init__(self, skus: Iterable[str]) -> None:
        self.skus: tuple[str, ...] = tuple(sorted(set(skus)))
        super().__init__(f"unknown product(s): {', '.join(self.skus)}")


class OutOfStock(InventoryError):
    """Say which skus cannot cover the quantities asked for (nothing was reserved).

    ``shortages`` maps each such sku to ``(requested, available)``.
    """

    def __init__(self, shortages: Mapping[str, tuple[int, int]]) -> None:
        self.shortages: dict[str, tuple[int, int]] = dict(sorted(shortages.items()))
        self.skus: tuple[str, ...] = tuple(self.shortages)
        details = ", ".join(
            f"{sku} (requested {requested}, available {available})"
            for sku, (requested, available) in self.shortages.items()
        )
        super().__init__(f"out of stock: {details}")


class InvalidReservationLines(InventoryError, ValueError):
    """Refuse lines that ask for nothing: no lines, or a quantity below one."""


class ReservationNotActive(InventoryError):
    """Refuse to move a reservation that is not in the status the move starts from.

    ``status`` is the reservation's status, or None when the order has no reservation.
    """

    def __init__(self, *, order_id: UUID, status: str | None, action: str) -> None:
        self.order_id = order_id
        self.status = status
        self.action = action
        where = f"is {status}" if status else "does not exist"
        super().__init__(f"cannot {action} the reservation for order {order_id}: it {where}")


class StockBelowReserved(InventoryError):
    """Refuse to bring a product's stock on hand below the units reserved from it."""

    def __init__(self, *, sku: str, stock_on_hand: int, stock_reserved: int) -> None:
        self.sku = sku
        self.stock_on_hand = stock_on_hand
        self.stock_reserved = stock_reserved
        super().__init__(
            f"{sku}: stock on hand cannot be {stock_on_hand}, {stock_reserved} units are reserved"
        )


class StockChanged(InventoryError):
    """Refuse an edit made against a stock figure that has moved since it was read."""

    def __init__(self, *, sku: str, expected: int, actual: int) -> None:
        self.sku = sku
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{sku}: stock on hand changed from {expected} to {actual} while it was edited"
        )
