"""Issue, revoke and list the API's tokens; the staff page for them.

Tokens are django-rest-knox's: the database keeps a SHA-512 digest and the first 15
characters knox looks rows up by, never the token. A token is therefore shown once, when it is
issued (by ``create_api_token`` or the admin's add page), and every token has an expiry
(``API_TOKEN_TTL_DAYS``). Rotating is issuing a new token and revoking the old ones
(``create_api_token --replace`` does both at once).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest
from django.utils import timezone
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS

OLD_TOKEN_TABLE = "authtoken_token"  # noqa: S105 (a table name)


def api_token_create(
    *, user: AbstractBaseUser, expires_in: timedelta | None = None, replace: bool = False
) -> tuple[AuthToken, str]:
    """Issue a token for ``user``; return its row and the token (the only time it is readable).

    ``replace`` revokes the user's other tokens in the same transaction (rotation).
    """
    lifetime = expires_in or timedelta(days=settings.API_TOKEN_TTL_DAYS)
    with transaction.atomic():
        if replace:
            AuthToken.objects.filter(user=user).delete()
        row, token = AuthToken.objects.create(user=user, expiry=lifetime)
    return row, str(token)


def api_token_revoke(*, row: AuthToken) -> None:
    """Revoke one token (a temporary one, such as ``place_orders --user`` issues)."""
    AuthToken.objects.filter(pk=row.pk).delete()


def api_tokens_revoke(*, user: AbstractBaseUser) -> int:
    """Revoke every token of ``user``; return how many there were."""
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return deleted


def api_tokens_remove_expired(*, now: datetime) -> int:
    """Delete tokens whose expiry has passed (they are refused already); return how many."""
    deleted, _ = AuthToken.objects.filter(expiry__lt=now).delete()
    return deleted


def migrate_plaintext_tokens(connection: BaseDatabaseWrapper) -> int:
    """Move rest_framework.authtoken's clear keys to digests, then drop their table.

    Each old key becomes a knox token with the same value (its digest is stored), so clients
    keep working; it expires ``API_TOKEN_TTL_DAYS`` from now, like a new one. Returns how many
    were moved; a database that never had the old table is left as it is.
    """
    if OLD_TOKEN_TABLE not in connection.introspection.table_names():
        return 0
    expiry = timezone.now() + timedelta(days=settings.API_TOKEN_TTL_DAYS)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id FROM {OLD_TOKEN_TABLE}")  # noqa: S608
        rows = cursor.fetchall()
        for key, user_id in rows:
            cursor.execute(
                f"INSERT INTO {AuthToken._meta.db_table} "  # noqa: S608
                "(digest, token_key, user_id, created, expiry) VALUES (%s, %s, %s, now(), %s)",
                [hash_token(key), key[: CONSTANTS.TOKEN_KEY_LENGTH], user_id, expiry],
            )
        cursor.execute(f"DROP TABLE {OLD_TOKEN_TABLE}")
        # The app is gone from INSTALLED_APPS: forget its migrations, so the record matches.
        cursor.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")
    return len(rows)


# --- the admin page -----------------------------------------------------------------------------


class ApiTokenAddForm(forms.ModelForm):
    """Pick the user and the lifetime; the token itself is made on save."""

    expires_in_days = forms.IntegerField(min_value=1, max_value=3650)

    class Meta:
        model = AuthToken
        fields = ("user",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["expires_in_days"].initial = settings.API_TOKEN_TTL_DAYS


class ApiTokenAdmin(admin.ModelAdmin):
    """List tokens by user and expiry; add (shown once), revoke (delete); never edit or show."""

    list_display = ("user", "created", "expiry", "expired")
    list_filter = ("created", "expiry")
    search_fields = ("user__username",)
    ordering = ("-created",)
    raw_id_fields = ("user",)
    # Only what says whose token it is and how long it lives: neither the digest nor the
    # token_key (the token's first characters) is shown.
    readonly_fields = ("user", "created", "expiry")
    fields = ("user", "created", "expiry")

    @admin.display(boolean=True, description="expired")
    def expired(self, obj: AuthToken) -> bool:
        return obj.expiry is not None and obj.expiry < timezone.now()

    def get_form(
        self,
        request: HttpRequest,
        obj: AuthToken | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> type[forms.ModelForm]:
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
            kwargs["fields"] = ("user", "expires_in_days")
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: AuthToken | None = None) -> Any:
        return ("user", "expires_in_days") if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: AuthToken | None = None) -> Any:
        return () if obj is None else self.readonly_fields

    def has_change_permission(self, request: HttpRequest, obj: AuthToken | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: AuthToken, form: Any, change: bool) -> None:
        row, token = api_token_create(
            user=obj.user, expires_in=timedelta(days=form.cleaned_data["expires_in_days"])
        )
        # The admin's "added" message, its log entry and its redirect name the row just made.
        obj.pk = row.pk
        self.message_user(
            request,
            f"API token for {obj.user} (shown once: copy it now, only its digest is kept): {token}",
            messages.WARNING,
        )


def register_admin() -> None:
    """Put this page in place of knox's own (which lists digests and edits them)."""
    if admin.site.is_registered(AuthToken):
        admin.site.unregister(AuthToken)
    admin.site.register(AuthToken, ApiTokenAdmin)
