"""The project's URLs plus the benchmark's trivial endpoint (bench settings only).

``bench/api.py`` compares POST /api/orders/ with the cheapest authenticated DRF request the
same server can answer. That endpoint exists only under ``bench.settings``, so the product
never serves it.
"""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import handler400, handler403, handler404, handler500

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]

PING_PATH = "bench/ping/"


class BenchPingView(APIView):
    """Parse the JSON body and answer a tiny JSON: the same DRF stack, no work behind it.

    Authentication, permissions and throttling are the project's defaults, as for the orders
    endpoint it is compared with.
    """

    def post(self, request: Request) -> Response:
        return Response({"ok": True, "fields": len(request.data)})


urlpatterns: list[URLPattern | URLResolver] = [
    path("", include("config.urls")),
    path(PING_PATH, BenchPingView.as_view(), name="bench-ping"),
]
