"""Apply the retention settings: delete what has outlived its use, one kind at a time.

=======================  ===============================================================
``idempotency_records``  the orders API's idempotency records older than
                         ``IDEMPOTENCY_TTL_HOURS`` (they answer no replay any more)
``step_log``             saga attempt-log rows beyond ``SAGA_STEP_LOG_MAX`` per step phase
                         (the first half of the bound and the latest attempts are kept)
``api_tokens``           API tokens past their expiry (they are refused already)
=======================  ===============================================================

Run daily by beat (``backoffice.purge_expired``) and by ``manage.py purge_expired``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.utils import timezone
from knox.models import AuthToken

from backoffice.api_tokens import api_tokens_remove_expired
from orders.idempotency import order_keys
from sagas.recorder import step_logs_trim

logger = logging.getLogger(__name__)


def _idempotency_records(dry_run: bool) -> int:
    return order_keys.purge_expired(dry_run=dry_run)


def _api_tokens(dry_run: bool) -> int:
    now = timezone.now()
    if dry_run:
        return int(AuthToken.objects.filter(expiry__lt=now).count())
    return api_tokens_remove_expired(now=now)


def _step_log(dry_run: bool) -> int:
    return step_logs_trim(dry_run=dry_run)


#: Each kind and how to purge it (given ``dry_run``, it returns the rows it deleted or would).
KINDS: dict[str, Callable[[bool], int]] = {
    "idempotency_records": _idempotency_records,
    "step_log": _step_log,
    "api_tokens": _api_tokens,
}


@dataclass
class PurgeSummary:
    """Say what a purge did: rows per kind, and the kinds that failed (with the error)."""

    dry_run: bool
    deleted: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def purge_expired(*, dry_run: bool = False) -> PurgeSummary:
    """Purge every kind, each in its own statement; a kind that fails does not stop the rest."""
    summary = PurgeSummary(dry_run=dry_run)
    for kind, purge in KINDS.items():
        try:
            summary.deleted[kind] = purge(dry_run)
        except Exception as exc:  # one kind's failure is reported, the others still run
            logger.exception("purge_expired: %s failed", kind)
            summary.failed[kind] = f"{type(exc).__name__}: {exc}"
    logger.info(
        "purge_expired%s: %s%s",
        " (dry run)" if dry_run else "",
        ", ".join(f"{kind} {count}" for kind, count in summary.deleted.items()) or "nothing",
        f"; failed: {', '.join(summary.failed)}" if summary.failed else "",
    )
    return summary
