"""GET /api/health/: PostgreSQL and broker checks; when workers and beat were last seen."""

from __future__ import annotations

import time
from typing import Any

from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.celery import app as celery_app
from infrastructure.heartbeats import BEAT, WORKERS, seconds_since_seen


def _check_database() -> dict[str, Any]:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "ok", "ms": round((time.monotonic() - started) * 1000, 1)}


def _check_broker() -> dict[str, Any]:
    started = time.monotonic()
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            channel = conn.default_channel
            if conn.transport.driver_type == "redis":
                # Connected is not answering: a paused Redis accepts connections.
                channel.client.ping()  # type: ignore[attr-defined]
    except Exception as exc:
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "ok", "ms": round((time.monotonic() - started) * 1000, 1)}


_check = inline_serializer(
    "HealthCheck",
    {
        "status": serializers.ChoiceField(choices=["ok", "down"]),
        "ms": serializers.FloatField(required=False),
        "error": serializers.CharField(required=False),
    },
)
_health = inline_serializer(
    "Health",
    {
        "status": serializers.ChoiceField(choices=["ok", "unavailable"]),
        "checks": inline_serializer("HealthChecks", {"database": _check, "broker": _check}),
        "workers": serializers.FloatField(
            allow_null=True, help_text="Seconds since a worker was last seen working (null: never)."
        ),
        "beat": serializers.FloatField(
            allow_null=True, help_text="Seconds since beat last sent the sweep (null: never)."
        ),
    },
)


class HealthView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: _health, 503: _health}, summary="Database and broker checks")
    def get(self, request: Request) -> Response:
        checks = {"database": _check_database(), "broker": _check_broker()}
        healthy = all(c["status"] == "ok" for c in checks.values())
        # Workers and beat are reported, never judged here: a web process is healthy without
        # them, and the alert rules (docs/monitoring/) decide how long a silence may last.
        seen = seconds_since_seen()
        return Response(
            {
                "status": "ok" if healthy else "unavailable",
                "checks": checks,
                "workers": seen[WORKERS],
                "beat": seen[BEAT],
            },
            status=200 if healthy else 503,
        )
