"""The catalogue's invariants (``check_invariants``): reserved and on-hand stock add up.

- **stock**: per product ``stock_reserved`` is the sum of the RESERVED reservations' lines;
  given the on-hand stock at the start (``stock_baseline``), ``stock_on_hand`` is it minus the
  COMMITTED lines (released reservations never left, restocked ones came back).

That each order's reservation matches the order is the orders app's check.
"""

from __future__ import annotations

from collections import Counter

from backoffice.invariants import InvariantOptions, InvariantReport, invariant
from inventory.models import Product, ReservationLine, ReservationStatus


@invariant("inventory")
def check_stock(report: InvariantReport, options: InvariantOptions) -> None:
    """Check every product's reserved and on-hand stock against the reservations' lines."""
    reserved: Counter[int] = Counter()
    committed: Counter[int] = Counter()
    for line in ReservationLine.objects.select_related("reservation"):
        status = line.reservation.status
        if status == ReservationStatus.RESERVED:
            reserved[line.product_id] += line.quantity
        elif status == ReservationStatus.COMMITTED:
            committed[line.product_id] += line.quantity
    products = list(Product.objects.all())
    report.count("products", len(products))
    baseline = options.stock_baseline
    for product in products:
        subject = f"product {product.sku}"
        if product.stock_reserved != reserved[product.pk]:
            report.violation(
                "stock",
                subject,
                f"stock_reserved is {product.stock_reserved} but active reservations "
                f"hold {reserved[product.pk]}",
            )
        if baseline is not None and product.sku in baseline:
            expected = baseline[product.sku] - committed[product.pk]
            if product.stock_on_hand != expected:
                report.violation(
                    "stock",
                    subject,
                    f"stock_on_hand is {product.stock_on_hand}, expected {expected} "
                    f"({baseline[product.sku]} at the start minus "
                    f"{committed[product.pk]} confirmed and not restocked)",
                )
