"""Gather the back office's dashboard: counts that each link to the admin list they count.

Shown on the admin index (templates/admin/index.html). Each section appears only to staff who
may view what it counts; the counts take one aggregate query per section (projection lag:
two per projection).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse
from django.utils import timezone

from eventstore.projections import projection_statuses
from orders.selectors import order_counts_by_status
from sagas.selectors import saga_counts_by_status
from sagas.statuses import SagaStatus


@dataclass(frozen=True)
class CountLink:
    """One figure on the dashboard and the filtered list behind it."""

    label: str
    count: int
    url: str


@dataclass(frozen=True)
class Dashboard:
    failed_compensations: CountLink | None = None
    sagas_by_status: list[CountLink] = field(default_factory=list)
    orders_today: list[CountLink] = field(default_factory=list)
    orders_today_total: CountLink | None = None
    projections: list[CountLink] = field(default_factory=list)
    day: datetime | None = None


def _today(now: datetime) -> tuple[datetime, datetime]:
    # Midnight as the admin's own date filter computes "Today", so the links select it.
    local = timezone.localtime(now)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def dashboard(*, user: Any, now: datetime | None = None) -> Dashboard:
    """Return the dashboard sections ``user`` may see, counted now."""
    now = now or timezone.now()
    parts: dict[str, Any] = {}
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
    if user.has_perm("eventstore.view_projectioncheckpoint"):
        checkpoints_url = reverse("admin:eventstore_projectioncheckpoint_changelist")
        parts["projections"] = [
            CountLink(status.name, status.lag, checkpoints_url) for status in projection_statuses()
        ]
    return Dashboard(**parts)
