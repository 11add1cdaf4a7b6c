"""Customers' data keys (crypto-shredding) and the record of every erasure.

A customer's personal data is encrypted under a data key of their own; the key is stored
here wrapped (encrypted) by the key-encryption key from the environment. Erasing a customer
destroys their keys' bytes: whatever was encrypted under them, wherever it is kept (events,
read models, saga contexts), can no longer be read.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

#: Who may erase a customer's personal data (the API, the admin action).
ERASE_PERMISSION = "privacy.erase_customer"


class CustomerKey(models.Model):
    """A customer's data key, wrapped; erased keys keep their row, without their bytes."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    customer_id = models.CharField(max_length=64)
    # AES-GCM of the 32-byte data key under the key-encryption key named by kek_id (nonce
    # first); null once erased.
    wrapped_key = models.BinaryField(null=True)
    kek_id = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    erased_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "privacy_customer_key"
        constraints = [
            # One live key per customer: a racing second placement reuses the first's.
            models.UniqueConstraint(
                fields=["customer_id"],
                condition=Q(erased_at__isnull=True),
                name="privacy_one_live_key_per_customer",
            ),
        ]
        indexes = [models.Index(fields=["customer_id"], name="privacy_key_customer")]

    def __str__(self) -> str:
        state = "erased" if self.erased_at else "live"
        return f"key {self.id} of customer {self.customer_id} ({state})"


class Erasure(models.Model):
    """Who erased which customer's personal data, when and why (never the data itself)."""

    customer_id = models.CharField(max_length=64, db_index=True)
    actor = models.CharField(max_length=100)
    reason = models.TextField()
    erased_at = models.DateTimeField()
    # How many orders of the customer's the erasure made unreadable, and how many keys died.
    orders = models.PositiveIntegerField()
    keys = models.PositiveIntegerField()

    class Meta:
        db_table = "privacy_erasure"
        ordering = ["-erased_at", "-id"]
        permissions = [("erase_customer", "Can erase a customer's personal data")]

    def __str__(self) -> str:
        return f"erasure of customer {self.customer_id} at {self.erased_at:%Y-%m-%d %H:%M}"
