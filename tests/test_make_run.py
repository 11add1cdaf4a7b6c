"""``make run`` as it runs: ``python -m devtools.run`` brings the whole back office up and down.

The command runs in a copy of this checkout (its ``.local`` is the copy's, so a developer's own
``make run`` state is never touched), on a fresh database of the test server and a queue of its
own on the test Redis. The test reads the banner as a newcomer would, uses the token it prints
to place an order over HTTP, sees the worker confirm it (web, worker and beat all up), then
presses Ctrl-C and sees every process it started gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import requests
from django.conf import settings

from devtools.ports import free_port
from lab.worker import delete_queue, stop_process_group
from tests.support.worker import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
BANNER = "The order back office is running."
#: What a copy of the checkout leaves out: environments, caches and local state.
NOT_COPIED = shutil.ignore_patterns(
    ".venv", ".local", ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"
)


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    checkout: Path
    output: Path
    base_url: str
    database_url: str

    def text(self) -> str:
        return self.output.read_text(errors="replace")


def server_url(database: str) -> str:
    """Name a database on the test server, as DATABASE_URL does."""
    db = settings.DATABASES["default"]
    auth = str(db.get("USER") or "")
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
    return f"postgres://{auth + '@' if auth else ''}{host}:{port}/{database}"


def admin_sql(statement: str) -> None:
    url = server_url("postgres").replace("postgres://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(statement)


@pytest.fixture
def make_run() -> Iterator[Running]:
    """Start ``python -m devtools.run`` in a copy of the checkout; stop it and clean up after."""
    scratch = Path(tempfile.mkdtemp(prefix="make-run-test-"))
    checkout = scratch / "checkout"
    shutil.copytree(ROOT, checkout, ignore=NOT_COPIED)
    database = f"make_run_{uuid.uuid4().hex[:10]}"
    queue = f"make-run-{uuid.uuid4().hex[:8]}"
    admin_sql(f'CREATE DATABASE "{database}"')
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST", "TEST_", "DJANGO_SETTINGS", "CELERY_"))
    }
    env.update(
        DATABASE_URL=server_url(database),
        REDIS_URL=str(settings.CELERY_BROKER_URL),
        CELERY_QUEUE=queue,
        PORT=str(port),
        DEBUG="true",
    )
    output = scratch / "make-run.log"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "devtools.run"],
            cwd=checkout,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Running(process, checkout, output, f"http://127.0.0.1:{port}", env["DATABASE_URL"])
    try:
        yield running
    finally:
        stop_process_group(process, timeout=30)
        with contextlib.suppress(Exception):
            delete_queue(queue)
        admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(scratch, ignore_errors=True)


def descendants(pid: int) -> list[int]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    return []


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_make_run_serves_the_back_office_and_ctrl_c_stops_everything(make_run: Running) -> None:
    wait_for(
        lambda: BANNER in make_run.text() or make_run.process.poll() is not None,
        timeout=300,
        interval=0.5,
        message="make run's banner",
    )
    text = make_run.text()
    assert make_run.process.poll() is None, text
    token_match = re.search(r"Authorization: Token (\S+)", text)
    assert token_match, text
    api = requests.Session()
    api.headers["Authorization"] = f"Token {token_match[1]}"

    # The servers it used are recorded for manage.py, and the web answers healthy.
    runtime = json.loads((make_run.checkout / ".local" / "runtime.json").read_text())
    assert runtime["DATABASE_URL"] == make_run.database_url
    health = requests.get(f"{make_run.base_url}/api/health/", timeout=30)
    assert health.status_code == 200, health.text

    # The seeded catalogue and the printed token let a client place an order; the worker
    # make run started confirms it.
    products = api.get(f"{make_run.base_url}/api/products/", timeout=30).json()["results"]
    sku = next(p["sku"] for p in products if p["stock_available"] > 0)
    placed = api.post(
        f"{make_run.base_url}/api/orders/",
        json={
            "customer_id": "c-make-run",
            "items": [{"sku": sku, "quantity": 1}],
            "payment_token": "tok_visa",
        },
        timeout=30,
    )
    assert placed.status_code == 202, placed.text
    order_url = placed.headers["Location"]

    def status() -> Any:
        return api.get(order_url, timeout=30).json()["status"]

    wait_for(lambda: status() == "CONFIRMED", timeout=120, message="the order to be confirmed")
    assert re.search(r"^beat\s+\|.*Starting", make_run.text(), re.MULTILINE), make_run.text()

    started = descendants(make_run.process.pid)
    assert started, "make run started no process"
    make_run.process.send_signal(signal.SIGINT)  # Ctrl-C
    code = make_run.process.wait(timeout=120)

    text = make_run.text()
    assert code == 0, text
    for name in ("web", "worker", "beat"):
        assert re.search(rf"^{name}\s+\| stopping", text, re.MULTILINE), text
    assert text.rstrip().endswith("==> stopped"), text[-2000:]
    wait_for(
        lambda: not [pid for pid in started if alive(pid)],
        timeout=30,
        message="every process make run started to be gone",
    )
