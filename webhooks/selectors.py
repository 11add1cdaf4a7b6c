"""Read the webhooks' state for the dashboards and the metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Min

from webhooks.models import UNFINISHED_STATUSES, WebhookDelivery


@dataclass(frozen=True)
class WebhookBacklog:
    """Deliveries neither succeeded nor failed, and when the oldest of them was made."""

    count: int
    oldest_created_at: datetime | None


def webhook_backlog() -> WebhookBacklog:
    """Count the deliveries still to be sent and find the oldest, in one query."""
    row = WebhookDelivery.objects.filter(status__in=UNFINISHED_STATUSES).aggregate(
        count=Count("id"), oldest=Min("created_at")
    )
    return WebhookBacklog(count=int(row["count"]), oldest_created_at=row["oldest"])
