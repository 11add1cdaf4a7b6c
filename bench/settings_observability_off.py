"""Benchmark settings with the back office's own observability off (bench/observability.py).

``bench.settings`` minus what issue 18 added on the hot paths: no HTTP metrics middleware
and no request-id middleware, no saga step series in the worker (``SAGA_STEP_METRICS``, read
by sagas/telemetry.py), and logging at WARNING, so no INFO line is formatted or written.
The benchmark runs it beside ``bench.settings`` with metrics and JSON logs on.
"""

from bench.settings import *  # noqa: F403
from bench.settings import MIDDLEWARE
from infrastructure.logs import logging_config

MIDDLEWARE = [
    m
    for m in MIDDLEWARE
    if m
    not in (
        "infrastructure.metrics.HttpMetricsMiddleware",
        "infrastructure.logs.RequestLogContextMiddleware",
    )
]
SAGA_STEP_METRICS = False
LOGGING = logging_config(log_format="json", level="WARNING")
