"""Run one pass of the saga sweeper: re-dispatch due, stalled and unsent steps."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from sagas.services import sagas_sweep


class Command(BaseCommand):
    help = (
        "Run one recovery pass: send steps whose backoff has passed (due), time out attempts "
        "past their lease (stalled), re-send steps whose message never ran (unsent) and "
        "steps claimed by a dead process of this host (orphaned); log sagas newly past their "
        "own deadline (overdue)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = sagas_sweep(now=timezone.now())
        self.stdout.write(
            f"due: {result.due}, stalled: {result.stalled}, unsent: {result.unsent}, "
            f"orphaned: {result.orphaned} "
            f"({result.total} sagas re-dispatched); overdue: {result.overdue}"
        )
