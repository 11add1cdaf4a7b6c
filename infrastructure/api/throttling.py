"""Rate limits that fail open: a broken cache must not turn every request into a 500.

Throttling protects the service; refusing all traffic because Redis restarted would do the
attacker's work for them. When the cache cannot be reached the request is let through and
the failure logged.

Anonymous clients are counted by their real address (:func:`rate_limit_key`): DRF's own
``get_ident`` believes a client-written ``X-Forwarded-For``, so rotating that header would
dodge the limit.
"""

from __future__ import annotations

import logging
from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from infrastructure.client_address import rate_limit_key

logger = logging.getLogger("backoffice.api")


class _ClientThrottle:
    """Count by the real client (through trusted proxies); let requests through if Redis fails."""

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return bool(super().allow_request(request, view))  # type: ignore[misc]
        except Exception:
            logger.warning("throttle cache unavailable; request allowed", exc_info=True)
            return True

    def get_ident(self, request: Request) -> str:
        return rate_limit_key(request)


class AnonThrottle(_ClientThrottle, AnonRateThrottle):
    pass


class UserThrottle(_ClientThrottle, UserRateThrottle):
    pass
