"""Resume a COMPENSATION_FAILED saga at its failed compensation (what the admin's retry does)."""

from __future__ import annotations

import getpass
from typing import Any
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sagas.errors import SagaNotFound, SagaStateConflict
from sagas.services import saga_retry


def command_actor() -> str:
    """Name the operator running a command, for the saga's record of operator actions."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


class Command(BaseCommand):
    help = "Retry a saga's failed compensation (the saga must be COMPENSATION_FAILED)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("saga_id", type=UUID, help="the saga's id")
        parser.add_argument("--reason", default="", help="why (recorded with the action)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            saga_retry(saga_id=options["saga_id"], actor=command_actor(), reason=options["reason"])
        except (SagaNotFound, SagaStateConflict) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"saga {options['saga_id']}: compensation retried"))
