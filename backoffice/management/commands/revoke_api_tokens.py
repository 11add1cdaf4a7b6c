"""Revoke API tokens: every token of one user, or the expired tokens of everyone."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from backoffice.api_tokens import api_tokens_remove_expired, api_tokens_revoke


class Command(BaseCommand):
    help = (
        "Revoke every API token of USERNAME (its clients get 401 at once), or with --expired "
        "delete the tokens whose expiry has passed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", nargs="?", help="the user whose tokens to revoke")
        parser.add_argument(
            "--expired", action="store_true", help="delete every expired token instead"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username: str | None = options["username"]
        if options["expired"] == (username is not None):
            raise CommandError("Give either USERNAME or --expired.")
        if options["expired"]:
            removed = api_tokens_remove_expired(now=timezone.now())
            self.stdout.write(f"Removed {removed} expired API token(s).")
            return
        user_model = get_user_model()
        user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        revoked = api_tokens_revoke(user=user)
        self.stdout.write(f"Revoked {revoked} API token(s) of {username!r}.")
