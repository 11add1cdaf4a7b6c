"""Read the catalogue and the reservations."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from django.db.models import QuerySet

from inventory.models import Product, Reservation
from inventory.results import ProductInfo
from inventory.statements import catalogue_prices

__all__ = ["ProductInfo", "product_list", "products_by_sku", "reservation_for_order"]


def products_by_sku(*, skus: Iterable[str]) -> dict[str, ProductInfo]:
    """Return the catalogue entries for these skus, keyed by sku (unknown skus are absent)."""
    return catalogue_prices(skus)


def product_list() -> QuerySet[Product]:
    """Return the catalogue with its stock, in sku order."""
    return Product.objects.order_by("sku")


def reservation_for_order(*, order_id: UUID) -> Reservation | None:
    """Return the order's reservation with its lines and their products, or None."""
    return Reservation.objects.filter(order_id=order_id).prefetch_related("lines__product").first()
