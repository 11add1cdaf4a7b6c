"""Celery tasks of the back office: the daily retention purge (sent by beat)."""

from __future__ import annotations

from celery import shared_task

from backoffice.retention import purge_expired


@shared_task(name="backoffice.purge_expired", ignore_result=True)
def purge_expired_task() -> dict[str, int]:
    """Apply the retention settings; a kind that failed fails the task (after the others ran)."""
    summary = purge_expired()
    if not summary.ok:
        raise RuntimeError(f"purge_expired failed for: {', '.join(summary.failed)}")
    return summary.deleted
