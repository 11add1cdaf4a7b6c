"""Two workers that share a host name never take each other's live attempts.

The second "host" is real: a process in its own PID and UTS namespaces (``unshare``), its host
name the same as ours, claiming on the same PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from lab.worker import database_url
from sagas.models import Saga
from sagas.statuses import StepStatus
from sagas.testing.models import Call
from sagas.tests.harness import run_step, start, step_statuses

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("transactional_db")]

ROOT = Path(__file__).resolve().parents[2]
#: A pid far above this host's ``pid_max``: the claimant's pid exists only in its namespace.
NAMESPACED_LAST_PID = 3_999_990


@pytest.fixture
def namespaced_claim() -> Iterator[subprocess.Popen[str]]:
    """Start a claimant in fresh PID and UTS namespaces; yield it once it holds the claim."""
    saga_id = start("test.effects")
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.test_settings",
        DATABASE_URL=database_url(connection.settings_dict),
        PYTHONPATH=str(ROOT),
    )
    env.pop("TEST_DATABASE_NAME", None)
    script = (
        f"echo {NAMESPACED_LAST_PID} > /proc/sys/kernel/ns_last_pid && "
        f'"{sys.executable}" -m sagas.tests.namespaced_claimant {saga_id}'
    )
    process = subprocess.Popen(
        ["unshare", "--pid", "--uts", "--fork", "--mount-proc", "sh", "-c", script],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    line = process.stdout.readline()
    assert line.startswith("claimed "), line
    process.saga_id = saga_id  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        process.stdin.close()
        process.wait(timeout=30)


def test_a_live_claim_from_another_pid_namespace_with_our_host_name_is_not_taken_over(
    namespaced_claim: subprocess.Popen[str],
) -> None:
    saga_id = namespaced_claim.saga_id  # type: ignore[attr-defined]
    holder = Saga.objects.get(pk=saga_id)
    assert holder.claim_host == os.uname().nodename

    report = run_step(saga_id)

    assert not report.ran, "a live attempt in another PID namespace was taken over"
    saga = Saga.objects.get(pk=saga_id)
    assert (saga.claim_token, saga.redeliveries) == (holder.claim_token, 0)
    assert step_statuses(saga_id)["a"] == StepStatus.RUNNING
    assert not Call.objects.exists()
