"""A saga's deadline and the "needs attention" queue: who lands there, and skipping by hand.

On real PostgreSQL, driven in this process (``sagas.tests.harness``); the API and the
command are the same service's edges.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone
from rest_framework.test import APIClient

from sagas import operations
from sagas.admin import _with_failing_error, attention_of
from sagas.errors import ReasonRequired, StepNotSkippable
from sagas.faults import fault_rule_set, fault_rules_clear
from sagas.models import NeedsAttention, Saga, SagaOperatorAction
from sagas.operations import saga_skip_step
from sagas.registry import get_definition, saga_deadline
from sagas.selectors import attention_counts, failed_compensation_changes
from sagas.services import sagas_sweep
from sagas.statuses import Attention, FaultMode, OperatorActionKind, Phase, SagaStatus
from sagas.tests.harness import (
    SteppingClock,
    drive,
    failed_compensation_saga,
    run_step,
    start,
    step_statuses,
)

pytestmark = pytest.mark.django_db


def overdue(saga_id: UUID) -> None:
    """Move the saga's deadline an hour into the past."""
    Saga.objects.filter(pk=saga_id).update(finish_by=Now() - timedelta(hours=1))


def why(saga_id: UUID) -> Attention | None:
    # As the admin's queue reads it: with whether the deadline passed by the database's clock.
    saga = _with_failing_error(NeedsAttention.objects.filter(pk=saga_id)).first()
    return None if saga is None else attention_of(saga)


def retrying_forward_saga() -> UUID:
    """Return a ``test.forward`` saga whose pivot b failed past its three attempts."""
    fault_rule_set(
        saga_type="test.forward", step="b", phase=Phase.ACTION, mode=FaultMode.TRANSIENT, times=None
    )
    saga_id = start("test.forward")
    clock = SteppingClock()  # one clock for every attempt: each backoff is due at the next
    for _ in range(4):  # a, then b three times
        assert run_step(saga_id, clock=clock).ran
    saga = Saga.objects.get(pk=saga_id)
    assert (saga.status, saga.current_step, saga.attempt) == (SagaStatus.RUNNING, "b", 3)
    return saga_id


def _queue() -> set[UUID]:
    return {saga.pk for saga in NeedsAttention.objects.all()}


def test_a_saga_starts_with_its_definitions_deadline(settings: Any) -> None:
    saga = Saga.objects.get(pk=start("test.effects"))
    assert saga.finish_by - saga.created_at == get_definition("test.effects").deadline

    settings.SAGA_DEADLINES = {"test.effects": 90}
    assert saga_deadline(get_definition("test.effects")) == timedelta(seconds=90)
    saga = Saga.objects.get(pk=start("test.effects"))
    assert saga.finish_by - saga.created_at == timedelta(seconds=90)


def test_the_api_shows_the_deadline(operator: APIClient) -> None:
    saga_id = start("test.effects")

    body = operator.get(f"/api/sagas/{saga_id}/").json()

    finish_by = Saga.objects.get(pk=saga_id).finish_by
    assert body["deadline"] == finish_by.isoformat().replace("+00:00", "Z")


def test_a_running_saga_past_its_deadline_is_queued_and_skipping_its_step_moves_it_on(
    operator: APIClient,
) -> None:
    saga_id = start("test.effects")
    on_time = start("test.effects")
    assert saga_id not in _queue()
    overdue(saga_id)
    assert _queue() == {saga_id}
    assert why(saga_id) is Attention.PAST_DEADLINE

    skipped = operator.post(
        f"/api/sagas/{saga_id}/skip/", {"reason": "a was done by hand"}, format="json"
    )

    assert skipped.status_code == 202, skipped.content
    body = skipped.json()
    assert body["steps"][0]["status"] == "SUCCEEDED"
    assert body["operator_actions"][0]["action"] == OperatorActionKind.SKIP_STEP
    assert body["operator_actions"][0]["reason"] == "a was done by hand"
    assert body["operator_actions"][0]["step"] == "a"
    saga = Saga.objects.get(pk=saga_id)
    assert (saga.current_step, saga.attempt) == ("b", 0)
    assert drive(saga_id).status == SagaStatus.COMPLETED
    assert step_statuses(saga_id) == dict.fromkeys("abcd", "SUCCEEDED")
    # The a step never ran: only b, c and d logged an attempt.
    assert {e.step for e in Saga.objects.get(pk=saga_id).executions.all()} == {"b", "c", "d"}
    assert saga_id not in _queue()
    assert on_time not in _queue()


def test_a_step_retrying_forward_past_the_point_of_no_return_is_queued_and_skipped() -> None:
    saga_id = retrying_forward_saga()
    assert why(saga_id) is Attention.RETRYING_FORWARD

    saga_skip_step(saga_id=saga_id, actor="user:1", reason="charge confirmed with the bank")

    fault_rules_clear()
    assert drive(saga_id).status == SagaStatus.COMPLETED
    assert step_statuses(saga_id) == {"a": "SUCCEEDED", "b": "SUCCEEDED", "c": "SUCCEEDED"}
    action = SagaOperatorAction.objects.get(saga_id=saga_id)
    assert (action.action, action.step, action.actor) == ("skip_step", "b", "user:1")


def test_a_compensation_retrying_past_the_deadline_is_skipped_and_compensating_goes_on() -> None:
    fault_rule_set(
        saga_type="test.effects",
        step="b",
        phase=Phase.COMPENSATION,
        mode=FaultMode.TRANSIENT,
        times=None,
    )
    saga_id = start("test.effects", {"fail_at": "d"})
    clock = SteppingClock()
    while Saga.objects.get(pk=saga_id).current_phase != "compensation" or (
        Saga.objects.get(pk=saga_id).current_step != "b"
    ):
        assert run_step(saga_id, clock=clock).ran
    assert run_step(saga_id, clock=clock).ran  # b's compensation fails once, retries
    assert Saga.objects.get(pk=saga_id).status == SagaStatus.COMPENSATING
    overdue(saga_id)

    saga_skip_step(saga_id=saga_id, actor="user:1", reason="released by hand")

    fault_rules_clear()
    assert drive(saga_id).status == SagaStatus.COMPENSATED
    assert step_statuses(saga_id)["b"] == "SKIPPED"
    # Not a failed compensation's skip: the saga never waited in COMPENSATION_FAILED.
    assert SagaOperatorAction.objects.get(saga_id=saga_id).action == "skip_step"
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    assert failed_compensation_changes(since=hour - timedelta(hours=1)) == {}


def test_skip_without_a_reason_is_400_and_on_a_saga_needing_no_attention_409(
    operator: APIClient,
) -> None:
    saga_id = start("test.effects")

    for body in ({}, {"reason": "  "}, {"reason": 7}):
        refused = operator.post(f"/api/sagas/{saga_id}/skip/", body, format="json")
        assert refused.status_code == 400, body
    conflict = operator.post(f"/api/sagas/{saga_id}/skip/", {"reason": "why"}, format="json")
    assert conflict.status_code == 409
    assert "not retrying forward" in conflict.json()["detail"]
    with pytest.raises(ReasonRequired):
        saga_skip_step(saga_id=saga_id, actor="user:1", reason=" ")
    assert not SagaOperatorAction.objects.filter(saga_id=saga_id).exists()


def test_a_step_an_attempt_is_running_is_not_skipped() -> None:
    saga_id = start("test.effects")
    overdue(saga_id)
    Saga.objects.filter(pk=saga_id).update(
        claim_token=UUID(int=1), lease_until=Now() + timedelta(minutes=1), due_at=None
    )

    with pytest.raises(StepNotSkippable, match="running"):
        saga_skip_step(saga_id=saga_id, actor="user:1", reason="done")


def test_a_saga_that_moves_between_load_and_write_is_not_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    saga_id = start("test.effects")
    overdue(saga_id)
    real = operations.outcome_record

    def an_attempt_lands_first(*args: Any, **kwargs: Any) -> Any:
        Saga.objects.filter(pk=saga_id).update(attempt=F("attempt") + 1)
        return real(*args, **kwargs)

    monkeypatch.setattr(operations, "outcome_record", an_attempt_lands_first)

    with pytest.raises(StepNotSkippable, match="moved while you acted"):
        saga_skip_step(saga_id=saga_id, actor="user:1", reason="done")
    assert not SagaOperatorAction.objects.exists()
    assert Saga.objects.get(pk=saga_id).current_step == "a"


def test_a_failed_compensation_is_skipped_through_the_same_endpoint(operator: APIClient) -> None:
    saga_id = failed_compensation_saga()
    assert why(saga_id) is Attention.COMPENSATION_FAILED

    skipped = operator.post(f"/api/sagas/{saga_id}/skip/", {"reason": "by hand"}, format="json")

    assert skipped.status_code == 202
    assert skipped.json()["operator_actions"][0]["action"] == "skip_compensation"


def test_skipping_a_step_needs_the_skip_permission() -> None:
    saga_id = start("test.effects")
    overdue(saga_id)
    user = get_user_model().objects.create_user(username="retrier", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=["view_saga", "retry_saga"]))
    client = APIClient()
    client.force_authenticate(user)

    refused = client.post(f"/api/sagas/{saga_id}/skip/", {"reason": "x"}, format="json")

    assert refused.status_code == 403
    assert not SagaOperatorAction.objects.exists()


def test_the_skip_step_command_needs_a_reason_and_records_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    saga_id = retrying_forward_saga()
    with pytest.raises(CommandError):
        call_command("skip_step", str(saga_id))

    call_command("skip_step", str(saga_id), "--reason", "charged, confirmed by the bank")

    assert "step skipped" in capsys.readouterr().out
    action = SagaOperatorAction.objects.get(saga_id=saga_id)
    assert action.actor.startswith("cli")
    assert action.reason == "charged, confirmed by the bank"
    with pytest.raises(CommandError, match="cannot skip a step"):
        call_command("skip_step", str(saga_id), "--reason", "again")


def test_the_sweeper_logs_a_saga_past_its_deadline_once_at_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    saga_id = start("test.effects")
    finished = start("test.effects")
    assert drive(finished).status == SagaStatus.COMPLETED
    Saga.objects.filter(pk__in=[saga_id, finished]).update(finish_by=Now() - timedelta(hours=1))
    now = timezone.now()

    with caplog.at_level(logging.ERROR, logger="sagas.sweeper"):
        first = sagas_sweep(now=now)
        second = sagas_sweep(now=now + timedelta(seconds=5))

    assert (first.overdue, second.overdue) == (1, 0)
    lines = [r for r in caplog.records if "passed its deadline" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.ERROR
    assert lines[0].saga_id == str(saga_id)  # type: ignore[attr-defined]
    assert lines[0].step == "a"  # type: ignore[attr-defined]
    assert Saga.objects.get(pk=saga_id).overdue_reported_at is not None


def test_the_counts_cover_the_queue() -> None:
    failed_compensation_saga()
    late = start("test.effects")
    overdue(late)
    start("test.effects")

    counts = attention_counts()

    assert (counts.needing, counts.past_deadline) == (2, 1)
