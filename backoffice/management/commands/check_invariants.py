"""Check that nothing was lost or done twice; exit 1 with a report on any violation."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backoffice.invariants import invariants_check


class Command(BaseCommand):
    help = (
        "Check every invariant: sagas final or waiting for an operator with a recorded error, "
        "no dispatch left unsent, per-order money (charges minus refunds) and stock against "
        "the orders, contiguous streams and projections equal to a replay. Exits 1 on any "
        "violation."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--allow-in-flight",
            action="store_true",
            help="Accept sagas still RUNNING or COMPENSATING (checking during a run).",
        )
        parser.add_argument(
            "--stock-baseline",
            type=Path,
            help="A JSON file {sku: on-hand stock before any order}: also check on-hand stock.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        baseline: dict[str, int] | None = None
        if options["stock_baseline"] is not None:
            try:
                raw = json.loads(options["stock_baseline"].read_text())
                baseline = {str(sku): int(units) for sku, units in raw.items()}
            except (OSError, ValueError, AttributeError) as exc:
                raise CommandError(f"cannot read the stock baseline: {exc}") from exc
        began = time.monotonic()

        def progress(done: int, total: int, name: str) -> None:
            if done < total:
                self.stdout.write(f"checking {done + 1}/{total} {name}")

        report = invariants_check(
            allow_in_flight=options["allow_in_flight"],
            stock_baseline=baseline,
            progress=progress,
        )
        took = f"; {time.monotonic() - began:.1f}s"
        if report.ok:
            self.stdout.write(self.style.SUCCESS(f"invariants hold: {report.summary()}{took}"))
            return
        self.stdout.write(report.summary() + took)
        self.stderr.write(self.style.ERROR(f"{len(report.violations)} violation(s):"))
        for violation in report.violations:
            self.stderr.write(f"  - {violation}")
        raise SystemExit(1)
