"""A read-only browser of the event log for staff."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from eventstore.models import ProjectionCheckpoint, StoredEvent


def pretty_json(value: Any) -> str:
    return format_html(
        '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False),
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Show rows; never add, change or delete them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StoredEvent)
class StoredEventAdmin(ReadOnlyAdmin):
    list_display = (
        "position",
        "stream_type",
        "stream_id",
        "version",
        "event_type",
        "schema_version",
        "actor",
        "recorded_at",
    )
    list_filter = ("stream_type", "event_type")
    search_fields = ("=stream_id", "=event_id")
    ordering = ("-position",)
    list_per_page = 100
    show_full_result_count = False
    fields = (
        "position",
        "event_id",
        "stream_type",
        "stream_id",
        "version",
        "event_type",
        "schema_version",
        "recorded_at",
        "transaction_id",
        "data_pretty",
        "metadata_pretty",
    )
    readonly_fields = fields

    @admin.display(description="actor")
    def actor(self, obj: StoredEvent) -> str:
        return str(obj.metadata.get("actor", ""))

    @admin.display(description="data")
    def data_pretty(self, obj: StoredEvent) -> str:
        return pretty_json(obj.data)

    @admin.display(description="metadata")
    def metadata_pretty(self, obj: StoredEvent) -> str:
        return pretty_json(obj.metadata)


@admin.register(ProjectionCheckpoint)
class ProjectionCheckpointAdmin(ReadOnlyAdmin):
    list_display = ("name", "transaction_id", "position", "events_processed", "updated_at")
