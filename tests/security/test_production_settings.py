"""Production settings: `check --deploy` is clean, defaults are safe, the admin's static files
are served with DEBUG off, and local http work keeps working with DEBUG on.

Each case runs Django in a subprocess with the environment a production host would give it
(the test process itself runs with the test settings).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from privacy.kek import new_key

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def production_env(**extra: str) -> dict[str, str]:
    """Return the environment of a production host: DEBUG off, a real secret, one host."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"BACKOFFICE_TESTING", "DJANGO_SETTINGS_MODULE", "CONN_MAX_AGE"}
        and not key.startswith("SECURE_")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="example.com",
        PERSONAL_DATA_KEY=new_key(),
    )
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


SETTINGS_DUMP = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({name: getattr(s, name) for name in (
    "DEBUG", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_HTTPONLY", "X_FRAME_OPTIONS", "SECURE_CONTENT_TYPE_NOSNIFF",
)}))
"""


def test_check_deploy_reports_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues (0 silenced)." in output


def test_production_defaults_are_https_only_with_secure_cookies_and_hsts() -> None:
    result = run_python(SETTINGS_DUMP, production_env())
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values == {
        "DEBUG": False,
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "X_FRAME_OPTIONS": "DENY",
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
    }


def test_debug_keeps_local_http_working() -> None:
    env = production_env(DEBUG="true")
    del env["SECRET_KEY"]  # DEBUG falls back on a development key
    result = run_python(SETTINGS_DUMP, env)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["DEBUG"] is True
    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SESSION_COOKIE_SECURE"] is False
    assert values["CSRF_COOKIE_SECURE"] is False
    assert values["SECURE_HSTS_SECONDS"] == 0


def test_a_missing_secret_key_stops_production_start_up() -> None:
    env = production_env()
    del env["SECRET_KEY"]
    result = run_python("import django; django.setup()", env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_the_environment_can_relax_each_setting() -> None:
    env = production_env(
        SECURE_SSL_REDIRECT="false", SECURE_HSTS_SECONDS="0", SESSION_COOKIE_SECURE="false"
    )
    values = json.loads(run_python(SETTINGS_DUMP, env).stdout.strip().splitlines()[-1])
    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SECURE_HSTS_SECONDS"] == 0
    assert values["SESSION_COOKIE_SECURE"] is False


SERVE_ADMIN = """
import django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="example.com")
plain = client.get("/admin/login/")
assert plain.status_code == 301 and plain["Location"].startswith("https://"), plain
login = client.get("/admin/login/", secure=True)
assert login.status_code == 200, login.status_code
assert login["Strict-Transport-Security"].startswith("max-age=31536000"), login.headers
html = login.content.decode()
start = html.index("/static/admin/css/")
css_url = html[start : html.index('"', start)]
assert css_url != "/static/admin/css/base.css", "not the hashed (manifest) name"
css = client.get(css_url, secure=True)
body = b"".join(css.streaming_content) if css.streaming else css.content
assert css.status_code == 200 and b"{" in body, css.status_code
assert "max-age" in css["Cache-Control"], css.headers
print("served", css_url)
"""


def test_admin_static_files_are_served_by_whitenoise_with_debug_off(tmp_path: Path) -> None:
    env = production_env(STATIC_ROOT=str(tmp_path / "static"))
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert collected.returncode == 0, collected.stderr
    assert (tmp_path / "static" / "staticfiles.json").exists()

    served = run_python(SERVE_ADMIN, env)

    assert served.returncode == 0, served.stdout + served.stderr
    assert "served /static/admin/css/" in served.stdout


def test_debug_comes_from_the_environment_only_never_from_the_runtime_file(
    tmp_path: Path,
) -> None:
    # A checkout where `make run` once ran in debug mode leaves .local/runtime.json behind; a
    # production process started there without DEBUG must still get production settings.
    runtime_file = tmp_path / "runtime.json"
    env = production_env()
    runtime_file.write_text(
        json.dumps(
            {
                "DATABASE_URL": env.pop("DATABASE_URL"),
                "REDIS_URL": env.pop("REDIS_URL"),
                "DEBUG": "true",
            }
        )
    )
    del env["DEBUG"]
    env.pop("CELERY_BROKER_URL", None)
    use_file = (
        "import pathlib\nfrom infrastructure import runtime\n"
        f"runtime.RUNTIME_FILE = pathlib.Path({str(runtime_file)!r})\n"
    )

    with_secret = run_python(use_file + SETTINGS_DUMP, env)
    assert with_secret.returncode == 0, with_secret.stderr
    values = json.loads(with_secret.stdout.strip().splitlines()[-1])
    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["SECURE_SSL_REDIRECT"] is True

    del env["SECRET_KEY"]
    without_secret = run_python(use_file + "import django; django.setup()", env)
    assert without_secret.returncode != 0
    assert "SECRET_KEY must be set" in without_secret.stderr
