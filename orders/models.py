"""The order read model (a projection of the order streams) and API idempotency records.

Nothing here is the truth about an order: the event stream is. ``Order`` rows are written
only by ``orders.projections.OrderProjector`` and can be rebuilt from the events at any time.
"""

from __future__ import annotations

from django.db import models

from orders.domain import CancellationReason, OrderStatus


class OrderSummary(models.Model):
    """One row per order, as its events say it is now: what lists and filters read."""

    id = models.UUIDField(primary_key=True)
    customer_id = models.CharField(max_length=64)
    # No index of its own: orders_status_newest leads with it (one index fewer to write on
    # every order placed, confirmed or cancelled).
    status = models.CharField(max_length=16, choices=[(s.value, s.value) for s in OrderStatus])
    cancellation_reason = models.CharField(
        max_length=32, choices=[(r.value, r.value) for r in CancellationReason], blank=True
    )
    items = models.JSONField(default=list)
    total = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    # The user who placed it ("user:<id>" in the event), for "clients see their own orders".
    # Indexed by orders_owner_newest, which leads with it.
    placed_by_user_id = models.BigIntegerField(null=True)
    placed_by = models.CharField(max_length=100, blank=True)
    correlation_id = models.CharField(max_length=100, blank=True)
    # Personal data, sealed as in OrderCreated (orders.personal_data): the contact's
    # envelope or null, and the customer's key it lives and dies with.
    contact = models.JSONField(null=True)
    customer_key = models.CharField(max_length=36, blank=True)
    version = models.PositiveIntegerField()
    # The global log position of OrderCreated: a strict "newest first" even within one second.
    created_position = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "orders_order"
        ordering = ["-created_position"]
        indexes = [
            models.Index(
                fields=["customer_id", "-created_position"], name="orders_customer_newest"
            ),
            models.Index(fields=["status", "-created_position"], name="orders_status_newest"),
            models.Index(
                fields=["placed_by_user_id", "-created_position"], name="orders_owner_newest"
            ),
        ]
        permissions = [("cancel_order", "Can cancel a confirmed order (starts the cancel saga)")]

    def __str__(self) -> str:
        return f"order {self.id} ({self.status})"


class IdempotencyRecord(models.Model):
    """The first response to a POST that carried an ``Idempotency-Key``.

    Written in the same transaction as the order it created, so a replay never finds a key
    without its order or an order without its key.
    """

    user_id = models.BigIntegerField()
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    response_location = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "orders_idempotency_record"
        constraints = [
            models.UniqueConstraint(fields=["user_id", "key"], name="orders_idempotency_unique"),
        ]

    def __str__(self) -> str:
        return f"idempotency key {self.key!r} of user {self.user_id}"
