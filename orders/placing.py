"""Adapt today's ``order_place`` to the shape the API is written against.

Delete this module when ``orders.services.order_place`` takes ``order_id`` (raising
``OrderAlreadyPlaced`` when that id is placed already) and returns a ``PlacedOrder`` carrying
the read-model values it wrote; ``orders.api`` then imports both from ``orders.services``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from orders import services
from orders.selectors import order_just_placed
from orders.services import OrderLineRequest


class OrderAlreadyPlaced(Exception):
    """Say that an order with the requested id was placed before."""


@dataclass(frozen=True)
class PlacedOrder(services.PlacedOrder):
    """Describe an order just placed: its id, its saga's, and its read-model values."""

    order: Any


def order_place(
    *,
    customer_id: str,
    lines: Sequence[OrderLineRequest],
    payment_token: str,
    actor: str,
    correlation_id: str | None = None,
    order_id: UUID | None = None,
) -> PlacedOrder:
    """Place the order as ``orders.services.order_place`` does, which picks its own id today."""
    placed = services.order_place(
        customer_id=customer_id,
        lines=lines,
        payment_token=payment_token,
        actor=actor,
        correlation_id=correlation_id,
    )
    return PlacedOrder(
        order_id=placed.order_id,
        saga_id=placed.saga_id,
        order=order_just_placed(order_id=placed.order_id),
    )
