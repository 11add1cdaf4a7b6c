"""When each kind of process was last seen working, for ``/api/health/``.

Kept in the shared cache (Redis): a worker marks itself seen when it ends a step attempt or
runs a sweep, at most once per ``MIN_INTERVAL_SECONDS`` per process so the hot path costs
one cache write now and then, not one per step; beat marks itself seen each time it sends
the sweep. A cache that does not answer leaves the time unknown (``None``), never an error.
"""

from __future__ import annotations

import logging
import time

from django.core.cache import cache

logger = logging.getLogger(__name__)

WORKERS = "workers"
BEAT = "beat"
KINDS = (WORKERS, BEAT)
MIN_INTERVAL_SECONDS = 5.0

_last_written: dict[str, float] = {}


def _key(kind: str) -> str:
    return f"heartbeat:{kind}"


def heartbeat(kind: str) -> None:
    """Note that a process of ``kind`` is working now (throttled per process)."""
    now = time.time()
    if now - _last_written.get(kind, 0.0) < MIN_INTERVAL_SECONDS:
        return
    _last_written[kind] = now
    try:
        cache.set(_key(kind), now, timeout=None)
    except Exception:  # a heartbeat must never fail the work it reports (throttled, so not a flood)
        logger.warning("heartbeat %s not recorded", kind, exc_info=True)


def seconds_since_seen() -> dict[str, float | None]:
    """Return, for each kind, the seconds since it was last seen (None: never, or unknown)."""
    try:
        seen = cache.get_many([_key(kind) for kind in KINDS])
    except Exception:
        return dict.fromkeys(KINDS)
    now = time.time()
    return {
        kind: round(max(now - float(seen[_key(kind)]), 0.0), 1) if _key(kind) in seen else None
        for kind in KINDS
    }
