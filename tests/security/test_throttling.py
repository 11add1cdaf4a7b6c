"""Brute force and floods: the admin login locks a username out per address, and the API's
rate limits are on by default (both counted in the shared Redis cache).

Each test counts in cache keys of its own (a fresh key prefix): other test runs share the
Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from infrastructure.api.throttling import AnonThrottle, UserThrottle
from tests.factories import api_client, make_user
from tests.support.worker import wait_for

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def own_cache_keys(settings: Any) -> None:
    caches = {name: dict(config) for name, config in settings.CACHES.items()}
    caches["default"]["KEY_PREFIX"] = f"throttle-test-{uuid.uuid4().hex}"
    settings.CACHES = caches


@pytest.fixture
def staff() -> User:
    return User.objects.create_user(
        f"op-{uuid.uuid4().hex[:8]}", password="right-password-1", is_staff=True
    )


def attempt(user: User, password: str, address: str = "203.0.113.7") -> Any:
    client = Client(REMOTE_ADDR=address)
    return client.post(LOGIN, {"username": user.username, "password": password, "next": "/admin/"})


def logged_in(response: Any) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


# --- admin login ---------------------------------------------------------------------------------


def test_failures_up_to_the_limit_get_the_usual_form_error(staff) -> None:
    for _ in range(django_settings.ADMIN_LOGIN_MAX_FAILURES):
        response = attempt(staff, "wrong")
        assert response.status_code == 200
        assert b"Please enter the correct username and password" in response.content


def test_after_the_limit_even_the_right_password_is_refused_with_429(staff) -> None:
    for _ in range(django_settings.ADMIN_LOGIN_MAX_FAILURES):
        attempt(staff, "wrong")

    response = attempt(staff, "right-password-1")

    assert response.status_code == 429
    assert response["Retry-After"] == str(django_settings.ADMIN_LOGIN_LOCKOUT_SECONDS)
    assert b"Too many failed logins" in response.content
    assert "_auth_user_id" not in response.wsgi_request.session


def test_the_lockout_is_per_address_so_others_cannot_lock_staff_out(staff) -> None:
    for _ in range(django_settings.ADMIN_LOGIN_MAX_FAILURES):
        attempt(staff, "wrong", address="198.51.100.66")

    assert attempt(staff, "wrong", address="198.51.100.66").status_code == 429
    assert logged_in(attempt(staff, "right-password-1", address="203.0.113.7"))


def test_the_lockout_is_per_username(staff) -> None:
    other = User.objects.create_user(
        f"op-{uuid.uuid4().hex[:8]}", password="other-password-1", is_staff=True
    )
    for _ in range(django_settings.ADMIN_LOGIN_MAX_FAILURES):
        attempt(staff, "wrong")

    assert logged_in(attempt(other, "other-password-1"))


def test_a_successful_login_clears_the_count(staff) -> None:
    for _ in range(django_settings.ADMIN_LOGIN_MAX_FAILURES - 1):
        attempt(staff, "wrong")
    assert logged_in(attempt(staff, "right-password-1"))

    for _ in range(django_settings.ADMIN_LOGIN_MAX_FAILURES - 1):
        assert attempt(staff, "wrong").status_code == 200
    assert logged_in(attempt(staff, "right-password-1"))


def test_the_lockout_ends_when_its_window_passes(staff, settings) -> None:
    settings.ADMIN_LOGIN_LOCKOUT_SECONDS = 1
    for _ in range(settings.ADMIN_LOGIN_MAX_FAILURES):
        attempt(staff, "wrong")
    assert attempt(staff, "right-password-1").status_code == 429

    wait_for(
        lambda: logged_in(attempt(staff, "right-password-1")),
        timeout=10,
        interval=0.25,
        message="the lockout to expire",
    )


def test_a_cache_that_does_not_answer_lets_logins_through(staff, settings) -> None:
    caches = {name: dict(config) for name, config in settings.CACHES.items()}
    caches["default"]["LOCATION"] = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.CACHES = caches

    assert attempt(staff, "wrong").status_code == 200
    assert logged_in(attempt(staff, "right-password-1"))


# --- API rate limits -----------------------------------------------------------------------------


def test_api_throttling_is_on_by_default() -> None:
    rest = django_settings.REST_FRAMEWORK
    assert rest["DEFAULT_THROTTLE_CLASSES"] == [
        "infrastructure.api.throttling.AnonThrottle",
        "infrastructure.api.throttling.UserThrottle",
    ]


def in_fresh_process(code: str, **env: str) -> str:
    """Run ``code`` after Django's setup in a new interpreter (settings read afresh)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("API_THROTTLE_")}
    clean.update(env, DJANGO_SETTINGS_MODULE="config.test_settings")
    result = subprocess.run(
        [sys.executable, "-c", f"import django\ndjango.setup()\n{code}"],
        env=clean,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


RATES = "from django.conf import settings; print(settings.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'])"


def test_the_rates_default_to_the_readmes_figures() -> None:
    assert in_fresh_process(RATES) == str({"anon": "120/min", "user": "6000/min"})


def test_the_rates_are_read_from_the_environment() -> None:
    rates = in_fresh_process(RATES, API_THROTTLE_ANON="7/hour", API_THROTTLE_USER="9/min")

    assert rates == str({"anon": "7/hour", "user": "9/min"})


def test_a_rate_from_the_environment_is_the_one_enforced() -> None:
    # A fresh address: the count lives in the shared cache, under the client's address.
    address = f"198.18.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
    code = (
        "from rest_framework.test import APIClient\n"
        f"client = APIClient(REMOTE_ADDR={address!r})\n"
        # The schema needs no database, so the fresh process needs none either.
        "print([client.get('/api/schema/').status_code for _ in range(4)])"
    )

    assert in_fresh_process(code, API_THROTTLE_ANON="3/hour") == "[200, 200, 200, 429]"


def test_a_client_over_its_rate_gets_a_json_429_with_retry_after(monkeypatch) -> None:
    monkeypatch.setattr(UserThrottle, "rate", "3/min", raising=False)
    client = api_client(make_user())
    answers = [client.get("/api/products/").status_code for _ in range(3)]

    response = client.get("/api/products/")

    assert answers == [200, 200, 200]
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert response.json()["detail"].startswith("Request was throttled.")
    # Another client has its own count.
    assert api_client(make_user()).get("/api/products/").status_code == 200


def test_anonymous_requests_are_limited_per_address(monkeypatch) -> None:
    monkeypatch.setattr(AnonThrottle, "rate", "2/min", raising=False)
    first = APIClient(REMOTE_ADDR="192.0.2.10")
    answers = [first.get("/api/schema/").status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    assert APIClient(REMOTE_ADDR="192.0.2.11").get("/api/schema/").status_code == 200


def test_a_cache_that_does_not_answer_lets_api_requests_through(monkeypatch, settings) -> None:
    monkeypatch.setattr(UserThrottle, "rate", "1/min", raising=False)
    caches = {name: dict(config) for name, config in settings.CACHES.items()}
    caches["default"]["LOCATION"] = "redis://127.0.0.1:1/0"
    settings.CACHES = caches
    client = api_client(make_user())
    assert [client.get("/api/products/").status_code for _ in range(3)] == [200, 200, 200]


# --- behind a reverse proxy: the real client, and only trusted proxies believed -----------------

PROXY = "10.0.0.5"


def attempt_via(user: User, password: str, *, remote: str, forwarded: str | None = None) -> Any:
    client = (
        Client(REMOTE_ADDR=remote)
        if forwarded is None
        else Client(REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    )
    return client.post(LOGIN, {"username": user.username, "password": password, "next": "/admin/"})


def test_behind_a_trusted_proxy_one_client_cannot_lock_out_another(staff, settings) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    for _ in range(settings.ADMIN_LOGIN_MAX_FAILURES):
        attempt_via(staff, "wrong", remote=PROXY, forwarded="198.51.100.66")

    # The attacker is locked out; staff coming through the same proxy are not.
    assert attempt_via(staff, "wrong", remote=PROXY, forwarded="198.51.100.66").status_code == 429
    assert logged_in(attempt_via(staff, "right-password-1", remote=PROXY, forwarded="203.0.113.7"))


def test_a_forwarded_header_from_an_untrusted_address_is_ignored(staff, settings) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    # A client talking to us directly writes a new X-Forwarded-For on every try.
    for n in range(settings.ADMIN_LOGIN_MAX_FAILURES):
        attempt_via(staff, "wrong", remote="198.51.100.66", forwarded=f"192.0.2.{n + 1}")

    refused = attempt_via(staff, "right-password-1", remote="198.51.100.66", forwarded="192.0.2.99")
    assert refused.status_code == 429


def test_a_client_cannot_pose_as_another_by_prepending_to_the_header(staff, settings) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    # The proxy appends the address it saw; what the client wrote before it is not believed.
    for n in range(settings.ADMIN_LOGIN_MAX_FAILURES):
        attempt_via(staff, "wrong", remote=PROXY, forwarded=f"192.0.2.{n + 1}, 198.51.100.66")

    assert (
        attempt_via(
            staff, "right-password-1", remote=PROXY, forwarded="192.0.2.99, 198.51.100.66"
        ).status_code
        == 429
    )
    assert logged_in(attempt_via(staff, "right-password-1", remote=PROXY, forwarded="192.0.2.1"))


def test_one_address_failing_on_many_usernames_is_refused_for_all(settings) -> None:
    settings.ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS = 6
    users = [
        User.objects.create_user(f"op-{uuid.uuid4().hex[:8]}", password="pw-1", is_staff=True)
        for _ in range(4)
    ]
    for user in users[:3]:
        for _ in range(2):
            assert attempt(user, "wrong", address="198.51.100.66").status_code == 200

    # Six failures from the address, at most two per username: the address is refused.
    assert attempt(users[3], "pw-1", address="198.51.100.66").status_code == 429
    assert logged_in(attempt(users[3], "pw-1", address="203.0.113.7"))


def test_an_ipv6_client_is_counted_by_its_64_network(staff, settings) -> None:
    for n in range(settings.ADMIN_LOGIN_MAX_FAILURES):
        attempt(staff, "wrong", address=f"2001:db8:1:2::{n + 1:x}")

    assert attempt(staff, "right-password-1", address="2001:db8:1:2::ffff").status_code == 429
    assert logged_in(attempt(staff, "right-password-1", address="2001:db8:1:3::1"))


def test_the_anonymous_throttle_ignores_a_forwarded_header_from_an_untrusted_address(
    monkeypatch, settings
) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    monkeypatch.setattr(AnonThrottle, "rate", "2/min", raising=False)
    answers = [
        APIClient(REMOTE_ADDR="192.0.2.20", HTTP_X_FORWARDED_FOR=f"198.18.0.{n}")
        .get("/api/schema/")
        .status_code
        for n in range(1, 4)
    ]
    assert answers == [200, 200, 429]


def test_the_anonymous_throttle_counts_each_client_behind_a_trusted_proxy(
    monkeypatch, settings
) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    monkeypatch.setattr(AnonThrottle, "rate", "2/min", raising=False)

    def via_proxy(forwarded: str) -> int:
        client = APIClient(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded)
        return client.get("/api/schema/").status_code

    # The client varies what it writes before the proxy's entry: still one client.
    answers = [via_proxy(f"198.18.1.{n}, 192.0.2.30") for n in range(1, 4)]
    assert answers == [200, 200, 429]
    assert via_proxy("192.0.2.31") == 200


def test_trusted_proxies_come_from_the_environment() -> None:
    code = "from django.conf import settings; print(settings.TRUSTED_PROXIES)"
    printed = in_fresh_process(code, TRUSTED_PROXIES="10.0.0.0/8, 192.0.2.1,2001:db8::/32")

    assert printed == str(["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"])


def test_a_trusted_proxy_that_is_no_address_stops_start_up() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings"}
    env["TRUSTED_PROXIES"] = "10.0.0.0/8,proxy.internal"
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode != 0
    assert "TRUSTED_PROXIES: not an IP address or CIDR network: 'proxy.internal'" in result.stderr
