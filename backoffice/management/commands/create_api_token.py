"""Print a user's API token, creating it if the user has none (the key alone on the last line)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = (
        "Print USERNAME's API token (header 'Authorization: Token <key>'), creating it if "
        "missing. The key is alone on the last line, for scripts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="the user whose token to print")

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        user_model = get_user_model()
        user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        token, created = Token.objects.get_or_create(user=user)
        if not user.is_active:
            self.stderr.write(
                f"Warning: {username!r} is inactive; the API refuses its token until it is "
                "activated."
            )
        self.stdout.write(f"API token of {username!r}{' (created now)' if created else ''}:")
        self.stdout.write(token.key)
