"""A worker that loses the database after claiming a step hands the claim to its own retry.

A real Celery worker (``tests.e2e.abandoning_worker``: the project's app with one database
failure right after a claim, whose process then stays busy) runs a saga on the test database.
No sweeper and no beat run, so nothing but the retry carrying the abandoned claim's token can
move the saga on before the claim's lease ends: the holder is alive in another process, so no
one may take the claim over otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sagas.models import SagaStepExecution
from sagas.statuses import SagaStatus
from sagas.tests.harness import start, wait_status
from tests.e2e.abandoning_worker import MARKER_ENV, RELEASE_ENV
from tests.e2e.own_worker import own_worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def abandoning_worker(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """Run the abandoning worker on a queue of this test's own; yield its log file."""
    release = tmp_path / "release"
    with own_worker(
        "tests.e2e.abandoning_worker",
        tmp_path / "worker.log",
        test_settings=settings,
        env={MARKER_ENV: str(tmp_path / "failed-once"), RELEASE_ENV: str(release)},
    ) as worker:
        try:
            yield worker.log_path
        finally:
            release.touch()  # before the worker is stopped: its busy process may finish


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
