"""``GET /metrics``: this process's series and the database's gauges, for Prometheus.

The gauges are the same on every web process (they come from PostgreSQL): a few aggregate
queries per scrape (sagas by type and status, orders by status, each projection's lag, the
webhook backlog and its oldest delivery),
kept for ``GAUGES_CACHE_SECONDS`` so that several Prometheus servers, or a dashboard that
refreshes often, do not multiply them. Open with DEBUG; otherwise it needs
``Authorization: Bearer <METRICS_TOKEN>`` (401 without) and is a 404 when no token is set.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Iterable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from eventstore.projections import projection_statuses
from infrastructure.heartbeats import seconds_since_seen
from infrastructure.metrics import exposition
from orders.selectors import order_counts_by_status
from sagas.selectors import attention_counts, saga_counts_by_type_and_status
from sagas.statuses import SagaStatus
from webhooks.selectors import webhook_backlog

GAUGES_CACHE_SECONDS = 5.0


class DatabaseGauges(Collector):
    """The back office's state as gauges, read at most every ``GAUGES_CACHE_SECONDS``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read_at = -GAUGES_CACHE_SECONDS
        self._families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            if time.monotonic() - self._read_at >= GAUGES_CACHE_SECONDS:
                self._families = self._read()
                self._read_at = time.monotonic()
            return list(self._families)

    def _read(self) -> list[Metric]:
        sagas = GaugeMetricFamily(
            "backoffice_sagas", "Sagas by type and status.", labels=["saga_type", "status"]
        )
        failed = 0
        for (saga_type, status), n in sorted(saga_counts_by_type_and_status().items()):
            sagas.add_metric([saga_type, status], n)
            if status == SagaStatus.COMPENSATION_FAILED:
                failed += n
        attention = attention_counts()
        orders = GaugeMetricFamily("backoffice_orders", "Orders by status.", labels=["status"])
        for status, n in sorted(order_counts_by_status().items()):
            orders.add_metric([status], n)
        lag = GaugeMetricFamily(
            "backoffice_projection_lag_events",
            "Events each projection has yet to read.",
            labels=["projection"],
        )
        for projection in projection_statuses():
            lag.add_metric([projection.name], projection.lag)
        families: list[Metric] = [
            sagas,
            GaugeMetricFamily(
                "backoffice_failed_compensations",
                "Sagas in COMPENSATION_FAILED, waiting for an operator.",
                value=failed,
            ),
            GaugeMetricFamily(
                "backoffice_sagas_past_deadline",
                "Sagas running or compensating past their deadline, waiting for an operator.",
                value=attention.past_deadline,
            ),
            GaugeMetricFamily(
                "backoffice_sagas_needing_attention",
                "Sagas in the admin's needs-attention queue (past their deadline, retrying "
                "forward past their point of no return, or COMPENSATION_FAILED).",
                value=attention.needing,
            ),
            orders,
            lag,
        ]
        seen = GaugeMetricFamily(
            "backoffice_seconds_since_seen",
            "Seconds since a worker or beat was last seen working (absent: never).",
            labels=["process"],
        )
        for process, seconds in seconds_since_seen().items():
            if seconds is not None:
                seen.add_metric([process], seconds)
        families.append(seen)
        backlog = webhook_backlog()
        oldest = backlog.oldest_created_at
        families += [
            GaugeMetricFamily(
                "backoffice_webhook_backlog",
                "Webhook deliveries neither succeeded nor failed.",
                value=backlog.count,
            ),
            GaugeMetricFamily(
                "backoffice_webhook_oldest_pending_seconds",
                "Age of the oldest webhook delivery neither succeeded nor failed (0: none).",
                value=max(0.0, (timezone.now() - oldest).total_seconds()) if oldest else 0.0,
            ),
        ]
        return families


database_gauges = DatabaseGauges()


def _allowed(request: HttpRequest) -> HttpResponse | None:
    """Return the refusal for ``request``, or None when it may read the metrics."""
    if settings.DEBUG:
        return None
    token = str(getattr(settings, "METRICS_TOKEN", "") or "")
    if not token:
        return JsonResponse({"detail": "Not found."}, status=404)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        response = JsonResponse(
            {"detail": "A metrics token is required: Authorization: Bearer <METRICS_TOKEN>."},
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return None


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Answer a Prometheus scrape."""
    refused = _allowed(request)
    if refused is not None:
        return refused
    body, content_type = exposition([database_gauges])
    return HttpResponse(body, content_type=content_type)
