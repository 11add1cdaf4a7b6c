"""Admin pages: endpoints (re-enable) and deliveries (filters, what was sent, redeliver)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from webhooks.delivery import delivery_redeliver
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import endpoint_reenable

PERMISSION = "webhooks.manage_webhooks"


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = (
        "url",
        "event_types",
        "is_active",
        "consecutive_failures",
        "disabled_reason",
        "created_at",
    )
    list_filter = ("is_active",)
    search_fields = ("url", "description")
    readonly_fields = (
        "url",
        "event_types",
        "is_active",
        "disabled_reason",
        "consecutive_failures",
        "active_since",
        "created_at",
    )
    fields = ("description", *readonly_fields)
    actions = ("reenable",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Endpoints are registered over the API, which shows the new secret once.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Changed over the API (URL and types are re-checked there); here, viewed, re-enabled
        # (the action) and deleted.
        return False

    @admin.action(description="Re-enable the selected endpoints", permissions=["manage"])
    def reenable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        count = 0
        for endpoint in queryset.filter(is_active=False):
            endpoint_reenable(endpoint_id=endpoint.id)
            count += 1
        self.message_user(request, f"Re-enabled {count} endpoint(s).", messages.SUCCESS)

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PERMISSION)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "event_type",
        "status",
        "attempts",
        "response_status",
        "endpoint",
        "stream_id",
        "created_at",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("status", "event_type", "endpoint")
    search_fields = ("event_id", "stream_id")
    readonly_fields = (
        "endpoint",
        "event_id",
        "event_type",
        "stream_type",
        "stream_id",
        "stream_version",
        "status",
        "attempts",
        "request_body",
        "response_status",
        "response_body",
        "last_error",
        "created_at",
        "retry_window_start",
        "next_attempt_at",
        "delivered_at",
    )
    exclude = ("payload", "lease_until")
    actions = ("redeliver",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewable, never edited: redeliver is the only change.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The record of what was sent: a deleted delivery would leave its event undelivered
        # as far as the invariant can tell. Deleting the endpoint removes its deliveries.
        return False

    @admin.display(description="request body")
    def request_body(self, delivery: WebhookDelivery) -> str:
        return format_html("<pre>{}</pre>", json.dumps(delivery.payload, indent=2))

    @admin.action(description="Redeliver the selected deliveries now", permissions=["manage"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        for delivery_id in ids:
            delivery_redeliver(delivery_id=delivery_id)
        self.message_user(request, f"Queued {len(ids)} delivery(ies) again.", messages.SUCCESS)

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PERMISSION)
