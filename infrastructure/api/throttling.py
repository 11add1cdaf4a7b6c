"""Rate limits that fail open: a broken cache must not turn every request into a 500.

Throttling protects the service; refusing all traffic because Redis restarted would do the
attacker's work for them. When the cache cannot be reached the request is let through and
the failure logged.
"""

from __future__ import annotations

import logging
from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

logger = logging.getLogger("backoffice.api")


class _FailOpen:
    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return bool(super().allow_request(request, view))  # type: ignore[misc]
        except Exception:
            logger.warning("throttle cache unavailable; request allowed", exc_info=True)
            return True


class AnonThrottle(_FailOpen, AnonRateThrottle):
    pass


class UserThrottle(_FailOpen, UserRateThrottle):
    pass
