"""A read-only browser of the event log for staff, with links out to what events are about.

The event store knows nothing of the apps that write to it. Those apps tell the browser where
to link instead: ``register_stream_admin("order", "admin:orders_ordersummary_change")`` links every
event of an order stream to that order's admin page, ``register_event_linker`` adds any other
link an app can read off an event (the saga that caused it, say), and
``register_correlation_view`` lists a changelist filtered by correlation id ("sagas sharing
it"). The registrations are made from each app's own ``admin.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from django.contrib import admin
from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from backoffice.admin import AdminLink, ReadOnlyAdmin, pretty_json, render_links
from eventstore.models import ProjectionCheckpoint, StoredEvent

CORRELATION_PARAM = "correlation_id"
#: Scopes a correlation's pages to one actor. Correlation ids are chosen by clients
#: (X-Correlation-ID): two clients may send the same one, and a page listing "everything
#: sharing it" must not splice one client's orders into another's story.
ACTOR_PARAM = "actor"


EventLinker = Callable[[StoredEvent], AdminLink | None]

_linkers: list[EventLinker] = []
_correlation_views: dict[str, tuple[str, str]] = {}


def register_stream_admin(stream_type: str, url_name: str, *, label: str = "") -> None:
    """Link every event of ``stream_type`` to the admin page ``url_name`` of its stream id."""
    text = label or stream_type

    def link(event: StoredEvent) -> AdminLink | None:
        if event.stream_type != stream_type:
            return None
        try:
            return AdminLink(text, reverse(url_name, args=[event.stream_id]))
        except NoReverseMatch:
            return None

    register_event_linker(link)


def register_event_linker(linker: EventLinker) -> None:
    """Add a function that reads one link (or None) off an event; it must not query."""
    _linkers.append(linker)


def register_correlation_view(label: str, url_name: str, *, param: str = CORRELATION_PARAM) -> None:
    """List the changelist ``url_name``, filtered by ``param``, among a correlation's pages."""
    _correlation_views[label] = (url_name, param)


def event_links(event: StoredEvent) -> list[AdminLink]:
    """Return the admin pages the registered linkers find for ``event``."""
    return [link for linker in _linkers if (link := linker(event)) is not None]


def correlation_query(correlation_id: str, actor: str, *, param: str = CORRELATION_PARAM) -> str:
    """Return the query string selecting ``correlation_id`` as used by ``actor``."""
    return urlencode({param: correlation_id, ACTOR_PARAM: actor})


def correlation_links(correlation_id: str, *, actor: str) -> list[AdminLink]:
    """Return the pages listing what ``actor`` did under ``correlation_id``, events first."""
    if not correlation_id:
        return []
    query = correlation_query(correlation_id, actor)
    links = [AdminLink("events", f"{reverse('admin:eventstore_storedevent_changelist')}?{query}")]
    for label, (url_name, param) in _correlation_views.items():
        try:
            url = reverse(url_name)
        except NoReverseMatch:
            continue
        links.append(
            AdminLink(label, f"{url}?{correlation_query(correlation_id, actor, param=param)}")
        )
    return links


class EventActorFilter(admin.SimpleListFilter):
    """Keep the events of one actor (a correlation link's scope)."""

    title = "actor"
    parameter_name = ACTOR_PARAM

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, value)] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        return queryset.alias(_actor=KeyTextTransform("actor", "metadata")).filter(_actor=value)


class CorrelationFilter(admin.SimpleListFilter):
    """Keep the events of one correlation id (reached from a correlation link)."""

    title = "correlation id"
    parameter_name = CORRELATION_PARAM

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # No fixed choices: the filter shows only the correlation id it was given.
        value = self.value()
        return [(value, value)] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        # The ->> expression the eventstore_correlation index is built on.
        return queryset.alias(_correlation=KeyTextTransform("correlation_id", "metadata")).filter(
            _correlation=value
        )


def distinct_values(column: str) -> list[str]:
    """Return the distinct values of an indexed leading column of the events table, sorted.

    A loose index scan (one index probe per value) instead of ``SELECT DISTINCT``, which reads
    the whole log: there are a handful of stream and event types among millions of events.
    """
    if column not in {"stream_type", "event_type"}:  # the columns an index starts with
        raise ValueError(column)
    table = connection.ops.quote_name(StoredEvent._meta.db_table)
    col = connection.ops.quote_name(column)
    sql = (
        f"WITH RECURSIVE v(value) AS ("  # noqa: S608 (identifiers from the model, no input)
        f"  (SELECT {col} FROM {table} ORDER BY {col} LIMIT 1)"
        f"  UNION ALL"
        f"  SELECT (SELECT {col} FROM {table} WHERE {col} > v.value ORDER BY {col} LIMIT 1)"
        f"  FROM v WHERE v.value IS NOT NULL"
        f") SELECT value FROM v WHERE value IS NOT NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [row[0] for row in cursor.fetchall()]


class IndexedValuesFilter(admin.SimpleListFilter):
    """Offer each distinct value of an indexed column, found without reading the whole log."""

    column = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, value) for value in distinct_values(self.column)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{self.column: value}) if value else queryset


class StreamTypeFilter(IndexedValuesFilter):
    title = "stream type"
    parameter_name = column = "stream_type"


class EventTypeFilter(IndexedValuesFilter):
    title = "event type"
    parameter_name = column = "event_type"


@admin.register(StoredEvent)
class StoredEventAdmin(ReadOnlyAdmin):
    list_display = (
        "position",
        "event_type",
        "stream",
        "version",
        "links",
        "actor",
        "correlation",
        "recorded_at",
    )
    list_filter = (CorrelationFilter, EventActorFilter, StreamTypeFilter, EventTypeFilter)
    search_fields = ("stream_id",)  # searched in get_search_results, by exact id
    search_help_text = "An exact stream id (an order's id, say) or event id."
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
        "links",
        "correlation_pages",
        "data_pretty",
        "metadata_pretty",
    )
    readonly_fields = fields

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[StoredEvent], search_term: str
    ) -> tuple[QuerySet[StoredEvent], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # Exact ids, matched the way the indexes are built: the stream's unique index starts
        # with the stream type, so every type is named (a case-insensitive match would scan).
        match = Q(stream_type__in=distinct_values("stream_type"), stream_id=term)
        with contextlib.suppress(ValueError):
            match |= Q(event_id=UUID(term))
        return queryset.filter(match), False

    @admin.display(description="stream", ordering="stream_id")
    def stream(self, obj: StoredEvent) -> str:
        return f"{obj.stream_type}/{obj.stream_id}"

    @admin.display(description="actor")
    def actor(self, obj: StoredEvent) -> str:
        return str(obj.metadata.get("actor", ""))

    @admin.display(description="correlation id")
    def correlation(self, obj: StoredEvent) -> str:
        correlation_id = str(obj.metadata.get("correlation_id", ""))
        if not correlation_id:
            return ""
        url = "?" + correlation_query(correlation_id, str(obj.metadata.get("actor", "")))
        # Shortened in the list (the full id is the link's title): ids are long, columns not.
        short = correlation_id if len(correlation_id) <= 12 else f"{correlation_id[:8]}…"
        return format_html(
            '<a href="{}" title="Events sharing correlation id {}">{}</a>',
            url,
            correlation_id,
            short,
        )

    @admin.display(description="about")
    def links(self, obj: StoredEvent) -> str:
        return render_links(event_links(obj))

    @admin.display(description="sharing its correlation id")
    def correlation_pages(self, obj: StoredEvent) -> str:
        return render_links(
            correlation_links(
                str(obj.metadata.get("correlation_id", "")),
                actor=str(obj.metadata.get("actor", "")),
            )
        )

    @admin.display(description="data")
    def data_pretty(self, obj: StoredEvent) -> str:
        return pretty_json(obj.data)

    @admin.display(description="metadata")
    def metadata_pretty(self, obj: StoredEvent) -> str:
        return pretty_json(obj.metadata)


@admin.register(ProjectionCheckpoint)
class ProjectionCheckpointAdmin(ReadOnlyAdmin):
    list_display = ("name", "transaction_id", "position", "events_processed", "updated_at")
