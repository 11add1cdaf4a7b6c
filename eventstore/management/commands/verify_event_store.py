"""Check every stream and projection; exit 1 with a report on any problem."""

import time
from typing import Any

from django.core.management.base import BaseCommand

from eventstore.verify import event_store_verify


class Command(BaseCommand):
    help = (
        "Check every stream (contiguous versions from 1, no duplicate event ids, every event "
        "decodes) and every projection (equal to a fresh replay). Exits 1 on any problem."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        began = time.monotonic()
        report = event_store_verify(progress=self.stdout.write)
        took = time.monotonic() - began
        checked = f"{report.streams} streams, {report.events} events in {took:.1f}s"
        if report.ok:
            self.stdout.write(self.style.SUCCESS(f"event store OK: {checked}"))
            return
        self.stdout.write(f"checked {checked}")
        self.stderr.write(self.style.ERROR(f"{len(report.problems)} problem(s) found:"))
        for problem in report.problems:
            self.stderr.write(f"  - {problem}")
        raise SystemExit(1)
