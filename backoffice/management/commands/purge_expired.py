"""Apply the retention settings now: what beat's daily ``backoffice.purge_expired`` does."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backoffice.retention import purge_expired


class Command(BaseCommand):
    help = (
        "Delete expired idempotency records (IDEMPOTENCY_TTL_HOURS), saga attempt-log rows "
        "beyond SAGA_STEP_LOG_MAX, and expired API tokens; print how many per kind. Exits "
        "non-zero when a kind failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        summary = purge_expired(dry_run=options["dry_run"])
        verb = "would delete" if summary.dry_run else "deleted"
        for kind, count in summary.deleted.items():
            self.stdout.write(f"{kind}: {verb} {count}")
        for kind, error in summary.failed.items():
            self.stderr.write(f"{kind}: failed: {error}")
        if not summary.ok:
            raise CommandError(f"purge failed for: {', '.join(summary.failed)}")
