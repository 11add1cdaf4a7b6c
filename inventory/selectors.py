"""Read the catalogue and the reservations."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from django.db import connection
from django.db.models import QuerySet

from config.db import server_binding_cursor
from inventory.models import Product, Reservation
from inventory.results import ProductInfo

__all__ = ["ProductInfo", "product_list", "products_by_sku", "reservation_for_order"]


# The table name comes from the model; the skus are bound.
_PRODUCTS_BY_SKU_SQL = (
    "SELECT sku, name, price, currency "  # noqa: S608
    f"FROM {connection.ops.quote_name(Product._meta.db_table)} WHERE sku = ANY(%s::text[])"
)


def products_by_sku(*, skus: Iterable[str]) -> dict[str, ProductInfo]:
    """Return the catalogue entries for these skus, keyed by sku (unknown skus are absent)."""
    wanted = set(skus)
    if not wanted:
        return {}
    # Every order is priced here, inside its POST: one prepared statement (config.db) with
    # an array parameter, so its text does not change with the number of lines.
    with server_binding_cursor() as cursor:
        cursor.execute(_PRODUCTS_BY_SKU_SQL, [sorted(wanted)])
        rows = cursor.fetchall()
    return {
        sku: ProductInfo(sku=sku, name=name, price=price, currency=currency)
        for sku, name, price, currency in rows
    }


def product_list() -> QuerySet[Product]:
    """Return the catalogue with its stock, in sku order."""
    return Product.objects.order_by("sku")


def reservation_for_order(*, order_id: UUID) -> Reservation | None:
    """Return the order's reservation with its lines and their products, or None."""
    return Reservation.objects.filter(order_id=order_id).prefetch_related("lines__product").first()
