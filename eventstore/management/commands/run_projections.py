"""Catch every projection up with the event log (what Celery beat does every few seconds)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from eventstore.projections import get_projector, projection_catch_up, projectors


class Command(BaseCommand):
    help = "Apply the events after each projection's checkpoint (all projections, or NAME)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", nargs="?", help="one projection's name")
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args: Any, **options: Any) -> None:
        names = (
            [get_projector(options["name"]).name]
            if options["name"]
            else [p.name for p in projectors()]
        )
        for name in names:
            result = projection_catch_up(name=name, batch_size=options["batch_size"])
            if result.skipped_busy:
                self.stdout.write(f"{name}: another runner is busy with it; skipped")
            else:
                self.stdout.write(
                    f"{name}: applied {result.events} events in {result.batches} batches; "
                    f"checkpoint ({result.checkpoint.transaction_id}, {result.checkpoint.position})"
                )
