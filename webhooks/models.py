"""Webhook endpoints (who subscribes to what) and deliveries (one event offered to one endpoint).

A delivery row is the outbox entry: the relay (``webhooks.relay``) writes it in the same
transaction as its checkpoint, and the sender (``webhooks.delivery``) moves it through
PENDING → SUCCEEDED, or RETRYING → … → FAILED after the retry window.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class DeliveryStatus(models.TextChoices):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    RETRYING = "RETRYING"
    FAILED = "FAILED"


#: Deliveries still to be sent (an earlier one of these holds back later ones of its order).
UNFINISHED_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)


class WebhookEndpoint(models.Model):
    """A URL that receives the events of the types it subscribes to, signed with its secret."""

    url = models.URLField(max_length=2000)
    event_types = models.JSONField(default=list)
    description = models.CharField(max_length=500, blank=True, default="")
    # Fernet token of the "whsec_…" secret (webhooks.signing_secrets): it must be readable
    # to sign, so it is encrypted, not hashed.
    secret_encrypted = models.TextField(editable=False)
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True, default="")
    consecutive_failures = models.PositiveIntegerField(default=0)
    # Events recorded from then on are offered to the endpoint. Reset when it is re-enabled
    # or its event types change, so "every event has its deliveries" stays checkable.
    active_since = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("manage_webhooks", "Can manage webhook endpoints and redeliver")]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event offered to one endpoint; the body is fixed when the relay writes it."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=100)
    stream_type = models.CharField(max_length=100)
    stream_id = models.CharField(max_length=200)
    stream_version = models.PositiveIntegerField()
    payload = models.JSONField()
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    # Retries stop this long after it (WEBHOOK_RETRY_WINDOW_SECONDS); a redelivery resets it.
    retry_window_start = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # A sender holds the delivery until then (no row lock across the HTTP call: a long
    # transaction would hold back the event log's readers).
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event_id"], name="webhooks_one_delivery_per_event"
            )
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhooks_due"),
            models.Index(
                fields=["endpoint", "stream_type", "stream_id", "stream_version"],
                name="webhooks_stream_order",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} → {self.endpoint_id}"
