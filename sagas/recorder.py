"""Write a decided transition to the saga's rows, and schedule the next attempt's message.

Every change of a saga after its start goes through :func:`transition_apply`: an attempt's
outcome (sagas.runner), a stalled attempt timed out or a poison message given up (the sweeper
and the claim), an operator's retry or skip (sagas.services). The next step's message is
published only after the write commits (at once when the caller is in autocommit, when its
transaction commits otherwise).

The write is one SQL statement: the saga row, the step row and the step-log row change
together or not at all, in one round trip to PostgreSQL, which is what keeps the engine's
cost per step low (see docs/benchmarks.md). An outcome carries a compare-and-set on the claim
token: when the attempt's claim was taken over or timed out in the meantime, nothing is
written and the late outcome is dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import connection

from infrastructure.db import server_binding_cursor
from sagas.definitions import Failure, SagaDefinition
from sagas.dispatch import StepMessage, countdown_allowed, publish_on_commit
from sagas.engine import Cursor, SagaState, Transition
from sagas.models import Saga, SagaStep, SagaStepExecution
from sagas.statuses import AttemptStatus, Phase, SagaStatus, StepStatus

#: Step statuses that close a phase of the step (its ``*_finished_at`` is set).
_PHASE_DONE = {
    StepStatus.SUCCEEDED,
    StepStatus.FAILED,
    StepStatus.COMPENSATED,
    StepStatus.COMPENSATION_FAILED,
    StepStatus.SKIPPED,
}


def saga_state(saga: Saga, definition: SagaDefinition) -> SagaState:
    """Read the engine's view of a saga from its row."""
    return SagaState(
        status=SagaStatus(saga.status),
        cursor=Cursor(definition.index(saga.current_step), Phase(saga.current_phase)),
        attempt=saga.attempt,
        round_start=saga.round_start,
        redeliveries=saga.redeliveries,
        failure=saga.failure,
    )


@dataclass(frozen=True)
class AttemptRecord:
    """Describe the attempt a transition closes, for its step-log row."""

    attempt: int
    started_at: datetime | None
    worker: str


def _table(model: type[Saga | SagaStep | SagaStepExecution]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


# Table names come from the models; every value is a bound parameter.
_TRANSITION_SQL = f"""
WITH saga AS (
    UPDATE {_table(Saga)} SET
        status = %(status)s,
        context = COALESCE(context || %(merge)s::jsonb, context),
        current_step = %(current_step)s,
        current_phase = %(current_phase)s,
        attempt = %(attempt)s,
        round_start = %(round_start)s,
        redeliveries = 0,
        due_at = %(due_at)s,
        dispatched_at = %(dispatched_at)s,
        deadline = NULL,
        claim_token = NULL,
        claimed_at = NULL,
        claim_host = '',
        claim_pid = NULL,
        claim_worker = '',
        failure_step = %(failure_step)s,
        failure_code = %(failure_code)s,
        failure_message = %(failure_message)s,
        updated_at = %(now)s,
        finished_at = COALESCE(%(finished_at)s, finished_at)
    WHERE id = %(saga_id)s
      AND (%(claim_token)s::uuid IS NULL OR claim_token = %(claim_token)s::uuid)
    RETURNING id
), step AS (
    UPDATE {_table(SagaStep)} SET
        status = %(step_status)s,
        last_error = CASE WHEN %(error)s = '' THEN last_error ELSE %(error)s END,
        action_finished_at = COALESCE(%(action_finished_at)s, action_finished_at),
        compensation_started_at = COALESCE(compensation_started_at, %(skipped_at)s),
        compensation_finished_at = COALESCE(%(compensation_finished_at)s, compensation_finished_at)
    -- Keyed by the parameters on a unique index, not joined with the CTE, so that the
    -- prepared statement's generic plan looks the row up by index (see sagas.claims).
    WHERE saga_id = %(saga_id)s AND position = %(position)s AND EXISTS (SELECT FROM saga)
    RETURNING 1
), log AS (
    INSERT INTO {_table(SagaStepExecution)}
        (saga_id, step, position, phase, attempt, status, error, started_at, finished_at,
         worker, at)
    SELECT saga.id, %(step)s::text, %(position)s::smallint, %(phase)s::text,
           %(log_attempt)s::integer, %(log_status)s::text, %(error)s::text,
           %(started_at)s::timestamptz, %(now)s::timestamptz, %(worker)s::text,
           %(now)s::timestamptz
    FROM saga
    WHERE %(log_status)s::text IS NOT NULL
    RETURNING 1
)
SELECT count(*) FROM saga
"""  # noqa: S608


def transition_apply(
    *,
    saga_id: UUID,
    saga_type: str,
    definition: SagaDefinition,
    state: SagaState,
    transition: Transition,
    now: datetime,
    claim_token: UUID | None,
    attempt: AttemptRecord | None,
) -> bool:
    """Write ``transition`` and schedule what follows; return False if the claim was lost.

    ``state`` is the saga as the decision saw it: the claim (``claim_token``) or the row lock
    (operator actions, which pass None) guarantees nobody changed it since.
    """
    old = state.cursor
    step = definition.steps[old.index]
    failure: Failure | None = transition.failure
    params: dict[str, Any] = {
        "saga_id": saga_id,
        "claim_token": claim_token,
        "status": transition.saga_status.value,
        "merge": json.dumps(dict(transition.merge)) if transition.merge else None,
        "current_step": step.name,
        "current_phase": old.phase.value,
        "attempt": state.attempt,
        "round_start": state.round_start,
        "due_at": None,
        "dispatched_at": None,
        "failure_step": failure.step if failure else "",
        "failure_code": failure.code if failure else "",
        "failure_message": failure.message if failure else "",
        "now": now,
        "finished_at": now if transition.finished else None,
        "step_status": transition.step_status.value,
        "error": transition.error,
        "position": old.index,
        "action_finished_at": None,
        "compensation_finished_at": None,
        "skipped_at": now if transition.step_status is StepStatus.SKIPPED else None,
        "step": step.name,
        "phase": old.phase.value,
        "log_attempt": max(attempt.attempt, 1) if attempt else 1,
        "log_status": (
            transition.attempt_status.value
            if attempt is not None and transition.attempt_status is not None
            else None
        ),
        "started_at": attempt.started_at if attempt else None,
        "worker": attempt.worker if attempt else "",
    }
    if transition.step_status in _PHASE_DONE:
        params[f"{'action' if old.phase is Phase.ACTION else 'compensation'}_finished_at"] = now
    message = _schedule(
        params,
        saga_id=saga_id,
        saga_type=saga_type,
        definition=definition,
        state=state,
        transition=transition,
        now=now,
    )
    # Prepared after a few runs on the connection (infrastructure.db): this runs on every step.
    with server_binding_cursor() as cursor:
        cursor.execute(_TRANSITION_SQL, params)
        row = cursor.fetchone()
    if not row or not row[0]:
        return False
    if message is not None:
        publish_on_commit(message)
    return True


def _schedule(
    params: dict[str, Any],
    *,
    saga_id: UUID,
    saga_type: str,
    definition: SagaDefinition,
    state: SagaState,
    transition: Transition,
    now: datetime,
) -> StepMessage | None:
    """Put the next attempt's cursor and due time in ``params``; return its message, if sent."""
    schedule = transition.next
    if schedule is None:
        return None
    target: Cursor = schedule.cursor
    if target != state.cursor:
        params.update(
            current_step=definition.steps[target.index].name,
            current_phase=target.phase.value,
            attempt=0,
            round_start=0,
        )
    elif schedule.new_round:
        params["round_start"] = state.attempt
    params["due_at"] = now + timedelta(seconds=schedule.delay)
    if not countdown_allowed(schedule.delay):
        # Left to the sweeper: a long countdown would sit in one worker's memory.
        return None
    params["dispatched_at"] = now
    return StepMessage(
        saga_id=saga_id,
        saga_type=saga_type,
        step=definition.steps[target.index],
        phase=target.phase,
        delay=schedule.delay,
    )


def lost_attempt_log(*, saga: Saga, definition: SagaDefinition, error: str, now: datetime) -> None:
    """Log the attempt a dead worker left behind (the takeover reruns it)."""
    SagaStepExecution.objects.create(
        saga_id=saga.id,
        step=saga.current_step,
        position=definition.index(saga.current_step),
        phase=saga.current_phase,
        attempt=max(saga.attempt, 1),
        status=AttemptStatus.WORKER_LOST.value,
        error=error,
        started_at=saga.claimed_at,
        finished_at=now,
        worker=saga.claim_worker,
        at=now,
    )
