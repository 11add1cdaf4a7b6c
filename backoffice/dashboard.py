"""Gather the back office's dashboard: counts that each link to the admin list they count,
and charts of the last day.

Shown on the admin index (templates/admin/index.html). Each section appears only to staff who
may view what it counts; the counts take one aggregate query per section (projection lag:
two per projection), each chart one aggregate query over its window (the failed-compensation
chart reuses the count of those waiting now). A web process reuses a chart it drew for
``DASHBOARD_CHARTS_CACHE_SECONDS``: they may be that much behind the counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from backoffice.charts import Series, bar_chart, column_chart, line_chart
from eventstore.projections import projection_statuses
from orders.domain import OrderStatus
from orders.selectors import order_counts_by_status, orders_per_hour
from sagas.selectors import (
    attention_counts,
    failed_compensation_changes,
    saga_counts_by_status,
    saga_outcomes_since,
    step_latency_percentiles,
)
from sagas.statuses import SagaStatus

#: How far back the charts look, in hours (the current hour included).
CHART_HOURS = 24

#: One colour per status, the same in every chart.
STATUS_COLORS = {
    "CONFIRMED": "#2f7d32",
    "COMPLETED": "#2f7d32",
    "PENDING": "#888888",
    "RUNNING": "#417690",
    "CANCELLED": "#e0a030",
    "COMPENSATING": "#c98a1a",
    "COMPENSATED": "#e0a030",
    "COMPENSATION_FAILED": "#ba2121",
}


@dataclass(frozen=True)
class CountLink:
    """One figure on the dashboard and the filtered list behind it."""

    label: str
    count: int
    url: str


@dataclass(frozen=True)
class Chart:
    """One chart of the dashboard: its element id, its caption, its inline SVG (or why none)."""

    key: str
    title: str
    svg: SafeString


@dataclass(frozen=True)
class Dashboard:
    needs_attention: CountLink | None = None
    failed_compensations: CountLink | None = None
    sagas_by_status: list[CountLink] = field(default_factory=list)
    orders_today: list[CountLink] = field(default_factory=list)
    orders_today_total: CountLink | None = None
    projections: list[CountLink] = field(default_factory=list)
    day: datetime | None = None
    charts: list[Chart] = field(default_factory=list)


def _today(now: datetime) -> tuple[datetime, datetime]:
    # Midnight as the admin's own date filter computes "Today", so the links select it.
    local = timezone.localtime(now)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def chart_hours(now: datetime) -> list[datetime]:
    """Return the UTC hours the charts show: the last ``CHART_HOURS``, the current one last."""
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [current - timedelta(hours=n) for n in range(CHART_HOURS - 1, -1, -1)]


def _hour_labels(hours: list[datetime]) -> list[str]:
    return [f"{h:%H}h" for h in hours]


def orders_per_hour_chart(hours: list[datetime]) -> SafeString:
    """Draw the orders created in each hour, stacked by their status now."""
    counts = orders_per_hour(since=hours[0], until=hours[-1] + timedelta(hours=1))
    series = [
        Series(
            status.value,
            [counts.get((h, status.value), 0) for h in hours],
            STATUS_COLORS.get(status.value, ""),
        )
        for status in OrderStatus
    ]
    return column_chart(
        _hour_labels(hours),
        series,
        title="Orders per hour (UTC) by status",
        unit="orders",
        empty="No orders in the last 24 hours.",
    )


def saga_outcomes_chart(hours: list[datetime]) -> SafeString:
    """Draw the sagas started in the window, a column per type stacked by status."""
    counts = saga_outcomes_since(since=hours[0])
    types = sorted({saga_type for saga_type, _ in counts})
    series = [
        Series(
            status.value,
            [counts.get((t, status.value), 0) for t in types],
            STATUS_COLORS.get(status.value, ""),
        )
        for status in SagaStatus
    ]
    return column_chart(
        types,
        series,
        title="Sagas started in the last 24 hours, by outcome",
        unit="sagas",
        empty="No saga started in the last 24 hours.",
    )


def step_latency_chart(hours: list[datetime]) -> SafeString:
    """Draw p50/p90/p99 of each step's attempt durations in the window, in milliseconds."""
    rows = step_latency_percentiles(since=hours[0])
    labels = [r.step if r.phase == "action" else f"{r.step} (undo)" for r in rows]
    series = [
        Series("p50", [round(r.p50 * 1000, 1) for r in rows], "#79aec8"),
        Series("p90", [round(r.p90 * 1000, 1) for r in rows], "#417690"),
        Series("p99", [round(r.p99 * 1000, 1) for r in rows], "#264b5d"),
    ]
    return bar_chart(
        labels,
        series,
        title="Step attempt latency percentiles, last 24 hours",
        unit=" ms",
        empty="No step attempt in the last 24 hours.",
    )


def failed_compensations_chart(hours: list[datetime], waiting_now: int) -> SafeString:
    """Draw how many failed compensations waited at the end of each hour of the window."""
    changes = failed_compensation_changes(since=hours[0])
    waiting, values = waiting_now, []
    # Walk back from now: before an hour's changes, one fewer for each saga that entered
    # during it, one more for each an operator took out.
    for hour in reversed(hours):
        values.append(max(waiting, 0))
        entered, left = changes.get(hour, (0, 0))
        waiting += left - entered
    values.reverse()
    return line_chart(
        _hour_labels(hours),
        [Series("waiting", values, "#ba2121")],
        title="Failed compensations waiting, end of each hour (UTC)",
        unit="sagas",
    )


#: The charts this process drew: key -> (when, by the monotonic clock; the chart).
_drawn: dict[str, tuple[float, SafeString]] = {}


def _cached(key: str, draw: Callable[[], SafeString]) -> SafeString:
    """Return the chart drawn under ``key`` less than DASHBOARD_CHARTS_CACHE_SECONDS ago, or
    draw it now. Keys name the hour the chart ends with, so a new hour draws anew at once.
    """
    seconds = float(settings.DASHBOARD_CHARTS_CACHE_SECONDS)
    if seconds <= 0:
        return draw()
    now = time.monotonic()
    hit = _drawn.get(key)
    if hit is not None and now - hit[0] < seconds:
        return hit[1]
    chart = draw()
    for stale in [k for k, (at, _) in _drawn.items() if now - at >= seconds]:
        _drawn.pop(stale, None)
    _drawn[key] = (now, chart)
    return chart


def dashboard(*, user: Any, now: datetime | None = None) -> Dashboard:
    """Return the dashboard sections ``user`` may see, counted now."""
    now = now or timezone.now()
    hours = chart_hours(now)
    hour = f"{hours[-1]:%Y-%m-%dT%H}"
    parts: dict[str, Any] = {}
    charts: list[Chart] = []
    if user.has_perm("sagas.view_saga"):
        sagas_url = reverse("admin:sagas_saga_changelist")
        counts = saga_counts_by_status()
        parts["sagas_by_status"] = [
            CountLink(status, counts[status], f"{sagas_url}?{urlencode({'status__exact': status})}")
            for status in counts
        ]
        parts["failed_compensations"] = CountLink(
            "failed compensations waiting",
            counts[SagaStatus.COMPENSATION_FAILED.value],
            reverse("admin:sagas_saga_failed_compensations"),
        )
        parts["needs_attention"] = CountLink(
            "sagas need an operator",
            attention_counts().needing,
            reverse("admin:sagas_saga_needs_attention"),
        )
        waiting = counts[SagaStatus.COMPENSATION_FAILED.value]
        charts += [
            Chart(
                "saga-outcomes",
                "Saga outcomes",
                _cached(f"saga-outcomes:{hour}", lambda: saga_outcomes_chart(hours)),
            ),
            Chart(
                "step-latency",
                "Step latency (ms)",
                _cached(f"step-latency:{hour}", lambda: step_latency_chart(hours)),
            ),
            Chart(
                "failed-compensations",
                "Failed compensations waiting",
                # Keyed by the count too: the line never disagrees with the count above it.
                _cached(
                    f"failed-compensations:{hour}:{waiting}",
                    lambda: failed_compensations_chart(hours, waiting),
                ),
            ),
        ]
    if user.has_perm("orders.view_ordersummary"):
        orders_url = reverse("admin:orders_ordersummary_changelist")
        start, end = _today(now)
        day = {"created_at__gte": str(start), "created_at__lt": str(end)}
        counts = order_counts_by_status(created_from=start, created_before=end)
        parts["orders_today"] = [
            CountLink(status, n, f"{orders_url}?{urlencode({**day, 'status__exact': status})}")
            for status, n in counts.items()
        ]
        parts["orders_today_total"] = CountLink(
            "all", sum(counts.values()), f"{orders_url}?{urlencode(day)}"
        )
        parts["day"] = start
        orders_chart = _cached(f"orders-per-hour:{hour}", lambda: orders_per_hour_chart(hours))
        charts.insert(0, Chart("orders-per-hour", "Orders per hour", orders_chart))
    if user.has_perm("eventstore.view_projectioncheckpoint"):
        checkpoints_url = reverse("admin:eventstore_projectioncheckpoint_changelist")
        parts["projections"] = [
            CountLink(status.name, status.lag, checkpoints_url) for status in projection_statuses()
        ]
    return Dashboard(**parts, charts=charts)
