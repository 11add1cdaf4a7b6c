"""Resolve which PostgreSQL and Redis this checkout talks to.

The environment wins. When ``DATABASE_URL`` or the broker URL is unset, ``make run`` and
``make test`` start embedded servers and record their URLs in ``.local/runtime.json``; reading
that file here is what lets a plain ``python manage.py …`` in the checkout reach the same
databases as the running back office. Only server URLs are read from it: ``DEBUG`` comes from
the environment alone (config/settings.py), so a file left by a development run never turns a
production process into a debug one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
LOCAL_DIR = BASE_DIR / ".local"
RUNTIME_FILE = LOCAL_DIR / "runtime.json"


def _recorded() -> dict[str, str]:
    try:
        data = json.loads(RUNTIME_FILE.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}


def database_url() -> str | None:
    """Return the PostgreSQL URL from the environment, else the one ``make run`` recorded."""
    return os.environ.get("DATABASE_URL") or _recorded().get("DATABASE_URL")


def broker_url() -> str | None:
    """Return the Redis broker URL from the environment, else the one ``make run`` recorded."""
    return (
        os.environ.get("CELERY_BROKER_URL")
        or os.environ.get("REDIS_URL")
        or _recorded().get("REDIS_URL")
    )
