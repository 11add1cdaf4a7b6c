"""Starting sagas, operator actions and selectors, on real PostgreSQL (no worker needed)."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from redis import Redis

from sagas import registry
from sagas.definitions import SagaDefinition, Step, StepBusinessFailure, StepCall
from sagas.errors import (
    ReasonRequired,
    SagaAlreadyActive,
    SagaNotFound,
    SagaStateConflict,
    TransactionRequired,
    UnknownSagaType,
)
from sagas.models import Saga, SagaOperatorAction, SagaStep, SagaStepExecution
from sagas.selectors import saga_detail, saga_list, sagas_for_subject
from sagas.services import saga_begin, saga_retry, saga_skip_compensation, saga_start
from sagas.statuses import Phase, SagaStatus, StepStatus
from sagas.testing.models import Call, Effect
from sagas.tests.harness import (
    SteppingClock,
    drive,
    effects,
    failed_compensation_saga,
    start,
    step_statuses,
)

pytestmark = pytest.mark.django_db


def noop_step(call: StepCall) -> None:
    return None


def test_start_writes_the_saga_and_its_steps_and_sends_the_first_step_after_commit(
    django_capture_on_commit_callbacks: Any, celery_test_queue: str
) -> None:
    queue = Redis.from_url(_broker())
    before = queue.llen(celery_test_queue)
    with django_capture_on_commit_callbacks() as callbacks:
        saga_id = saga_start(
            saga_type="test.effects",
            context={"order_id": "o-1"},
            correlation_id="req-9",
            actor="user:7",
            subject="order:o-1",
        )

    saga = Saga.objects.get(pk=saga_id)
    assert (saga.saga_type, saga.status, saga.current_step, saga.current_phase) == (
        "test.effects",
        "RUNNING",
        "a",
        "action",
    )
    assert (saga.correlation_id, saga.actor, saga.subject) == ("req-9", "user:7", "order:o-1")
    assert saga.context == {"order_id": "o-1"}
    assert saga.due_at is not None and saga.dispatched_at is not None
    assert step_statuses(saga_id) == dict.fromkeys("abcd", StepStatus.PENDING.value)
    assert list(SagaStep.objects.filter(saga_id=saga_id).values_list("compensable", flat=True)) == [
        True,
        True,
        False,
        True,
    ]
    # Nothing was sent inside the transaction: one message waits for the commit.
    assert len(callbacks) == 1
    assert queue.llen(celery_test_queue) == before


def _broker() -> str:
    from django.conf import settings

    return str(settings.CELERY_BROKER_URL)


@pytest.mark.django_db(transaction=True)
def test_start_owns_its_transaction_and_begin_joins_the_callers() -> None:
    with transaction.atomic(), pytest.raises(RuntimeError, match="durable"):
        saga_start(saga_type="test.effects", context={}, correlation_id="c", actor="a")
    with pytest.raises(TransactionRequired):
        saga_begin(saga_type="test.effects", context={}, correlation_id="c", actor="a")
    assert not Saga.objects.exists()

    with transaction.atomic():
        saga_id = saga_begin(saga_type="test.effects", context={}, correlation_id="c", actor="a")
    assert Saga.objects.get(pk=saga_id).status == SagaStatus.RUNNING


def test_start_refuses_an_unknown_saga_type() -> None:
    with pytest.raises(UnknownSagaType):
        start("no.such.saga")


def test_exclusive_start_refuses_a_second_active_saga_on_the_subject() -> None:
    first = start("test.effects", subject="order:1", exclusive=True)
    with pytest.raises(SagaAlreadyActive):
        saga_start(
            saga_type="test.effects",
            context={},
            correlation_id="c",
            actor="a",
            subject="order:1",
            exclusive=True,
        )
    assert Saga.objects.filter(subject="order:1").count() == 1
    # Non-exclusive sagas and other subjects are not affected.
    start("test.effects", subject="order:1")
    start("test.effects", subject="order:2", exclusive=True)
    # Once the first one is finished, a new exclusive saga may start.
    assert drive(first).status == SagaStatus.COMPLETED
    start("test.effects", subject="order:1", exclusive=True)


def finish_the_other_saga(call: StepCall) -> None:
    # As a worker finishing the saga named in the context would, while this start runs.
    Saga.objects.filter(pk=call.context["other"]).update(
        status=SagaStatus.COMPLETED, due_at=None, finished_at=timezone.now()
    )


# Its local step is where another saga on the subject finishes, between this start's first
# look at the subject and the row it writes.
RACING = SagaDefinition(
    name="test.racing",
    steps=(
        Step(name="look", action=finish_the_other_saga, local=True),
        Step(name="act", action=noop_step),
    ),
)


def test_an_exclusive_start_refuses_before_its_local_steps_read_anything(settings: Any) -> None:
    first = start("test.effects", subject="order:r", exclusive=True)
    settings.SAGA_DEFINITIONS = [*settings.SAGA_DEFINITIONS, "sagas.tests.test_services.RACING"]
    registry.reset()
    try:
        with pytest.raises(SagaAlreadyActive):
            start("test.racing", {"other": str(first)}, subject="order:r", exclusive=True)
    finally:
        registry.reset()

    # The local step never ran: it would have acted on a subject the first saga was still
    # changing, and nothing would have refused the start once that saga had finished.
    assert Saga.objects.get(pk=first).status == SagaStatus.RUNNING
    assert not Saga.objects.filter(saga_type="test.racing").exists()


def test_the_database_itself_refuses_two_active_exclusive_sagas_on_a_subject() -> None:
    first = Saga.objects.get(pk=start("test.effects", subject="order:x", exclusive=True))
    now = timezone.now()
    twin = Saga(
        saga_type="test.effects",
        status=SagaStatus.COMPENSATION_FAILED,
        subject="order:x",
        exclusive=True,
        current_step="a",
        current_phase="compensation",
        created_at=now,
        updated_at=now,
    )
    with pytest.raises(IntegrityError, match="one_active_exclusive"), transaction.atomic():
        twin.save(force_insert=True)
    assert Saga.objects.filter(subject="order:x").get() == first


def test_local_steps_run_inside_the_starting_transaction() -> None:
    saga_id = start("test.local", {"n": 1})

    saga = Saga.objects.get(pk=saga_id)
    assert effects(saga_id) == Counter({("create", "action"): 1})
    assert saga.context == {"n": 1, "create:action": 1}
    assert (saga.current_step, saga.status) == ("b", "RUNNING")
    statuses = step_statuses(saga_id)
    assert statuses == {"create": "SUCCEEDED", "b": "PENDING", "c": "PENDING"}
    log = SagaStepExecution.objects.get(saga_id=saga_id)
    assert (log.step, log.status, log.attempt) == ("create", "SUCCEEDED", 1)
    assert log.worker.startswith("local ")


# Step names that would break SQL built by pasting them in.
QUOTED = SagaDefinition(
    name="test.quoted",
    steps=(
        Step(name="it's local", action=noop_step, local=True),
        Step(name="a \\ b; DROP TABLE x --", action=noop_step, compensation=noop_step),
        Step(name="$$ c", action=noop_step),
    ),
)


def test_step_names_that_need_quoting_are_written_as_they_are(settings: Any) -> None:
    settings.SAGA_DEFINITIONS = [*settings.SAGA_DEFINITIONS, "sagas.tests.test_services.QUOTED"]
    registry.reset()
    try:
        saga_id = start("test.quoted", {"n": 1})
    finally:
        registry.reset()

    steps = list(SagaStep.objects.filter(saga_id=saga_id).order_by("position"))
    assert [(s.name, s.status, s.compensable) for s in steps] == [
        ("it's local", "SUCCEEDED", False),
        ("a \\ b; DROP TABLE x --", "PENDING", True),
        ("$$ c", "PENDING", False),
    ]
    assert Saga.objects.get(pk=saga_id).current_step == "a \\ b; DROP TABLE x --"
    assert SagaStepExecution.objects.get(saga_id=saga_id).step == "it's local"


def test_a_failing_local_step_rolls_the_whole_start_back() -> None:
    with pytest.raises(StepBusinessFailure) as raised:
        start("test.local", {"fail_at": "create"})

    assert raised.value.code == "test_failure"
    assert not Saga.objects.exists()
    assert not Call.objects.exists() and not Effect.objects.exists()


def test_retry_and_skip_refuse_sagas_that_are_not_compensation_failed() -> None:
    saga_id = start("test.effects")
    with pytest.raises(SagaStateConflict, match="RUNNING"):
        saga_retry(saga_id=saga_id, actor="user:1")
    with pytest.raises(SagaStateConflict):
        saga_skip_compensation(saga_id=saga_id, actor="user:1", reason="because")
    assert not SagaOperatorAction.objects.exists()


def test_operator_actions_on_unknown_sagas_and_skips_without_reason_are_refused() -> None:
    missing = uuid.uuid4()
    with pytest.raises(SagaNotFound):
        saga_retry(saga_id=missing, actor="user:1")
    with pytest.raises(SagaNotFound):
        saga_skip_compensation(saga_id=missing, actor="user:1", reason="x")
    saga_id = failed_compensation_saga()
    for reason in ("", "   "):
        with pytest.raises(ReasonRequired):
            saga_skip_compensation(saga_id=saga_id, actor="user:1", reason=reason)
    assert Saga.objects.get(pk=saga_id).status == SagaStatus.COMPENSATION_FAILED


def test_retry_resumes_the_failed_compensation_and_records_who_and_why() -> None:
    saga_id = failed_compensation_saga()

    saga_retry(saga_id=saga_id, actor="user:ops", reason="gateway fixed")

    saga = Saga.objects.get(pk=saga_id)
    assert (saga.status, saga.current_step, saga.current_phase) == (
        "COMPENSATING",
        "b",
        "compensation",
    )
    assert saga.due_at is not None and saga.round_start == saga.attempt == 1
    assert step_statuses(saga_id)["b"] == StepStatus.COMPENSATING
    action = SagaOperatorAction.objects.get(saga_id=saga_id)
    assert (action.action, action.actor, action.reason, action.step) == (
        "retry",
        "user:ops",
        "gateway fixed",
        "b",
    )
    assert drive(saga_id).status == SagaStatus.COMPENSATED
    # The compensation's participant saw why the saga compensates.
    assert Saga.objects.get(pk=saga_id).context["b:compensation:failure"] == "test_failure"


def test_skip_marks_the_compensation_skipped_and_the_saga_carries_on() -> None:
    saga_id = failed_compensation_saga()

    saga_skip_compensation(saga_id=saga_id, actor="user:ops", reason="refunded by phone")

    assert step_statuses(saga_id)["b"] == StepStatus.SKIPPED
    saga = drive(saga_id)
    assert saga.status == SagaStatus.COMPENSATED
    assert step_statuses(saga_id)["a"] == StepStatus.COMPENSATED
    assert ("b", "compensation") not in effects(saga_id)
    action = SagaOperatorAction.objects.get(saga_id=saga_id)
    assert (action.action, action.reason) == ("skip_compensation", "refunded by phone")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["retry", "skip"])
def test_two_operators_acting_at_once_cause_one_action(action: str) -> None:
    saga_id = failed_compensation_saga()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def click(actor: str) -> None:
        try:
            barrier.wait(timeout=10)
            if action == "retry":
                saga_retry(saga_id=saga_id, actor=actor)
            else:
                saga_skip_compensation(saga_id=saga_id, actor=actor, reason="done by hand")
            outcomes.append("ok")
        except SagaStateConflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=click, args=(f"user:{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["conflict", "ok"]
    assert SagaOperatorAction.objects.filter(saga_id=saga_id).count() == 1


@pytest.mark.internals
def test_saga_detail_loads_everything_in_four_queries(django_assert_num_queries: Any) -> None:
    # One clock for the whole story, so the log's times follow the order things happened.
    clock = SteppingClock()
    saga_id = failed_compensation_saga(clock=clock)
    saga_retry(saga_id=saga_id, actor="user:ops", now=clock())
    drive(saga_id, clock=clock)

    with django_assert_num_queries(4):
        detail = saga_detail(saga_id=saga_id)
        steps = [(s.name, s.status, s.attempts, s.started_at is not None) for s in detail.steps]
        log = [(e.step, e.phase, e.attempt, e.status) for e in detail.log]
        actions = [(a.action, a.actor) for a in detail.operator_actions]

    assert detail.saga.status == SagaStatus.COMPENSATED
    assert detail.failure is not None and detail.failure.code == "test_failure"
    assert (detail.failure.step, detail.current_step, detail.current_phase) == (
        "d",
        "a",
        Phase.COMPENSATION,
    )
    assert steps == [
        ("a", "COMPENSATED", 1, True),
        ("b", "COMPENSATED", 2, True),
        ("c", "SUCCEEDED", 1, True),
        ("d", "FAILED", 1, True),
    ]
    assert log == [
        ("a", "action", 1, "SUCCEEDED"),
        ("b", "action", 1, "SUCCEEDED"),
        ("c", "action", 1, "SUCCEEDED"),
        ("d", "action", 1, "FAILED"),
        ("b", "compensation", 1, "FAILED"),
        ("b", "compensation", 2, "SUCCEEDED"),
        ("a", "compensation", 1, "SUCCEEDED"),
    ]
    assert actions == [("retry", "user:ops")]
    with pytest.raises(SagaNotFound):
        saga_detail(saga_id=uuid.uuid4())


def test_sagas_for_a_subject_come_newest_first_and_lists_filter() -> None:
    older = start("test.effects", subject="order:5")
    newer = start("test.local", subject="order:5")
    start("test.effects", subject="order:6")
    drive(older)

    assert list(sagas_for_subject(subject="order:5").values_list("id", flat=True)) == [newer, older]
    assert set(saga_list(status="COMPLETED").values_list("id", flat=True)) == {older}
    assert saga_list(saga_type="test.local").get().id == newer
    assert saga_list(status=SagaStatus.RUNNING, saga_type="test.effects").count() == 1


def test_retry_and_skip_permissions_exist_for_the_api_and_admin() -> None:
    codenames = set(
        Permission.objects.filter(content_type__app_label="sagas").values_list(
            "codename", flat=True
        )
    )
    assert {"retry_saga", "skip_compensation", "view_saga"} <= codenames
