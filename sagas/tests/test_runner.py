"""One attempt at a time, in this process: claims, takeovers, the poison guard, faults."""

from __future__ import annotations

import subprocess
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.test import override_settings

from sagas.claims import Claimed, NotClaimed, attempt_claim
from sagas.engine import ClaimView, Cursor, SagaState, Succeeded, decide, decide_claim
from sagas.faults import fault_rule_set
from sagas.models import Saga, SagaStep, SagaStepExecution
from sagas.recorder import AttemptRecord, outcome_record
from sagas.services import sagas_sweep
from sagas.statuses import FaultMode, Phase, SagaStatus, StepStatus
from sagas.testing.models import Call, Effect
from sagas.tests.harness import (
    SteppingClock,
    calls,
    drive,
    effects,
    log_of,
    run_step,
    start,
    step_statuses,
)
from sagas.workers import WorkerIdentity, worker_of

pytestmark = pytest.mark.django_db

ELSEWHERE = WorkerIdentity(host="another-host", pid=4242, name="celery@another-host/4242")


def dead_pid() -> int:
    """Return the pid of a process that has just exited on this host."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def claim(saga_id, worker: WorkerIdentity, clock: SteppingClock) -> Claimed:
    saga = Saga.objects.get(pk=saga_id)
    claimed = attempt_claim(
        saga_id=saga_id,
        step=saga.current_step,
        phase=Phase(saga.current_phase),
        worker=worker,
        now=clock(),
    )
    assert isinstance(claimed, Claimed), claimed
    return claimed


def test_each_participant_gets_its_idempotency_key_and_the_context_grows() -> None:
    saga_id = start("test.effects", {"order": 1})

    saga = drive(saga_id)

    assert saga.status == SagaStatus.COMPLETED
    keys = set(Effect.objects.filter(saga_id=saga_id).values_list("key", flat=True))
    assert keys == {f"{saga_id}:{step}:action" for step in "abcd"}
    assert saga.context == {"order": 1, "a:action": 1, "b:action": 1, "c:action": 1, "d:action": 1}


def test_a_message_for_a_step_that_already_succeeded_is_a_no_op() -> None:
    saga_id = start("test.effects")
    clock = SteppingClock()
    assert run_step(saga_id, clock=clock).ran

    again = run_step(saga_id, clock=clock, step="a", phase=Phase.ACTION)

    assert not again.ran
    assert "not the saga's current step" in again.detail
    assert calls(saga_id) == Counter({("a", "action"): 1})


def test_a_message_for_a_step_a_live_worker_holds_is_a_no_op() -> None:
    saga_id = start("test.effects")
    clock = SteppingClock(tick=timedelta(seconds=1))
    claim(saga_id, ELSEWHERE, clock)

    duplicate = run_step(saga_id, clock=clock)

    assert not duplicate.ran
    assert "live attempt" in duplicate.detail
    saga = Saga.objects.get(pk=saga_id)
    assert (saga.claim_worker, saga.attempt) == (ELSEWHERE.name, 1)
    assert step_statuses(saga_id)["a"] == StepStatus.RUNNING
    assert not Call.objects.exists()


def test_the_claim_records_the_attempt_the_worker_and_a_lease() -> None:
    saga_id = start("test.effects")
    clock = SteppingClock()

    claimed = claim(saga_id, ELSEWHERE, clock)

    saga = Saga.objects.get(pk=saga_id)
    assert saga.claim_token == claimed.token
    assert (saga.claim_host, saga.claim_pid, saga.attempt) == ("another-host", 4242, 1)
    assert saga.due_at is None
    assert saga.lease_until is not None and saga.claimed_at is not None
    assert saga.lease_until - saga.claimed_at == timedelta(seconds=30 + 2 * 5)
    step = SagaStep.objects.get(saga_id=saga_id, name="a")
    assert (step.status, step.action_attempts) == ("RUNNING", 1)
    assert step.action_started_at == saga.claimed_at


def test_a_claim_whose_process_died_is_taken_over_and_the_attempt_reruns() -> None:
    saga_id = start("test.effects")
    clock = SteppingClock()
    lost = worker_of(dead_pid(), "celery@here/dead")
    claim(saga_id, lost, clock)

    report = run_step(saga_id, clock=clock)

    assert report.ran
    assert log_of(saga_id, "a") == ["WORKER_LOST", "SUCCEEDED"]
    lost_row = SagaStepExecution.objects.get(saga_id=saga_id, status="WORKER_LOST")
    assert lost_row.worker == "celery@here/dead" and lost_row.attempt == 1
    assert "died" in lost_row.error
    # The same attempt ran again: the retry budget is untouched.
    assert SagaStep.objects.get(saga_id=saga_id, name="a").action_attempts == 1
    assert Saga.objects.get(pk=saga_id).current_step == "b"


def test_a_claim_its_live_holder_abandoned_is_taken_over_by_the_message_carrying_its_token() -> (
    None
):
    # The holder lost the database before writing its outcome; its process lives on, so
    # only the token it hands to its retry can free the claim before its lease ends.
    saga_id = start("test.effects")
    clock = SteppingClock(tick=timedelta(seconds=1))
    claimed = claim(saga_id, ELSEWHERE, clock)

    wrong_token = run_step(saga_id, clock=clock, abandoned=uuid.uuid4())
    assert not wrong_token.ran and "live attempt" in wrong_token.detail

    report = run_step(saga_id, clock=clock, abandoned=claimed.token)

    assert report.ran
    assert log_of(saga_id, "a") == ["WORKER_LOST", "SUCCEEDED"]
    assert Saga.objects.get(pk=saga_id).current_step == "b"


def test_the_poison_guard_fails_a_step_that_keeps_killing_its_workers() -> None:
    saga_id = start("test.effects", {})
    clock = SteppingClock()
    run_step(saga_id, clock=clock)  # a succeeds
    for _ in range(3):
        claim(saga_id, worker_of(dead_pid(), "w"), clock)
    # Three takeovers already happened (each by a worker that died in turn).
    Saga.objects.filter(pk=saga_id).update(redeliveries=3)

    report = run_step(saga_id, clock=clock)

    assert not report.ran
    assert "poison guard" in report.detail
    saga = Saga.objects.get(pk=saga_id)
    assert (saga.status, saga.failure_step, saga.failure_code) == (
        "COMPENSATING",
        "b",
        "step_failed",
    )
    assert "poison guard" in saga.failure_message
    assert step_statuses(saga_id)["b"] == StepStatus.FAILED
    assert drive(saga_id, clock=clock).status == SagaStatus.COMPENSATED
    assert effects(saga_id)[("a", "compensation")] == 1


def test_a_late_outcome_after_a_timeout_is_dropped() -> None:
    saga_id = start("test.effects")
    clock = SteppingClock(tick=timedelta(minutes=2))
    claimed = claim(saga_id, ELSEWHERE, clock)
    # The sweeper finds the attempt past its lease and schedules a retry.
    assert sagas_sweep(now=clock()).stalled == 1

    late = outcome_record(
        claimed.loaded,
        lambda definition, state: decide(definition, state, Succeeded({"late": True}), rand=0.5),
        now=clock(),
        attempt=AttemptRecord(attempt=1, started_at=claimed.started_at, worker=ELSEWHERE.name),
    )

    assert late.applied is False
    saga = Saga.objects.get(pk=saga_id)
    assert (saga.current_step, saga.status) == ("a", "RUNNING")
    assert "late" not in saga.context
    assert log_of(saga_id, "a") == ["TIMED_OUT"]


def test_an_unexpected_exception_counts_as_transient_and_is_recorded() -> None:
    saga_id = start("test.effects", {"crash_first": ["b:action"]})

    saga = drive(saga_id)

    assert saga.status == SagaStatus.COMPLETED
    assert log_of(saga_id, "b") == ["RETRYING", "SUCCEEDED"]
    error = SagaStepExecution.objects.get(saga_id=saga_id, step="b", status="RETRYING").error
    assert error == "unexpected RuntimeError: simulated bug in b:action"


@pytest.mark.parametrize(
    ("phase", "mode", "times", "outcome"),
    [
        (Phase.ACTION, FaultMode.TRANSIENT, 2, "completed after two retries"),
        (Phase.ACTION, FaultMode.PERMANENT, 1, "compensated with injected_fault"),
        (Phase.COMPENSATION, FaultMode.TRANSIENT, None, "compensation failed after retries"),
        (Phase.COMPENSATION, FaultMode.PERMANENT, None, "compensation failed at once"),
    ],
)
def test_injected_faults_are_honoured(
    phase: Phase, mode: FaultMode, times: int | None, outcome: str
) -> None:
    fault_rule_set(saga_type="test.effects", step="b", phase=phase, mode=mode, times=times)
    context = {"fail_at": "d"} if phase is Phase.COMPENSATION else {}
    saga_id = start("test.effects", context)

    saga = drive(saga_id)

    if outcome == "completed after two retries":
        assert saga.status == SagaStatus.COMPLETED
        assert log_of(saga_id, "b") == ["RETRYING", "RETRYING", "SUCCEEDED"]
        # The injected failures never reached the participant.
        assert calls(saga_id)[("b", "action")] == 1
    elif outcome == "compensated with injected_fault":
        assert saga.status == SagaStatus.COMPENSATED
        assert (saga.failure_step, saga.failure_code) == ("b", "injected_fault")
        assert ("b", "action") not in calls(saga_id)
    elif outcome == "compensation failed after retries":
        assert saga.status == SagaStatus.COMPENSATION_FAILED
        assert log_of(saga_id, "b", "compensation") == ["RETRYING", "RETRYING", "FAILED"]
    else:
        assert saga.status == SagaStatus.COMPENSATION_FAILED
        assert log_of(saga_id, "b", "compensation") == ["FAILED"]
        assert "injected_fault" in SagaStep.objects.get(saga_id=saga_id, name="b").last_error


def test_a_fault_set_for_n_times_is_used_up_atomically() -> None:
    fault_rule_set(
        saga_type="test.effects", step="a", phase=Phase.ACTION, mode=FaultMode.TRANSIENT, times=1
    )
    first = start("test.effects")
    second = start("test.effects")
    drive(first)
    drive(second)

    assert log_of(first, "a") == ["RETRYING", "SUCCEEDED"]
    assert log_of(second, "a") == ["SUCCEEDED"]
    from sagas.models import FaultRule

    rule = FaultRule.objects.get()
    assert (rule.remaining, rule.hits) == (0, 1)


@override_settings(FAULT_INJECTION_ENABLED=False)
def test_faults_are_ignored_unless_fault_injection_is_enabled() -> None:
    fault_rule_set(
        saga_type="test.effects", step="a", phase=Phase.ACTION, mode=FaultMode.PERMANENT, times=None
    )
    assert drive(start("test.effects")).status == SagaStatus.COMPLETED


def test_a_message_claims_exactly_when_the_engine_decides_a_claim() -> None:
    clock = SteppingClock()
    cases = {
        "due and free": lambda s: None,
        "not due yet": lambda s: Saga.objects.filter(pk=s).update(
            due_at=clock.now + timedelta(hours=1)
        ),
        "nothing due": lambda s: Saga.objects.filter(pk=s).update(due_at=None, dispatched_at=None),
        "at rest": lambda s: Saga.objects.filter(pk=s).update(
            status="COMPLETED", due_at=None, dispatched_at=None
        ),
        "claimed": lambda s: claim(s, ELSEWHERE, clock),
    }
    for name, prepare in cases.items():
        saga_id = start("test.effects")
        prepare(saga_id)
        saga = Saga.objects.get(pk=saga_id)
        now = clock()
        expected = decide_claim(
            SagaState(
                status=SagaStatus(saga.status), cursor=Cursor(0, Phase.ACTION), attempt=saga.attempt
            ),
            ClaimView(due_at=saga.due_at, claimed=saga.claim_token is not None),
            step_index=0,
            phase=Phase.ACTION,
            now=now,
            max_redeliveries=3,
        )
        got = attempt_claim(
            saga_id=saga_id,
            step="a",
            phase=Phase.ACTION,
            worker=ELSEWHERE,
            now=now,
        )
        assert isinstance(got, Claimed) == (type(expected).__name__ == "Claim"), name
        if isinstance(got, NotClaimed):
            assert got.detail, name


@override_settings(SAGA_STEP_LOG_MAX=6)
def test_a_step_retrying_forward_keeps_its_first_and_latest_attempts_in_the_log() -> None:
    # c retries forward on every failure: twelve injected failures, then it succeeds.
    fault_rule_set(
        saga_type="test.forward", step="c", phase=Phase.ACTION, mode=FaultMode.TRANSIENT, times=12
    )
    saga_id = start("test.forward")

    saga = drive(saga_id)

    assert saga.status == SagaStatus.COMPLETED
    kept = list(
        SagaStepExecution.objects.filter(saga_id=saga_id, step="c", phase="action")
        .order_by("attempt")
        .values_list("attempt", "status")
    )
    # The bound of 6: the first three attempts and the latest three, the last one succeeding.
    assert [attempt for attempt, _ in kept] == [1, 2, 3, 11, 12, 13]
    assert kept[-1][1] == "SUCCEEDED"
    assert SagaStep.objects.get(saga_id=saga_id, name="c").action_attempts == 13
    # The other steps' logs are untouched.
    assert log_of(saga_id, "a") == ["SUCCEEDED"]
