"""The recovery sweeper: due, stalled and unsent steps are found in PostgreSQL and re-sent."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from sagas.claims import Claimed, attempt_claim
from sagas.faults import fault_rule_set
from sagas.models import Saga
from sagas.services import sagas_sweep
from sagas.statuses import FaultMode, Phase, SagaStatus
from sagas.tests.harness import SteppingClock, drive, log_of, run_step, start
from sagas.workers import WorkerIdentity, namespace, process_identity, worker_of

pytestmark = pytest.mark.django_db

ELSEWHERE = WorkerIdentity(host="another-host", pid=4242, name="celery@another-host/4242")


def test_a_backoff_too_long_for_a_countdown_waits_in_postgres_until_due(
    django_capture_on_commit_callbacks: Any,
) -> None:
    fault_rule_set(
        saga_type="test.long_backoff",
        step="b",
        phase=Phase.ACTION,
        mode=FaultMode.TRANSIENT,
        times=1,
    )
    saga_id = start("test.long_backoff")
    clock = SteppingClock(tick=timedelta(seconds=1))
    run_step(saga_id, clock=clock)  # a
    with django_capture_on_commit_callbacks() as sent:
        run_step(saga_id, clock=clock)  # b fails transiently: retry in 60 s
    saga = Saga.objects.get(pk=saga_id)
    assert saga.dispatched_at is None and saga.due_at is not None
    assert saga.due_at - clock.now >= timedelta(seconds=55)
    # No countdown message parked in the broker.
    assert sent == []

    assert sagas_sweep(now=clock.now).total == 0
    with django_capture_on_commit_callbacks() as sent:
        result = sagas_sweep(now=saga.due_at + timedelta(seconds=1))

    assert (result.due, result.stalled, result.unsent) == (1, 0, 0)
    assert len(sent) == 1
    assert Saga.objects.get(pk=saga_id).dispatched_at is not None
    assert sagas_sweep(now=saga.due_at + timedelta(seconds=2)).total == 0


def test_an_attempt_past_its_lease_is_timed_out_and_retried() -> None:
    saga_id = start("test.effects")
    now = timezone.now()
    claimed = attempt_claim(
        saga_id=saga_id,
        step="a",
        phase=Phase.ACTION,
        worker=ELSEWHERE,
        now=now,
    )
    assert isinstance(claimed, Claimed)
    lease_until = Saga.objects.get(pk=saga_id).lease_until
    assert lease_until is not None

    assert sagas_sweep(now=lease_until - timedelta(seconds=1)).stalled == 0
    result = sagas_sweep(now=lease_until + timedelta(seconds=1))

    assert (result.due, result.stalled, result.unsent) == (0, 1, 0)
    saga = Saga.objects.get(pk=saga_id)
    assert saga.claim_token is None and saga.due_at is not None
    assert log_of(saga_id, "a") == ["TIMED_OUT"]
    assert drive(saga_id).status == SagaStatus.COMPLETED


def test_a_step_whose_message_never_ran_is_sent_again_after_the_grace_period(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.SAGA_SWEEP_GRACE_SECONDS = 15
    saga_id = start("test.effects")
    sent_at = Saga.objects.get(pk=saga_id).dispatched_at
    assert sent_at is not None

    assert sagas_sweep(now=sent_at + timedelta(seconds=10)).total == 0
    with django_capture_on_commit_callbacks() as sent:
        result = sagas_sweep(now=sent_at + timedelta(seconds=16))

    assert (result.due, result.stalled, result.unsent) == (0, 0, 1)
    assert len(sent) == 1
    # Re-sent once per grace period, not on every pass.
    assert sagas_sweep(now=sent_at + timedelta(seconds=17)).total == 0


def _dead_pid() -> int:
    finished = subprocess.run(["/bin/sh", "-c", "echo $$"], capture_output=True, check=True)
    return int(finished.stdout)


@pytest.mark.parametrize(
    ("claimant", "orphaned"),
    [
        # The whole worker was SIGKILLed: its process is gone, its message unacknowledged.
        (lambda: worker_of(_dead_pid(), "dead"), 1),
        # A live process of this host is still running the attempt.
        (lambda: worker_of(os.getppid(), "live"), 0),
        # Another host's processes cannot be checked from here: wait for the lease.
        (lambda: ELSEWHERE, 0),
        # Our host name and a pid gone here, but another PID namespace (a container with a
        # fixed host name): nothing here can tell, so wait for the lease.
        (
            lambda: replace(
                worker_of(_dead_pid(), "twin"),
                process=f"{namespace().split('/')[0]}/4026530000/{_dead_pid()}/123",
            ),
            0,
        ),
        # The pid lives but names a process started later than the claimant: it was reused.
        (
            lambda: replace(
                worker_of(os.getppid(), "reused"),
                process=process_identity(os.getppid()).rsplit("/", 1)[0] + "/1",
            ),
            1,
        ),
    ],
    ids=["dead-here", "alive-here", "elsewhere", "same-name-other-namespace", "pid-reused"],
)
def test_a_claim_whose_process_died_on_this_host_is_sent_again_before_its_lease_ends(
    claimant: Any, orphaned: int, django_capture_on_commit_callbacks: Any
) -> None:
    saga_id = start("test.effects")
    now = timezone.now()
    claimed = attempt_claim(
        saga_id=saga_id,
        step="a",
        phase=Phase.ACTION,
        worker=claimant(),
        now=now,
    )
    assert isinstance(claimed, Claimed)

    # Well before the attempt's lease ends (30 s + graces), once the first dispatch is 2 s old.
    with django_capture_on_commit_callbacks() as sent:
        result = sagas_sweep(now=now + timedelta(seconds=5))

    assert (result.orphaned, result.stalled) == (orphaned, 0)
    assert len(sent) == orphaned
    if orphaned:
        # Re-sent at most every ORPHAN_RESEND_INTERVAL while the claim stays orphaned.
        assert sagas_sweep(now=now + timedelta(seconds=6)).orphaned == 0
        assert sagas_sweep(now=now + timedelta(seconds=8)).orphaned == 1
        # The message takes the dead claim over, as a redelivered one would, and runs again.
        assert drive(saga_id).status == SagaStatus.COMPLETED
        # The lost attempt is on the log as such, then the one that ran in its place.
        assert log_of(saga_id, "a") == ["WORKER_LOST", "SUCCEEDED"]
    else:
        assert Saga.objects.get(pk=saga_id).claim_token is not None


def test_sagas_at_rest_are_left_alone() -> None:
    finished = drive(start("test.effects"))
    assert finished.status == SagaStatus.COMPLETED

    assert sagas_sweep(now=timezone.now() + timedelta(days=1)).total == 0


def test_recover_sagas_command_runs_one_pass_and_prints_counts(
    settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.SAGA_SWEEP_GRACE_SECONDS = 0
    start("test.effects")
    start("test.effects")

    call_command("recover_sagas")

    out = capsys.readouterr().out
    assert "due: 0, stalled: 0, unsent: 2, orphaned: 0" in out


def test_a_saga_whose_definition_is_gone_does_not_stop_the_pass(settings: Any) -> None:
    settings.SAGA_SWEEP_GRACE_SECONDS = 0
    orphan = start("test.effects")
    Saga.objects.filter(pk=orphan).update(saga_type="removed.saga")
    start("test.effects")

    result = sagas_sweep(now=timezone.now() + timedelta(seconds=1))

    assert result.unsent == 1
