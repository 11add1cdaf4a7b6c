"""Prometheus series of every process: HTTP requests here, the apps' own in their modules.

Counters and histograms only on the hot path (no database query per request). Each process
keeps its series in memory; with ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus_client's
multiprocess mode keeps them in files in that directory instead, so the prefork children of
a Celery worker (or gunicorn's workers) are summed into one exposition by whoever reads the
directory: ``GET /metrics`` on the web side, :func:`worker_exporter_start` on a worker host.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

http_requests = Counter(
    "backoffice_http_requests",
    "HTTP requests answered, by method, URL pattern and status.",
    ["method", "route", "status"],
)
http_request_duration = Histogram(
    "backoffice_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and URL pattern.",
    ["method", "route"],
)

#: The route label of a request no URL pattern matched (a 404): one value, not one per path.
UNMATCHED = "<unmatched>"


def route_of(request: HttpRequest) -> str:
    """Return the URL pattern that answered ``request`` (bounded cardinality, no ids)."""
    match = getattr(request, "resolver_match", None)
    if match is None or not match.route:
        return UNMATCHED
    return "/" + match.route


class HttpMetricsMiddleware:
    """Count each request and time it, labelled by its URL pattern."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        route = route_of(request)
        method = request.method or ""
        http_requests.labels(method, route, str(response.status_code)).inc()
        http_request_duration.labels(method, route).observe(elapsed)
        return response


def multiprocess_dir() -> str | None:
    """Return the multiprocess directory, or None when this process keeps series in memory."""
    return os.environ.get(MULTIPROC_DIR_VARIABLE) or None


def exposition(collectors: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """Render this process's (or this directory's) series and ``collectors``, and its type."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _ThisProcess(Collector):
    """Forward the default registry: this process's series, beside the scrape's own."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def worker_exporter_start(*, port: int, addr: str) -> bool:
    """Serve the series of every process on this host's multiprocess directory over HTTP.

    Called in a Celery worker's main process before it forks its pool: the children write
    their series to the directory, this server sums them. Returns False (and logs why) when
    no directory is set: the children's series would be invisible.
    """
    directory = multiprocess_dir()
    if directory is None:
        logger.error(
            "WORKER_METRICS_PORT is set but %s is not: the worker's series are not exported",
            MULTIPROC_DIR_VARIABLE,
        )
        return False
    # Files of processes of an earlier run would be summed in with this run's.
    for stale in Path(directory).glob("*.db"):
        stale.unlink(missing_ok=True)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=addr, registry=registry)
    logger.info("worker metrics on http://%s:%s/metrics", addr, port)
    return True


def worker_process_exited(pid: int) -> None:
    """Let the multiprocess directory forget a dead child's live gauges."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)
