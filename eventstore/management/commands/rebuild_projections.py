"""Rebuild read models by replaying the event log, while the system keeps running."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from eventstore.projections import get_projector, projection_rebuild, projectors


class ProgressLine:
    """Show "done/total (percent, rate)" at most twice a second, on one line on a terminal."""

    def __init__(self, name: str, out: OutputWrapper) -> None:
        self.name = name
        self.out = out
        self.started = time.monotonic()
        self.last_shown = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        # Every batch when the output is a log; on a terminal, at most twice a second.
        if self.out.isatty() and not finished and done != 0 and now - self.last_shown < 0.5:
            return
        self.last_shown = now
        pct = 100.0 if total == 0 else 100.0 * done / total
        rate = done / max(now - self.started, 1e-6)
        text = f"{self.name}: {done}/{total} events ({pct:5.1f}%, {rate:,.0f} events/s)"
        if self.out.isatty():
            self.out.write("\r" + text, ending="\n" if finished else "")
        else:
            self.out.write(text)
        self.out.flush()


class Command(BaseCommand):
    help = (
        "Replay the whole event log into a projection's read model (all projections, or "
        "NAME), in short batches beside live traffic: rows behind the log are rewritten, rows "
        "whose stream is gone are removed, rows a live write moved ahead are left alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", nargs="?", help="one projection's name")
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["name"]:
            try:
                projector = get_projector(options["name"])
            except KeyError as exc:
                raise CommandError(str(exc.args[0])) from exc
            if not projector.rebuildable:
                raise CommandError(
                    f"{projector.name} is not rebuildable: its rows record what was done "
                    "(a replay would redo it); run_projections heals a missed event"
                )
            names = [projector.name]
        else:
            names = []
            for projector in projectors():
                if projector.rebuildable:
                    names.append(projector.name)
                else:
                    self.stdout.write(f"{projector.name}: skipped, not rebuildable")
        if not names:
            self.stdout.write("no projections are configured")
            return
        for name in names:
            progress = ProgressLine(name, self.stdout)
            result = projection_rebuild(
                name=name, batch_size=options["batch_size"], progress=progress
            )
            elapsed = time.monotonic() - progress.started
            self.stdout.write(
                self.style.SUCCESS(
                    f"{name}: rebuilt from {result.events} events in {result.batches} batches "
                    f"in {elapsed:.1f}s: {result.written} rows written, {result.unchanged} "
                    f"unchanged, {result.removed} removed"
                )
            )
