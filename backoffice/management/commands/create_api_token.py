"""Issue a new API token for a user and print it alone on the last line (shown only now)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from backoffice.api_tokens import api_token_create


class Command(BaseCommand):
    help = (
        "Issue a new API token for USERNAME (header 'Authorization: Token <token>') and print "
        "it alone on the last line, for scripts. Only its digest is stored: it cannot be shown "
        "again. --replace revokes the user's other tokens (rotation)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="the user the token authenticates as")
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=None,
            help="the token's lifetime (default: API_TOKEN_TTL_DAYS, 90)",
        )
        parser.add_argument(
            "--replace",
            action="store_true",
            help="revoke the user's other tokens in the same step",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        days: int | None = options["expires_in_days"]
        if days is not None and not 1 <= days <= 3650:
            raise CommandError("--expires-in-days must be between 1 and 3650.")
        user_model = get_user_model()
        user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        row, token = api_token_create(
            user=user,
            expires_in=timedelta(days=days) if days is not None else None,
            replace=options["replace"],
        )
        if not user.is_active:
            self.stderr.write(
                f"Warning: {username!r} is inactive; the API refuses its token until it is "
                "activated."
            )
        replaced = " (its other tokens revoked)" if options["replace"] else ""
        self.stdout.write(
            f"New API token of {username!r}{replaced}, expires {row.expiry:%Y-%m-%d %H:%M} UTC; "
            "shown only now:"
        )
        self.stdout.write(token)
