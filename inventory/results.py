"""Describe what the inventory's services and selectors hand back: small frozen values."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from inventory.models import ReservationStatus


@dataclass(frozen=True)
class ProductInfo:
    """Price one product from the catalogue."""

    sku: str
    name: str
    price: Decimal
    currency: str


@dataclass(frozen=True)
class ReservedLine:
    sku: str
    quantity: int


@dataclass(frozen=True)
class ReservationResult:
    """Describe an order's reservation (the same on every repeat of the reserving call)."""

    reservation_id: int
    order_id: UUID
    status: ReservationStatus
    lines: tuple[ReservedLine, ...]


class ReleaseOutcome(StrEnum):
    """Say what releasing an order's stock did."""

    #: Reserved units went back to available (RESERVED → RELEASED).
    RELEASED = "released"
    #: The units had already left stock (confirmed); they went back on hand (→ RESTOCKED).
    RESTOCKED = "restocked"
    #: Another call (another key) released it before: nothing changed.
    ALREADY_RELEASED = "already_released"
    #: Another call (another key) restocked it before: nothing changed.
    ALREADY_RESTOCKED = "already_restocked"
    #: The order holds no reservation (its reserve step never took effect): nothing changed.
    NOTHING_RESERVED = "nothing_reserved"


@dataclass(frozen=True)
class ReleaseResult:
    """Report a release; a repeat with the same key reports what the first call did."""

    order_id: UUID
    outcome: ReleaseOutcome
    #: The reservation's status afterwards (None: the order has no reservation).
    status: ReservationStatus | None

    @property
    def changed_stock(self) -> bool:
        """Tell whether this outcome is one that moved stock (true on a same-key repeat too)."""
        return self.outcome in {ReleaseOutcome.RELEASED, ReleaseOutcome.RESTOCKED}
