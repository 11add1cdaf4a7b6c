"""Read the catalogue and the reservations."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from uuid import UUID

from django.db import connection
from django.db.models import QuerySet

from infrastructure.db import server_binding_cursor
from inventory.models import Product, Reservation
from inventory.results import ProductInfo

__all__ = ["ProductInfo", "product_list", "products_by_sku", "reservation_for_order"]


@functools.lru_cache(maxsize=16)
def _products_by_sku_sql(slots: int) -> str:
    # The table name comes from the model; the skus are bound.
    return (
        "SELECT sku, name, price, currency "  # noqa: S608
        f"FROM {connection.ops.quote_name(Product._meta.db_table)} "
        f"WHERE sku IN ({', '.join(['%s'] * slots)})"
    )


def _slots(count: int) -> int:
    """Round ``count`` up to a power of two: few statement texts, each run often."""
    return 1 << (count - 1).bit_length()


def products_by_sku(*, skus: Iterable[str]) -> dict[str, ProductInfo]:
    """Return the catalogue entries for these skus, keyed by sku (unknown skus are absent)."""
    wanted = sorted(set(skus))
    if not wanted:
        return {}
    # Every order is priced here, inside its POST: a prepared statement (infrastructure.db) with one
    # text per power of two of skus, the last sku repeated to fill it. PostgreSQL then settles
    # on a generic plan after a few runs and stops planning; with one array parameter it
    # planned every run afresh, and psycopg's array dumping cost more than the query's other
    # Python work.
    slots = _slots(len(wanted))
    with server_binding_cursor() as cursor:
        cursor.execute(
            _products_by_sku_sql(slots), [*wanted, *[wanted[-1]] * (slots - len(wanted))]
        )
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
