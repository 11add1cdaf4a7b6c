"""Store the catalogue, its stock, and the stock each order holds.

A product's stock is two counters: ``stock_on_hand`` (units in the warehouse) and
``stock_reserved`` (units promised to orders not yet confirmed, part of those on hand). A
reservation moves through::

    RESERVED ──commit──▶ COMMITTED ──restock──▶ RESTOCKED
        └──────release──▶ RELEASED

Reserving raises ``stock_reserved``; committing moves the units out (both counters drop);
releasing lowers ``stock_reserved``; restocking puts committed units back on hand. CHECK
constraints keep the counters sane whatever code writes them.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q


def default_currency() -> str:
    """Return the catalogue's currency (``settings.BACKOFFICE_CURRENCY``, EUR by default)."""
    return str(getattr(settings, "BACKOFFICE_CURRENCY", "EUR"))


class Product(models.Model):
    """Sell one article: its price and the two counters of its stock."""

    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default=default_currency)
    stock_on_hand = models.IntegerField(default=0)
    stock_reserved = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.CheckConstraint(
                condition=Q(price__gt=0), name="inventory_product_price_positive"
            ),
            models.CheckConstraint(
                condition=Q(stock_on_hand__gte=0), name="inventory_product_on_hand_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(stock_reserved__gte=0), name="inventory_product_reserved_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(stock_reserved__lte=F("stock_on_hand")),
                name="inventory_product_reserved_within_on_hand",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"

    @property
    def stock_available(self) -> int:
        """Return the units that can still be reserved."""
        return self.stock_on_hand - self.stock_reserved

    def clean(self) -> None:
        """Refuse a price or stock the database constraints would refuse, as form errors."""
        errors: dict[str, str] = {}
        if self.price is not None and self.price <= 0:
            errors["price"] = "The price must be greater than zero."
        if self.stock_on_hand is not None and self.stock_on_hand < 0:
            errors["stock_on_hand"] = "Stock on hand cannot be negative."
        elif (
            self.stock_on_hand is not None
            and self.stock_reserved is not None
            and self.stock_on_hand < self.stock_reserved
        ):
            errors["stock_on_hand"] = (
                f"Stock on hand cannot go below the {self.stock_reserved} units reserved."
            )
        if errors:
            raise ValidationError(errors)


class ReservationStatus(models.TextChoices):
    RESERVED = "RESERVED"
    RELEASED = "RELEASED"
    COMMITTED = "COMMITTED"
    RESTOCKED = "RESTOCKED"


class Reservation(models.Model):
    """Hold stock for one order, and remember which idempotency key made each transition."""

    order_id = models.UUIDField(unique=True)
    status = models.CharField(max_length=16, choices=ReservationStatus.choices)
    reserved_key = models.CharField(max_length=200)
    released_key = models.CharField(max_length=200, blank=True, default="")
    committed_key = models.CharField(max_length=200, blank=True, default="")
    restocked_key = models.CharField(max_length=200, blank=True, default="")
    reserved_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)
    committed_at = models.DateTimeField(null=True, blank=True)
    restocked_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-reserved_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=sorted(ReservationStatus.values)),
                name="inventory_reservation_status_valid",
            ),
            # Each status carries the key and the time of the transition that led to it.
            models.CheckConstraint(
                condition=~Q(status=ReservationStatus.RELEASED)
                | (~Q(released_key="") & Q(released_at__isnull=False)),
                name="inventory_reservation_released_recorded",
            ),
            models.CheckConstraint(
                condition=~Q(status=ReservationStatus.COMMITTED)
                | (~Q(committed_key="") & Q(committed_at__isnull=False)),
                name="inventory_reservation_committed_recorded",
            ),
            models.CheckConstraint(
                condition=~Q(status=ReservationStatus.RESTOCKED)
                | (~Q(restocked_key="") & Q(restocked_at__isnull=False)),
                name="inventory_reservation_restocked_recorded",
            ),
        ]

    def __str__(self) -> str:
        return f"reservation for order {self.order_id} ({self.status})"


class ReservationLine(models.Model):
    """Hold ``quantity`` units of one product for a reservation."""

    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="lines")
    # PROTECT: a product that stock was held for cannot vanish from under the reservation.
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    quantity = models.IntegerField()

    class Meta:
        ordering = ["reservation", "product__sku"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="inventory_reservationline_quantity_positive"
            ),
            models.UniqueConstraint(
                fields=["reservation", "product"], name="inventory_reservationline_one_per_product"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x product {self.product_id}"
