"""API tokens: only a digest is stored, each token is shown once, expires, and can be revoked.

Every case goes through the real API (a token in the ``Authorization: Token <key>`` header)
and the real admin pages; the rows are read back from PostgreSQL.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from backoffice.api_tokens import migrate_plaintext_tokens
from tests.factories import make_user

pytestmark = pytest.mark.django_db

PRODUCTS = "/api/products/"


def create_token(username: str, *args: str) -> str:
    out = StringIO()
    call_command("create_api_token", username, *args, stdout=out)
    return out.getvalue().splitlines()[-1]


def get_with(token: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.get(PRODUCTS).status_code


def table_text(table: str) -> str:
    """Return every column of every row of ``table`` as text (what a database dump shows)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT t::text FROM {connection.ops.quote_name(table)} AS t")
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_database_holds_only_a_digest_of_a_token() -> None:
    user = make_user()

    token = create_token(user.username)

    stored = table_text(AuthToken._meta.db_table)
    assert token not in stored
    assert hashlib.sha512(token.encode()).hexdigest() in stored
    assert "authtoken_token" not in connection.introspection.table_names()
    assert get_with(token) == 200


def test_create_api_token_prints_a_new_token_each_time_and_both_work_until_revoked() -> None:
    user = make_user()

    first = create_token(user.username)
    second = create_token(user.username)

    assert first != second
    assert get_with(first) == 200
    assert get_with(second) == 200


def test_create_api_token_replace_rotates_the_users_tokens() -> None:
    user = make_user()
    old = create_token(user.username)

    new = create_token(user.username, "--replace")

    assert get_with(old) == 401
    assert get_with(new) == 200


def test_a_token_expires_after_its_lifetime(settings) -> None:
    user = make_user()
    token = create_token(user.username, "--expires-in-days", "1")
    assert get_with(token) == 200
    row = AuthToken.objects.get(user=user)
    assert row.expiry is not None
    assert timedelta(hours=23) < row.expiry - timezone.now() <= timedelta(days=1)

    AuthToken.objects.filter(user=user).update(expiry=timezone.now() - timedelta(seconds=1))

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.get(PRODUCTS)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}


def test_tokens_expire_by_default() -> None:
    user = make_user()

    create_token(user.username)

    assert AuthToken.objects.get(user=user).expiry is not None


def test_a_token_revoked_by_command_gets_401() -> None:
    user = make_user()
    other = make_user()
    token = create_token(user.username)
    kept = create_token(other.username)
    out = StringIO()

    call_command("revoke_api_tokens", user.username, stdout=out)

    assert get_with(token) == 401
    assert get_with(kept) == 200
    assert "Revoked 1 API token(s)" in out.getvalue()


def test_revoke_api_tokens_expired_removes_only_expired_ones() -> None:
    user = make_user()
    live = create_token(user.username)
    create_token(user.username)
    newest = AuthToken.objects.filter(user=user).order_by("-created").first()
    assert newest is not None
    AuthToken.objects.filter(pk=newest.pk).update(expiry=timezone.now() - timedelta(seconds=1))

    call_command("revoke_api_tokens", "--expired", stdout=StringIO())

    assert AuthToken.objects.filter(user=user).count() == 1
    assert get_with(live) == 200


def superuser_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("tokens-root", "r@example.test", "pw"))
    return client


def test_the_admin_never_shows_a_token() -> None:
    user = make_user()
    token = create_token(user.username)
    row = AuthToken.objects.get(user=user)
    admin = superuser_client()

    listing = admin.get("/admin/knox/authtoken/")
    detail = admin.get(f"/admin/knox/authtoken/{row.pk}/change/")

    assert listing.status_code == 200 and detail.status_code == 200
    for page in (listing, detail):
        html = page.content.decode()
        assert user.username in html
        # Neither the token nor the part of it knox keeps as a lookup key.
        assert token not in html
        assert token[:15] not in html


def test_a_token_added_in_the_admin_is_shown_once_and_works() -> None:
    user = make_user()
    admin = superuser_client()

    added = admin.post(
        "/admin/knox/authtoken/add/", {"user": user.pk, "expires_in_days": 30}, follow=True
    )

    assert added.status_code == 200
    messages = [str(m) for m in added.context["messages"]]
    shown = [m.rsplit(" ", 1)[-1] for m in messages if "shown once" in m]
    assert len(shown) == 1, messages
    token = shown[0]
    assert get_with(token) == 200
    assert token not in admin.get("/admin/knox/authtoken/").content.decode()


def test_a_token_deleted_in_the_admin_gets_401() -> None:
    user = make_user()
    token = create_token(user.username)
    row = AuthToken.objects.get(user=user)

    deleted = superuser_client().post(
        f"/admin/knox/authtoken/{row.pk}/delete/", {"post": "yes"}, follow=True
    )

    assert deleted.status_code == 200
    assert get_with(token) == 401


def test_the_admin_cannot_edit_a_token() -> None:
    user = make_user()
    create_token(user.username)
    row = AuthToken.objects.get(user=user)
    other = make_user()

    superuser_client().post(
        f"/admin/knox/authtoken/{row.pk}/change/", {"user": other.pk, "expires_in_days": 999}
    )

    row.refresh_from_db()
    assert row.user == user


def test_plaintext_tokens_of_the_old_table_are_hashed_in_place_and_the_table_dropped() -> None:
    # The table rest_framework.authtoken kept, as an upgraded database still has it.
    user = make_user()
    old_key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamptz "
            "NOT NULL, user_id integer NOT NULL UNIQUE)"
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, now(), %s)", [old_key, user.pk])

    moved = migrate_plaintext_tokens(connection)

    assert moved == 1
    assert "authtoken_token" not in connection.introspection.table_names()
    assert old_key not in table_text(AuthToken._meta.db_table)
    row = AuthToken.objects.get(user=user)
    assert row.expiry is not None and row.expiry > timezone.now()
    assert get_with(old_key) == 200
