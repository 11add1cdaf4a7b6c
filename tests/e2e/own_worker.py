"""Start a real Celery worker of a test's own: its app module, its queue, its environment.

The session's ``live_worker`` runs the project's app unchanged; a test that needs the worker
to misbehave in one precise way (``tests.e2e.abandoning_worker``, ``tests.e2e.stubborn_worker``)
starts its own here, on the test database and a queue nobody else reads, and stops it after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from lab.worker import database_url, delete_queue, stop_process_group
from tests.support.worker import wait_for

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class OwnWorker:
    queue: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def own_worker(
    app: str,
    log_path: Path,
    *,
    test_settings: Any,
    env: Mapping[str, str] | None = None,
    concurrency: int = 2,
) -> Iterator[OwnWorker]:
    """Run ``celery -A app worker`` on a fresh queue, the test's messages sent to it."""
    queue = f"own-{uuid.uuid4().hex[:8]}"
    test_settings.CELERY_TASK_DEFAULT_QUEUE = queue
    test_settings.SAGA_QUEUE_ROUTES = {}
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DATABASE_URL": database_url(connection.settings_dict),
        "CELERY_BROKER_URL": str(settings.CELERY_BROKER_URL),
        "CELERY_QUEUE": queue,
        "CELERY_SKIP_CHECKS": "1",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    environment.pop("TEST_DATABASE_NAME", None)
    command = [
        sys.executable, "-m", "celery", "-A", app, "worker",
        "--pool=prefork", f"--concurrency={concurrency}", "--without-gossip",
        "--without-mingle", "--without-heartbeat", f"--queues={queue}",
        f"--hostname={queue}@%h", "--loglevel=INFO",
    ]  # fmt: skip
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = OwnWorker(queue, log_path)
    try:
        wait_for(
            lambda: " ready." in worker.log() or process.poll() is not None,
            timeout=60,
            message="the worker to be ready",
        )
        assert process.poll() is None, worker.log()
        yield worker
    finally:
        stop_process_group(process, timeout=15)
        delete_queue(queue)
