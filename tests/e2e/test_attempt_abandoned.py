"""A worker that loses the database after claiming a step hands the claim to its own retry.

A real Celery worker (``tests.e2e.abandoning_worker``: the project's app with one database
failure right after a claim, whose process then stays busy) runs a saga on the test database.
No sweeper and no beat run, so nothing but the retry carrying the abandoned claim's token can
move the saga on before the claim's deadline: the holder is alive in another process, so no
one may take the claim over otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from sagas.models import SagaStepExecution
from sagas.statuses import SagaStatus
from sagas.tests.harness import start, wait_status
from tests.e2e.abandoning_worker import MARKER_ENV, RELEASE_ENV
from tests.support.worker import delete_queue, stop_process_group, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """Name the test database the way DATABASE_URL does (this process's connection)."""
    params = connection.get_connection_params()
    user, host = params.get("user") or "", params.get("host") or "127.0.0.1"
    password = f":{params['password']}" if params.get("password") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{host}:{params.get('port') or 5432}/{params['dbname']}"


@pytest.fixture
def abandoning_worker(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """Run the worker on a queue of this test's own; yield its log file."""
    queue = f"abandon-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": str(settings.CELERY_BROKER_URL),
        "CELERY_QUEUE": queue,
        "CELERY_SKIP_CHECKS": "1",
        "PYTHONUNBUFFERED": "1",
        MARKER_ENV: str(tmp_path / "failed-once"),
        RELEASE_ENV: str(tmp_path / "release"),
    }
    env.pop("TEST_DATABASE_NAME", None)
    command = [
        sys.executable, "-m", "celery", "-A", "tests.e2e.abandoning_worker", "worker",
        "--pool=prefork", "--concurrency=2", "--without-gossip", "--without-mingle",
        "--without-heartbeat", f"--queues={queue}", f"--hostname={queue}@%h", "--loglevel=INFO",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for(
            lambda: " ready." in log.read_text(errors="replace") or process.poll() is not None,
            timeout=60,
            message="the worker to be ready",
        )
        assert process.poll() is None, log.read_text(errors="replace")
        yield log
    finally:
        (tmp_path / "release").touch()
        stop_process_group(process, timeout=15)
        delete_queue(queue)


def test_the_retry_carrying_the_abandoned_claims_token_finishes_the_saga(
    abandoning_worker: Path,
) -> None:
    saga_id = start("test.effects")

    saga = wait_status(
        saga_id,
        SagaStatus.COMPLETED,
        SagaStatus.COMPENSATED,
        SagaStatus.COMPENSATION_FAILED,
        timeout=60,
    )

    log = abandoning_worker.read_text(errors="replace")
    assert saga.status == SagaStatus.COMPLETED, log
    assert "injected database error after the claim" in log
    assert "stays busy after abandoning its attempt" in log  # the task retried
    # Step a's first attempt was abandoned by a live process and taken over by its retry;
    # the retry ran the same attempt (the abandoned one never reached its outcome).
    executions = list(
        SagaStepExecution.objects.filter(saga_id=saga_id, step="a")
        .order_by("at")
        .values_list("status", "attempt", "worker")
    )
    assert [status for status, _, _ in executions] == ["WORKER_LOST", "SUCCEEDED"], log
    assert [attempt for _, attempt, _ in executions] == [1, 1]
    holder, taker = (worker for _, _, worker in executions)
    assert holder.rsplit("/", 1)[1] != taker.rsplit("/", 1)[1], "the retry ran in another process"
    assert set(SagaStepExecution.objects.filter(saga_id=saga_id).values_list("step", "status")) >= {
        ("b", "SUCCEEDED"),
        ("c", "SUCCEEDED"),
        ("d", "SUCCEEDED"),
    }
