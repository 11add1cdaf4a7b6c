"""Errors as JSON, always: DRF's handler for API views, and 404/500 handlers for the rest.

Error bodies are ``{"detail": …}`` or field errors; they never carry a traceback, SQL or
settings. An unexpected exception is logged with a reference the body repeats, so an
operator can find it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

logger = logging.getLogger("backoffice.api")


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Answer DRF's known exceptions as DRF does, and anything else as a JSON 500."""
    if isinstance(exc, RequestDataTooBig):
        # DRF reads request.body, where Django enforces DATA_UPLOAD_MAX_MEMORY_SIZE.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            {"detail": f"Request body is larger than the limit of {limit} bytes."}, status=413
        )
    response = exception_handler(exc, context)
    if response is not None:
        return response
    reference = uuid.uuid4().hex[:12]
    request = context.get("request")
    logger.exception(
        "unhandled error %s in %s %s",
        reference,
        getattr(request, "method", "?"),
        getattr(request, "path", "?"),
    )
    set_rollback()
    return Response(
        {"detail": f"Internal server error (reference {reference}). Nothing was changed."},
        status=500,
    )


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


_ANSWERED_BY_DJANGO = (Http404, PermissionDenied, SuspiciousOperation, BadRequest)


class ApiErrorsMiddleware:
    """Answer errors under /api/ as JSON, DEBUG on or off.

    DRF views already answer through :func:`api_exception_handler`; this catches the rest:
    an exception escaping a plain view (with DEBUG on Django would render its technical 500
    page, traceback and settings, instead of ``handler500``) and any HTML error page.
    """

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = self.get_response(request)
        if (
            _is_api(request)
            and response.status_code >= 400
            and response.get("Content-Type", "").startswith("text/html")
        ):
            # Django's own error pages (with DEBUG on, its technical 404 lists every URL
            # pattern): the API answers JSON, never HTML.
            return JsonResponse({"detail": response.reason_phrase}, status=response.status_code)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not _is_api(request) or isinstance(exception, _ANSWERED_BY_DJANGO):
            return None  # not ours, or Django's 400/403/404 handlers answer it as JSON
        reference = uuid.uuid4().hex[:12]
        logger.error(
            "unhandled error %s in %s %s",
            reference,
            request.method,
            request.path,
            exc_info=exception,
        )
        return JsonResponse(
            {"detail": f"Internal server error (reference {reference})."}, status=500
        )


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return defaults.server_error(request)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(
            {"detail": "You do not have permission to perform this action."}, status=403
        )
    return defaults.permission_denied(request, exception)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


_FIELD_ERRORS = OpenApiResponse(
    response=OpenApiTypes.OBJECT,
    description=(
        'Field errors: `{"field": ["message", …]}` (nested for list items), or '
        '`{"detail": "…"}` for a malformed body.'
    ),
)
_DESCRIPTIONS = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with the resource's current state",
    413: "Body larger than 1 MB",
    415: "Content type other than application/json",
    422: "Idempotency-Key reused with a different request",
    429: "Too many requests",
    503: "A dependency is down",
}


def ERROR_RESPONSES(*codes: int) -> dict[int, OpenApiResponse]:
    """Document the error answers an endpoint gives, all JSON."""
    return {
        code: _FIELD_ERRORS
        if code == 400
        else OpenApiResponse(response=ErrorSerializer, description=_DESCRIPTIONS[code])
        for code in codes
    }


def error_response(status_code: int, detail: str) -> Response:
    return Response({"detail": detail}, status=status_code)
