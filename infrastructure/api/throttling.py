"""Rate limits: DRF's throttle classes and rates, counted by ``limits`` in Redis; fail open.

DRF's own throttles keep each client's request timestamps as one pickled list in the cache
and read and rewrite all of it on every request: a client at 6000/min carries a list of up
to 6000 floats through two cache round trips per request, so the cost grows with the very
rate being limited. ``limits``' sliding-window counter keeps two counters per client and
updates them in one Redis script call, whatever the rate. It approximates the sliding log
(the previous window's count is weighted by how much of it still overlaps), which is the
trade every large rate limiter makes.

Throttling protects the service; refusing all traffic because Redis restarted would do the
attacker's work for them. When Redis cannot be reached the request is let through and the
failure logged.

Anonymous clients are counted by their real address (:func:`rate_limit_key`): DRF's own
``get_ident`` believes a client-written ``X-Forwarded-For``, so rotating that header would
dodge the limit.
"""

from __future__ import annotations

import logging
import math
import time
from functools import cache
from typing import Any

from django.conf import settings
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from rest_framework.request import Request
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

from infrastructure.client_address import rate_limit_key

logger = logging.getLogger("backoffice.api")


@cache
def _limiter(location: str, prefix: str) -> SlidingWindowCounterRateLimiter:
    # One storage (one connection pool) per cache location and key prefix, per process;
    # redis-py's pool starts afresh in a forked child. Short timeouts as for the cache: a
    # Redis that does not answer is treated as absent, not waited for.
    storage = RedisStorage(
        location,
        key_prefix=f"{prefix}:throttle",
        wrap_exceptions=True,
        socket_timeout=1,
        socket_connect_timeout=1,
    )
    return SlidingWindowCounterRateLimiter(storage)


def _counter() -> SlidingWindowCounterRateLimiter:
    # Where the cache lives and its key prefix, read per call: a test (or a deployment
    # sharing one Redis) that changes the prefix gets counts of its own.
    config = settings.CACHES["default"]
    return _limiter(str(config["LOCATION"]), str(config.get("KEY_PREFIX", "")))


class _CountedInRedis(SimpleRateThrottle):
    """DRF's rate and cache key (from the scope's class), counted by ``limits``; the client
    by its real address, through trusted proxies only."""

    num_requests: int
    duration: int

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        self._item: RateLimitItem = RateLimitItemPerSecond(self.num_requests, self.duration)
        self._key = key
        try:
            return _counter().hit(self._item, key)
        except Exception:
            logger.warning("throttle counter unavailable; request allowed", exc_info=True)
            return True

    def get_ident(self, request: Request) -> str:
        return rate_limit_key(request)

    def wait(self) -> float | None:
        """Seconds until the client may send again (the ``Retry-After`` header)."""
        try:
            stats = _counter().get_window_stats(self._item, self._key)
        except Exception:
            return None
        return max(1.0, math.ceil(stats.reset_time - time.time()))


class AnonThrottle(_CountedInRedis, AnonRateThrottle):
    """Anonymous requests, per client address (DRF's ``anon`` rate)."""


class UserThrottle(_CountedInRedis, UserRateThrottle):
    """Authenticated requests, per user (DRF's ``user`` rate)."""
