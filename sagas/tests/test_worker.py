"""The saga engine end to end: a real Celery worker process, real Redis, real PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from django.conf import settings
from django.test import override_settings
from redis import Redis

from config.celery import app
from lab.worker import WorkerHandle
from sagas.faults import fault_rule_set, fault_rules_clear
from sagas.models import Saga, SagaOperatorAction, SagaStep
from sagas.services import SweepResult, saga_retry, saga_skip_compensation
from sagas.statuses import AttemptStatus, FaultMode, Phase, SagaStatus, StepStatus
from sagas.tasks import run_saga_step
from sagas.testing.models import Call
from sagas.tests.harness import (
    calls,
    effect_order,
    effects,
    fail_b_compensation,
    log_of,
    start,
    step_statuses,
    wait_status,
)
from tests.support.worker import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.usefixtures("transactional_db")]

ACTIONS = Counter({("a", "action"): 1, ("b", "action"): 1, ("c", "action"): 1, ("d", "action"): 1})
TERMINAL = (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.COMPENSATION_FAILED)


def test_happy_path_runs_every_step_once_and_completes(live_worker: WorkerHandle) -> None:
    saga_id = start("test.effects", {"order": 7})

    saga = wait_status(saga_id, *TERMINAL)

    assert saga.status == SagaStatus.COMPLETED
    assert effects(saga_id) == ACTIONS
    assert calls(saga_id) == ACTIONS
    assert step_statuses(saga_id) == dict.fromkeys("abcd", StepStatus.SUCCEEDED.value)
    # Each action's returned mapping merged into the context, beside what the caller gave.
    assert saga.context == {
        "order": 7,
        "a:action": 1,
        "b:action": 1,
        "c:action": 1,
        "d:action": 1,
    }
    assert saga.finished_at is not None
    assert saga.claim_token is None and saga.due_at is None
    for step in "abcd":
        assert log_of(saga_id, step) == [AttemptStatus.SUCCEEDED.value]
    workers = set(Saga.objects.get(pk=saga_id).executions.values_list("worker", flat=True))
    assert all(w.startswith(live_worker.nodename) for w in workers)


@pytest.mark.parametrize(
    ("fail_at", "compensated"),
    [
        ("a", []),
        ("b", [("a", "compensation")]),
        ("c", [("b", "compensation"), ("a", "compensation")]),
        # c has no compensation: it is passed over.
        ("d", [("b", "compensation"), ("a", "compensation")]),
    ],
)
def test_business_failure_at_each_step_compensates_succeeded_steps_in_reverse(
    live_worker: WorkerHandle, fail_at: str, compensated: list[tuple[str, str]]
) -> None:
    saga_id = start("test.effects", {"fail_at": fail_at})

    saga = wait_status(saga_id, *TERMINAL)

    assert saga.status == SagaStatus.COMPENSATED
    assert (saga.failure_step, saga.failure_code) == (fail_at, "test_failure")
    succeeded = [s for s in "abcd" if s < fail_at]
    assert effect_order(saga_id) == [(s, "action") for s in succeeded] + compensated
    statuses = step_statuses(saga_id)
    assert statuses[fail_at] == StepStatus.FAILED
    for step in succeeded:
        expected = StepStatus.SUCCEEDED if step == "c" else StepStatus.COMPENSATED
        assert statuses[step] == expected
    for step in "abcd":
        if step > fail_at:
            assert statuses[step] == StepStatus.PENDING
    assert log_of(saga_id, fail_at) == [AttemptStatus.FAILED.value]


def test_transient_failures_are_retried_until_the_step_succeeds(live_worker: WorkerHandle) -> None:
    fault_rule_set(
        saga_type="test.effects", step="b", phase=Phase.ACTION, mode=FaultMode.TRANSIENT, times=2
    )
    saga_id = start("test.effects")

    saga = wait_status(saga_id, *TERMINAL)

    assert saga.status == SagaStatus.COMPLETED
    assert log_of(saga_id, "b") == ["RETRYING", "RETRYING", "SUCCEEDED"]
    step_b = SagaStep.objects.get(saga_id=saga_id, name="b")
    assert step_b.action_attempts == 3
    assert "injected transient fault" in step_b.last_error
    assert effects(saga_id) == ACTIONS


def test_transient_failures_past_the_limit_fail_the_step_and_compensate(
    live_worker: WorkerHandle,
) -> None:
    fault_rule_set(
        saga_type="test.effects", step="c", phase=Phase.ACTION, mode=FaultMode.TRANSIENT, times=None
    )
    saga_id = start("test.effects")

    saga = wait_status(saga_id, *TERMINAL)

    assert saga.status == SagaStatus.COMPENSATED
    assert (saga.failure_step, saga.failure_code) == ("c", "step_failed")
    assert "gave up after 3 attempts" in saga.failure_message
    assert log_of(saga_id, "c") == ["RETRYING", "RETRYING", "FAILED"]
    assert effect_order(saga_id)[-2:] == [("b", "compensation"), ("a", "compensation")]


def test_an_action_that_gave_up_is_compensated_itself_before_the_earlier_steps(
    live_worker: WorkerHandle,
) -> None:
    # b kept failing transiently: whatever it did before each error is undone too.
    fault_rule_set(
        saga_type="test.effects", step="b", phase=Phase.ACTION, mode=FaultMode.TRANSIENT, times=None
    )
    saga_id = start("test.effects")

    saga = wait_status(saga_id, *TERMINAL)

    assert saga.status == SagaStatus.COMPENSATED
    assert (saga.failure_step, saga.failure_code) == ("b", "step_failed")
    assert effect_order(saga_id)[-2:] == [("b", "compensation"), ("a", "compensation")]
    assert SagaStep.objects.get(saga_id=saga_id, name="b").status == StepStatus.COMPENSATED


def test_failing_compensation_waits_for_an_operator_retry_then_compensates(
    live_worker: WorkerHandle,
) -> None:
    fail_b_compensation(FaultMode.TRANSIENT)
    saga_id = start("test.effects", {"fail_at": "d"})

    saga = wait_status(saga_id, *TERMINAL)

    assert saga.status == SagaStatus.COMPENSATION_FAILED
    assert (saga.current_step, saga.current_phase) == ("b", "compensation")
    assert log_of(saga_id, "b", "compensation") == ["RETRYING", "RETRYING", "FAILED"]
    statuses = step_statuses(saga_id)
    assert statuses["b"] == StepStatus.COMPENSATION_FAILED
    # Earlier compensations never run past a failed one.
    assert statuses["a"] == StepStatus.SUCCEEDED
    assert ("a", "compensation") not in calls(saga_id)
    assert "injected transient fault" in SagaStep.objects.get(saga_id=saga_id, name="b").last_error

    fault_rules_clear()
    saga_retry(saga_id=saga_id, actor="user:ops", reason="gateway is back")

    saga = wait_status(saga_id, SagaStatus.COMPENSATED, SagaStatus.COMPENSATION_FAILED)
    assert saga.status == SagaStatus.COMPENSATED
    assert step_statuses(saga_id) == {
        "a": StepStatus.COMPENSATED,
        "b": StepStatus.COMPENSATED,
        "c": StepStatus.SUCCEEDED,
        "d": StepStatus.FAILED,
    }
    assert effects(saga_id)[("b", "compensation")] == 1
    assert effects(saga_id)[("a", "compensation")] == 1
    assert log_of(saga_id, "b", "compensation") == ["RETRYING", "RETRYING", "FAILED", "SUCCEEDED"]
    action = SagaOperatorAction.objects.get(saga_id=saga_id)
    assert (action.action, action.actor, action.reason, action.step) == (
        "retry",
        "user:ops",
        "gateway is back",
        "b",
    )


def test_skipped_compensation_is_marked_and_the_saga_carries_on(live_worker: WorkerHandle) -> None:
    fail_b_compensation(FaultMode.PERMANENT)
    saga_id = start("test.effects", {"fail_at": "d"})
    saga = wait_status(saga_id, *TERMINAL)
    assert saga.status == SagaStatus.COMPENSATION_FAILED
    # A permanent fault fails the compensation at once, without retries.
    assert log_of(saga_id, "b", "compensation") == ["FAILED"]

    saga_skip_compensation(saga_id=saga_id, actor="user:ops", reason="refunded by hand")

    saga = wait_status(saga_id, SagaStatus.COMPENSATED)
    statuses = step_statuses(saga_id)
    assert statuses["b"] == StepStatus.SKIPPED
    assert statuses["a"] == StepStatus.COMPENSATED
    assert ("b", "compensation") not in effects(saga_id)
    assert effects(saga_id)[("a", "compensation")] == 1
    action = SagaOperatorAction.objects.get(saga_id=saga_id)
    assert (action.action, action.reason) == ("skip_compensation", "refunded by hand")


@pytest.mark.parametrize("fail_at", [None, "d"])
def test_every_step_message_delivered_twice_has_one_effect(
    live_worker: WorkerHandle, fail_at: str | None
) -> None:
    # sagas.testing.duplication publishes each message of this saga type twice.
    saga_id = start("test.duplicated", {"fail_at": fail_at} if fail_at else {})

    saga = wait_status(saga_id, *TERMINAL)

    expected = Counter(ACTIONS)
    if fail_at:
        assert saga.status == SagaStatus.COMPENSATED
        expected = Counter(
            {
                ("a", "action"): 1,
                ("b", "action"): 1,
                ("c", "action"): 1,
                ("b", "compensation"): 1,
                ("a", "compensation"): 1,
            }
        )
    else:
        assert saga.status == SagaStatus.COMPLETED
    assert effects(saga_id) == expected
    # The copies were no-ops: each participant was called once, not once per message (d's
    # action too, which failed before its effect).
    assert calls(saga_id) == expected + (Counter({("d", "action"): 1}) if fail_at else Counter())


def test_worker_killed_in_the_middle_of_a_step_still_finishes_once(
    live_worker: WorkerHandle,
) -> None:
    saga_id = start("test.effects", {"slow": ["b:action"], "slow_seconds": 20})
    first = wait_for(
        lambda: Call.objects.filter(saga_id=saga_id, step="b", phase="action").first(),
        message="step b to start",
    )
    assert Saga.objects.get(pk=saga_id).claim_pid == first.pid

    live_worker.kill_child(first.pid)

    saga = wait_status(saga_id, *TERMINAL)
    assert saga.status == SagaStatus.COMPLETED
    assert effects(saga_id) == ACTIONS
    assert calls(saga_id)[("b", "action")] == 2
    assert log_of(saga_id, "b") == [AttemptStatus.WORKER_LOST.value, AttemptStatus.SUCCEEDED.value]
    # A lost worker does not use up the step's retries: the same attempt ran again.
    assert SagaStep.objects.get(saga_id=saga_id, name="b").action_attempts == 1


def test_worker_killed_in_the_middle_of_a_compensation_still_finishes_once(
    live_worker: WorkerHandle,
) -> None:
    saga_id = start(
        "test.effects", {"fail_at": "d", "slow": ["b:compensation"], "slow_seconds": 20}
    )
    first = wait_for(
        lambda: Call.objects.filter(saga_id=saga_id, step="b", phase="compensation").first(),
        message="b's compensation to start",
    )

    # Without a pid, kill_child asks the worker which child is busy.
    assert live_worker.kill_child() == first.pid

    saga = wait_status(saga_id, *TERMINAL)
    assert saga.status == SagaStatus.COMPENSATED
    assert effects(saga_id)[("b", "compensation")] == 1
    assert effects(saga_id)[("a", "compensation")] == 1
    assert calls(saga_id)[("b", "compensation")] == 2
    assert log_of(saga_id, "b", "compensation") == ["WORKER_LOST", "SUCCEEDED"]


def test_dispatch_lost_after_commit_is_resent_by_the_sweeper(
    live_worker: WorkerHandle, run_sweeper: Callable[..., SweepResult], celery_test_queue: str
) -> None:
    node = [live_worker.nodename]
    app.control.cancel_consumer(celery_test_queue, destination=node, reply=True)
    try:
        saga_id = start("test.effects")
        # The message was sent after commit; the broker loses it before anyone reads it.
        broker = Redis.from_url(str(settings.CELERY_BROKER_URL))
        # A BRPOP the worker issued before the cancel may still take the message; kombu then
        # puts it back ("Requeuing undeliverable message"), so wait for it to be there.
        wait_for(
            lambda: broker.llen(celery_test_queue) == 1,
            timeout=10,
            message="the step message waiting in the unconsumed queue",
        )
        broker.delete(celery_test_queue)
        saga = Saga.objects.get(pk=saga_id)
        assert (saga.status, saga.current_step, saga.attempt) == ("RUNNING", "a", 0)
        assert saga.dispatched_at is not None
    finally:
        app.control.add_consumer(celery_test_queue, destination=node, reply=True)

    with override_settings(SAGA_SWEEP_GRACE_SECONDS=0):
        result = run_sweeper()

    assert (result.unsent, result.due, result.stalled) == (1, 0, 0)
    saga = wait_status(saga_id, *TERMINAL)
    assert saga.status == SagaStatus.COMPLETED
    assert effects(saga_id) == ACTIONS


def test_attempt_past_its_timeout_counts_as_transient_and_is_retried(
    live_worker: WorkerHandle,
) -> None:
    saga_id = start("test.timeout", {"sleep_first": ["slow:action"], "sleep_seconds": 4})

    saga = wait_status(saga_id, *TERMINAL)

    assert saga.status == SagaStatus.COMPLETED
    assert log_of(saga_id, "slow") == ["TIMED_OUT", "SUCCEEDED"]
    assert "timeout" in SagaStep.objects.get(saga_id=saga_id, name="slow").last_error
    assert effects(saga_id)[("slow", "action")] == 1


def test_local_first_step_commits_with_the_start_then_the_worker_finishes(
    live_worker: WorkerHandle,
) -> None:
    saga_id = start("test.local")
    # The local step ran inside the starting transaction, before any worker saw the saga.
    assert effects(saga_id)[("create", "action")] == 1

    saga = wait_status(saga_id, *TERMINAL)

    assert saga.status == SagaStatus.COMPLETED
    assert effects(saga_id) == Counter(
        {("create", "action"): 1, ("b", "action"): 1, ("c", "action"): 1}
    )
    assert saga.context["create:action"] == 1


def test_a_restarted_worker_picks_up_where_the_old_one_stopped(live_worker: WorkerHandle) -> None:
    old_children = set(live_worker.child_pids)

    live_worker.restart()

    assert not old_children & set(live_worker.child_pids)
    saga = wait_status(start("test.effects"), *TERMINAL)
    assert saga.status == SagaStatus.COMPLETED


# --- Forward recovery: past the point of no return, a step retries instead of compensating.


def test_a_step_past_the_pivot_retries_through_permanent_failures_and_completes(
    live_worker: WorkerHandle,
) -> None:
    # Five permanent failures: more than c's three attempts, so a plain step would compensate.
    fault_rule_set(
        saga_type="test.forward", step="c", phase=Phase.ACTION, mode=FaultMode.PERMANENT, times=5
    )
    saga_id = start("test.forward")

    saga = wait_status(saga_id, *TERMINAL, timeout=60.0)

    assert saga.status == SagaStatus.COMPLETED
    assert log_of(saga_id, "c") == ["FAILED"] * 5 + ["SUCCEEDED"]
    assert all(phase == "action" for _, phase in effect_order(saga_id))
    step_c = SagaStep.objects.get(saga_id=saga_id, name="c")
    assert "retrying until it succeeds" in step_c.last_error


def test_the_pivot_retries_transient_failures_past_its_limit(live_worker: WorkerHandle) -> None:
    fault_rule_set(
        saga_type="test.forward", step="b", phase=Phase.ACTION, mode=FaultMode.TRANSIENT, times=5
    )
    saga_id = start("test.forward")

    saga = wait_status(saga_id, *TERMINAL, timeout=60.0)

    assert saga.status == SagaStatus.COMPLETED
    assert log_of(saga_id, "b")[-1] == "SUCCEEDED"
    assert len(log_of(saga_id, "b")) == 6
    assert all(phase == "action" for _, phase in effect_order(saga_id))


def test_a_business_failure_at_the_pivot_still_compensates(live_worker: WorkerHandle) -> None:
    # A refused refund did nothing: undoing what came before is still right.
    fault_rule_set(
        saga_type="test.forward", step="b", phase=Phase.ACTION, mode=FaultMode.PERMANENT, times=1
    )
    saga_id = start("test.forward")

    saga = wait_status(saga_id, *TERMINAL, timeout=60.0)

    assert saga.status == SagaStatus.COMPENSATED
    assert effect_order(saga_id) == [("a", "action"), ("a", "compensation")]


def test_a_message_with_an_argument_this_worker_does_not_know_still_runs_the_step(
    live_worker: WorkerHandle, celery_test_queue: str
) -> None:
    node = [live_worker.nodename]
    app.control.cancel_consumer(celery_test_queue, destination=node, reply=True)
    try:
        saga_id = start("test.effects")
        broker = Redis.from_url(str(settings.CELERY_BROKER_URL))
        # The saga's own first message, taken away so that only the newer-looking one runs.
        wait_for(
            lambda: broker.llen(celery_test_queue) == 1,
            timeout=10,
            message="the step message waiting in the unconsumed queue",
        )
        broker.delete(celery_test_queue)
    finally:
        app.control.add_consumer(celery_test_queue, destination=node, reply=True)

    # As a newer sender would write it: one keyword argument more than this version takes.
    run_saga_step.apply_async(
        kwargs={
            "saga_id": str(saga_id),
            "saga_type": "test.effects",
            "step": "a",
            "phase": Phase.ACTION.value,
            "sent_by_a_newer_version": {"anything": 1},
        }
    )

    saga = wait_status(saga_id, *TERMINAL)
    assert saga.status == SagaStatus.COMPLETED
    assert effects(saga_id) == ACTIONS
    assert log_of(saga_id, "a") == [AttemptStatus.SUCCEEDED.value]
