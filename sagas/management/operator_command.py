"""Run an operator action (``sagas.operations``) on one saga from the command line."""

from __future__ import annotations

import getpass
from typing import Any, ClassVar
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sagas.errors import ReasonRequired, SagaNotFound, SagaStateConflict
from sagas.operations import OperatorAction


def command_actor() -> str:
    """Name the operator running a command, for the saga's record of operator actions."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


class OperatorActionCommand(BaseCommand):
    """Take a saga id (and a reason) and run :attr:`action` on it as the shell's user."""

    action: ClassVar[OperatorAction]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = self.action.command_help

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("saga_id", type=UUID, help="the saga's id")
        parser.add_argument(
            "--reason",
            required=self.action.needs_reason,
            default="",
            help=self.action.reason_help,
        )

    def handle(self, *args: Any, **options: Any) -> None:
        saga_id = options["saga_id"]
        try:
            self.action.run(saga_id=saga_id, actor=command_actor(), reason=options["reason"])
        except (ReasonRequired, SagaNotFound, SagaStateConflict) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(self.action.command_done.format(saga_id=saga_id)))
