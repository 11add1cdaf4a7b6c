"""Mark a saga's failed compensation resolved by hand and let the saga carry on."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sagas.errors import ReasonRequired, SagaNotFound, SagaStateConflict
from sagas.management.commands.retry_saga import command_actor
from sagas.services import saga_skip_compensation


class Command(BaseCommand):
    help = (
        "Skip a COMPENSATION_FAILED saga's failed compensation (its step becomes SKIPPED) and "
        "continue with the compensations before it. A reason is required."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("saga_id", type=UUID, help="the saga's id")
        parser.add_argument("--reason", required=True, help="what was done by hand, and why")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            saga_skip_compensation(
                saga_id=options["saga_id"], actor=command_actor(), reason=options["reason"]
            )
        except (ReasonRequired, SagaNotFound, SagaStateConflict) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"saga {options['saga_id']}: compensation skipped"))
