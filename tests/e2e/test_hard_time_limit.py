"""A step that ignores its timeout is killed at the hard time limit, and its saga still finishes.

A real Celery worker whose pool processes ignore the soft time limit
(``tests.e2e.stubborn_worker``) runs a step told to sleep far past its one-second timeout.
The hard limit (``SAGA_HARD_TIME_LIMIT_GRACE_SECONDS`` after the timeout) kills the process;
the attempt is then taken over, as any attempt whose process died, and runs again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest
from django.utils import timezone

from sagas.models import Saga, SagaStepExecution
from sagas.services import sagas_sweep
from sagas.statuses import SagaStatus
from sagas.testing.models import Call
from sagas.tests.harness import start
from tests.e2e.own_worker import own_worker
from tests.support.worker import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


FINAL = {SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.COMPENSATION_FAILED}


def test_a_step_past_its_hard_time_limit_is_killed_and_the_attempt_runs_again(
    settings: Any, tmp_path: Path
) -> None:
    # The sender sets the limits on each message: this process for the first step, the
    # worker for the ones it sends.
    settings.SAGA_HARD_TIME_LIMIT_GRACE_SECONDS = 1
    with own_worker(
        "tests.e2e.stubborn_worker",
        tmp_path / "worker.log",
        test_settings=settings,
        env={"SAGA_HARD_TIME_LIMIT_GRACE_SECONDS": "1"},
    ) as worker:
        saga_id = start("test.timeout", {"sleep_first": ["slow:action"], "sleep_seconds": 600})
        wait_for(
            lambda: "Hard time limit" in worker.log(),
            timeout=60,
            message="the hard time limit to kill the step's process",
        )
        first = Call.objects.get(saga_id=saga_id, step="slow", phase="action")
        wait_for(
            lambda: not alive(first.pid),
            timeout=30,
            message=f"the step's process {first.pid} to be killed",
        )

        def finished() -> Saga | None:
            # A pass of the sweeper, as beat would run it, besides the broker's redelivery.
            sagas_sweep(now=timezone.now())
            return Saga.objects.filter(pk=saga_id, status__in=FINAL).first()

        saga = wait_for(finished, timeout=90, interval=0.5, message="the saga to finish")
        log = worker.log()

    assert saga.status == SagaStatus.COMPLETED, log
    statuses = list(
        SagaStepExecution.objects.filter(saga_id=saga_id, step="slow")
        .order_by("at")
        .values_list("status", flat=True)
    )
    # The killed attempt lost its worker; the same attempt ran again, within the retry budget.
    assert statuses == ["WORKER_LOST", "SUCCEEDED"], log
    assert Call.objects.filter(saga_id=saga_id, step="slow", phase="action").count() == 2
