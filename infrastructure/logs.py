"""Log lines that carry the ids of what they are about, as JSON or as readable text.

Every process (web, worker, beat) logs through the standard library; this module adds the
ids known at that moment (``request_id``, ``correlation_id``, ``saga_id``, ``order_id``,
``step``, ``phase``) to each record from a context variable, so they are bound once (per
request by :class:`RequestLogContextMiddleware`, per task by the saga task) and every line
below carries them, whichever library wrote it. ``LOG_FORMAT=json`` writes one JSON object
a line (python-json-logger); ``LOG_FORMAT=text`` the same ids after the message.

Only ids go into the context: never a payment token, a customer id or a request body.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

#: The ids a line may carry, in the order the text format shows them.
LOG_IDS = ("request_id", "correlation_id", "saga_id", "order_id", "step", "phase")

_context: ContextVar[dict[str, str]] = ContextVar("log_context", default={})  # noqa: B039 (never mutated: replaced)

#: A client's X-Request-ID is kept only when it looks like an id (no log injection).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SUBJECT = re.compile(r"([a-z][a-z_]{0,30}):(.{1,100})")


def log_ids() -> dict[str, str]:
    """Return the ids bound in this context."""
    return _context.get()


def log_bind(**ids: object) -> None:
    """Bind ``ids`` (None and empty values skipped) for the rest of this context."""
    new = {key: str(value) for key, value in ids.items() if value not in (None, "")}
    if new:
        _context.set({**_context.get(), **new})


def subject_ids(subject: str) -> dict[str, str]:
    """Turn a saga subject ("order:<uuid>") into its id field (``order_id``)."""
    match = _SUBJECT.fullmatch(subject)
    return {f"{match[1]}_id": match[2]} if match else {}


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Bind ``ids`` inside the block; what was bound before comes back after it."""
    token = _context.set(dict(_context.get()))
    try:
        log_bind(**ids)
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copy the bound ids onto each record, and a readable ``ids`` suffix for text lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _context.get()
        for key, value in ids.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        shown = [f"{key}={getattr(record, key)}" for key in LOG_IDS if hasattr(record, key)]
        record.ids = f" [{' '.join(shown)}]" if shown else ""
        return True


class JsonLineFormatter(JsonFormatter):
    """Write ``timestamp, level, logger, message`` and the bound ids as one JSON object."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", True)
        # ``ids`` is the text format's suffix; in JSON the ids are fields of their own.
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "taskName", "ids"])
        super().__init__("{levelname}{name}{message}", *args, style="{", **kwargs)


class RequestLogContextMiddleware:
    """Bind a request id (the client's ``X-Request-ID`` when it is a plain id) per request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = request.headers.get("X-Request-ID", "")
        request_id = raw if _REQUEST_ID.fullmatch(raw) else uuid.uuid4().hex
        with log_context(request_id=request_id):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """Return the ``LOGGING`` dict for ``log_format`` ("json" or "text")."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"ids": {"()": "infrastructure.logs.ContextFilter"}},
        "formatters": {
            "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s%(ids)s"},
            "json": {"()": "infrastructure.logs.JsonLineFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if log_format == "json" else "text",
                "filters": ["ids"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            # Celery's "Task … received" and "Task … succeeded" lines, two per task, say
            # again what the attempt's own line says (sagas.telemetry: its step, outcome and
            # duration, with the saga's ids, which Celery's lines lack), and the first is
            # written by the worker's single consuming process. Their failures still log.
            "celery.worker.strategy": {"level": "WARNING"},
            "celery.app.trace": {"level": "WARNING"},
        },
    }
