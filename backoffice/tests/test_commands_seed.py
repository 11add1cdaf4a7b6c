"""The operator commands seed_demo and create_api_token."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from urllib.parse import quote
from uuid import uuid4

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from knox.crypto import hash_token
from knox.models import AuthToken

from devtools.run import seed_arguments
from inventory.models import Product
from inventory.services import reservation_commit, reservation_reserve

ROOT = Path(__file__).resolve().parents[2]


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def snapshot() -> dict[str, object]:
    return {
        "products": list(
            Product.objects.order_by("sku").values_list(
                "sku", "name", "price", "stock_on_hand", "stock_reserved", "updated_at"
            )
        ),
        "users": list(
            User.objects.order_by("username").values_list(
                "username", "password", "is_staff", "is_superuser"
            )
        ),
        "tokens": list(
            AuthToken.objects.order_by("digest").values_list("digest", "user__username")
        ),
    }


# --- seed_demo -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def debug_on(settings) -> None:
    # pytest-django turns DEBUG off; seed_demo is a development tool, so these tests run it as
    # development does unless they say otherwise.
    settings.DEBUG = True


@pytest.mark.django_db
def test_seed_demo_creates_the_catalogue_the_admin_and_the_api_client() -> None:
    output = seed("--admin-password", "s3cret-demo")

    products = list(Product.objects.all())
    assert len(products) >= 12
    assert {f"SKU-{n}" for n in range(1, 13)} <= {p.sku for p in products}
    assert all(50 <= p.stock_on_hand <= 500 and p.stock_reserved == 0 for p in products)
    assert all(p.name and p.price > 0 for p in products)
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.is_active
    assert admin.check_password("s3cret-demo")
    client = User.objects.get(username="demo-client")
    assert not client.is_staff and not client.is_superuser
    assert not client.has_usable_password()
    # Its token is issued by create_api_token: one made here could never be shown.
    assert not AuthToken.objects.filter(user=client).exists()
    assert "12 product(s) added" in output
    assert "Superuser 'admin': created" in output
    assert "API client 'demo-client': created" in output
    assert "s3cret-demo" not in output


@pytest.mark.django_db
def test_make_runs_seed_line_takes_a_generated_password_that_starts_with_a_dash() -> None:
    # secrets.token_urlsafe starts with "-" one time in 64; as a separate argument argparse
    # took it for an option and make run stopped at the seed.
    command, *arguments = seed_arguments("-Zq3_generated-pw")
    assert command == "seed_demo"

    seed(*arguments)

    assert User.objects.get(username="admin").check_password("-Zq3_generated-pw")


@pytest.mark.django_db
def test_seed_demo_twice_changes_nothing_even_after_stock_moved() -> None:
    seed("--admin-password", "s3cret-demo")
    order_id = uuid4()
    reservation_reserve(order_id=order_id, lines=[("SKU-1", 7), ("SKU-2", 3)], idempotency_key="r")
    reservation_commit(order_id=order_id, idempotency_key="c")
    reservation_reserve(order_id=uuid4(), lines=[("SKU-1", 2)], idempotency_key="r2")
    before = snapshot()

    output = seed("--admin-password", "s3cret-demo")

    assert snapshot() == before
    assert "0 product(s) added; 12 already present" in output
    assert "Superuser 'admin': already present; left as it is" in output
    assert "API client 'demo-client': already present" in output


@pytest.mark.django_db
def test_seed_demo_generates_and_prints_a_password_in_debug(settings, monkeypatch) -> None:
    settings.DEBUG = True
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)

    output = seed()

    line = next(line for line in output.splitlines() if "generated password" in line)
    password = line.split(":")[-1].strip()
    assert len(password) >= 12
    assert User.objects.get(username="admin").check_password(password)


@pytest.mark.django_db
def test_seed_demo_takes_the_password_from_the_environment_in_debug(settings, monkeypatch) -> None:
    settings.DEBUG = True
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "from-the-env")

    output = seed()

    assert User.objects.get(username="admin").check_password("from-the-env")
    assert "from-the-env" not in output


@pytest.mark.django_db
def test_seed_demo_refuses_to_run_without_debug_unless_forced(settings, monkeypatch) -> None:
    settings.DEBUG = False
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)

    with pytest.raises(CommandError, match="--force"):
        seed("--admin-password", "chosen-for-prod")

    assert not User.objects.exists()
    assert not Product.objects.exists()
    assert not AuthToken.objects.exists()


@pytest.mark.django_db
def test_seed_demo_forced_without_debug_refuses_a_demo_password(settings, monkeypatch) -> None:
    settings.DEBUG = False
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)

    with pytest.raises(CommandError, match="--admin-password"):
        seed("--force")
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "from-the-env")
    with pytest.raises(CommandError, match="DEMO_ADMIN_PASSWORD"):
        seed("--force")

    assert not User.objects.exists()
    assert not Product.objects.exists()


@pytest.mark.django_db
def test_seed_demo_forced_without_debug_creates_the_missing_admin(settings, monkeypatch) -> None:
    settings.DEBUG = False
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)

    output = seed("--force", "--admin-password", "chosen-for-prod")
    # Later runs without a password leave the admin's alone.
    seed("--force")

    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("chosen-for-prod")
    assert "Superuser 'admin': created" in output


@pytest.mark.django_db
def test_seed_demo_never_changes_the_password_of_an_existing_admin(monkeypatch) -> None:
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)
    seed("--admin-password", "first-password")
    hashed = User.objects.get(username="admin").password

    output = seed("--admin-password", "second-password")

    assert User.objects.get(username="admin").password == hashed
    assert "Superuser 'admin': already present; left as it is" in output


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.django_db
def test_seed_demo_leaves_an_existing_admin_account_alone(settings, debug) -> None:
    # An account named admin that staff demoted or disabled on purpose: seeding must not
    # make it a superuser again, nor reset its password.
    User.objects.create_user("admin", password="theirs", is_active=False)
    before = User.objects.filter(username="admin").values().get()
    settings.DEBUG = debug

    output = seed("--force", "--admin-password", "new-password")

    assert User.objects.filter(username="admin").values().get() == before
    admin = User.objects.get(username="admin")
    assert not (admin.is_superuser or admin.is_staff or admin.is_active)
    assert admin.check_password("theirs")
    assert "Superuser 'admin': already present; left as it is" in output


# --- create_api_token ------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_api_token_issues_a_token_and_prints_it_alone_on_the_last_line() -> None:
    user = User.objects.create_user("alice")
    out = StringIO()

    call_command("create_api_token", "alice", stdout=out)

    token = out.getvalue().splitlines()[-1]
    (row,) = AuthToken.objects.filter(user=user)
    assert row.digest == hash_token(token)


@pytest.mark.django_db
def test_create_api_token_issues_a_new_token_each_time() -> None:
    user = User.objects.create_user("alice")
    printed = []
    for _ in range(2):
        out = StringIO()
        call_command("create_api_token", "alice", stdout=out)
        printed.append(out.getvalue().splitlines()[-1])

    assert printed[0] != printed[1]
    assert set(AuthToken.objects.filter(user=user).values_list("digest", flat=True)) == {
        hash_token(token) for token in printed
    }


@pytest.mark.django_db
def test_create_api_token_refuses_an_unknown_user() -> None:
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("create_api_token", "nobody", stdout=StringIO())

    assert not AuthToken.objects.exists()


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    """Run manage.py in a child process on this test database."""
    db = connection.settings_dict
    user = quote(str(db.get("USER") or ""), safe="")
    password = quote(str(db.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    url = f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.test_settings"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.django_db(transaction=True)
def test_create_api_token_from_the_shell_prints_the_key_last_and_exits_0() -> None:
    user = User.objects.create_user("demo-shell")

    done = manage("create_api_token", "demo-shell")

    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert AuthToken.objects.get(user=user).digest == hash_token(token)


@pytest.mark.django_db(transaction=True)
def test_create_api_token_from_the_shell_for_an_unknown_user_exits_1() -> None:
    done = manage("create_api_token", "nobody")

    assert done.returncode == 1
    assert "No user named 'nobody'" in done.stderr
    assert done.stdout == ""
