"""Claim an attempt of a saga step for this process, or find that the message is a no-op.

A claim marks the attempt running on the saga row: a fresh claim token, the attempt number,
the worker's host, pid and name, and a deadline (the lease) past which the sweeper counts the
attempt as stalled. The step row shows RUNNING (COMPENSATING for a compensation).

Two paths, one rule (``sagas.engine.decide_claim``):

- **Fast path**, the normal case: one conditional UPDATE, in one round trip, claims the
  attempt when the saga is moving, the message names its cursor, nothing holds it and it is
  due. Those conditions are exactly the cases in which ``decide_claim`` answers a plain
  ``Claim`` (tests hold the two together).
- **Locked path**, when the fast path claims nothing: lock the saga row, let
  ``decide_claim`` decide, and act: ignore the message (duplicate, stale, early, or a live
  attempt holds the step), take over an attempt whose worker process died (logging the lost
  run), or give up on one that keeps killing its workers (the poison guard).

What must be durable when: a claim lost in a database crash is harmless (the step is just
claimable again, and its message or the sweeper runs it), so the fast path commits without
waiting for the WAL flush (``synchronous_commit`` off for that one transaction); the outcome
that follows is committed durably and flushes the claim with it. Measured: a third less
wall time per step, and half a millisecond less PostgreSQL CPU (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Coalesce

from infrastructure.db import server_binding_cursor
from sagas import workers
from sagas.definitions import Failure, SagaDefinition
from sagas.engine import (
    EARLY_TOLERANCE,
    Claim,
    ClaimView,
    Cursor,
    GiveUp,
    Ignore,
    Poisoned,
    SagaState,
    claimed_step_status,
    decide,
    decide_claim,
)
from sagas.errors import UnknownSagaType
from sagas.models import Saga, SagaStep
from sagas.recorder import AttemptRecord, lost_attempt_log, saga_state, transition_apply
from sagas.registry import get_definition
from sagas.statuses import MOVING_SAGA_STATUSES, Phase, SagaStatus
from sagas.workers import WorkerIdentity


@dataclass(frozen=True)
class Claimed:
    """Describe an attempt this process now holds: what to run, with what, under which token."""

    saga_type: str
    definition: SagaDefinition
    state: SagaState
    token: UUID
    started_at: datetime
    context: dict[str, Any]
    correlation_id: str
    actor: str


@dataclass(frozen=True)
class NotClaimed:
    """Say why a message runs nothing (a no-op, or the poison guard gave the step up)."""

    detail: str


def lease_length(timeout: float) -> timedelta:
    """Return how long a claim holds before the sweeper may count the attempt as stalled.

    Past ``timeout`` the participant is interrupted (soft limit); a grace later Celery kills
    the process (hard limit); one more grace lets that death be reported before anyone else
    steps in.
    """
    grace = float(settings.SAGA_HARD_TIME_LIMIT_GRACE_SECONDS)
    return timedelta(seconds=timeout + 2 * grace)


def attempt_claim(
    *,
    saga_id: UUID,
    saga_type: str,
    step: str,
    phase: Phase,
    worker: WorkerIdentity,
    now: datetime,
    abandoned: UUID | None = None,
) -> Claimed | NotClaimed:
    """Claim the attempt a message asks for, or say why not.

    ``abandoned`` is a claim token the sender of the message held and gave up (its outcome
    could not be written: the database went away under it). A claim with that token counts
    as dead, as if its process had died, so the attempt is taken over at once instead of at
    its deadline. Only the claimant knows its token, so nobody else can free a live claim.
    """
    claimed = _claim_fast(
        saga_id=saga_id, saga_type=saga_type, step=step, phase=phase, worker=worker, now=now
    )
    if claimed is not None:
        return claimed
    return _claim_locked(
        saga_id=saga_id, step=step, phase=phase, worker=worker, now=now, abandoned=abandoned
    )


def _fast_sql(phase: Phase, *, unflushed: bool) -> str:
    saga_table = connection.ops.quote_name(Saga._meta.db_table)
    step_table = connection.ops.quote_name(SagaStep._meta.db_table)
    prefix = "action" if phase is Phase.ACTION else "compensation"
    # Table and column names come from the models and a two-value switch; values are bound.
    # Outside a transaction block the statement commits on its own, and then without waiting
    # for its WAL to reach the disk (see the module's docstring): ``set_config(..., true)``
    # is ``SET LOCAL``, in the same statement so that it stays one round trip and can be
    # prepared. The final SELECT reads the CTE, since PostgreSQL skips one nobody reads.
    unflushed_cte = (
        "unflushed AS (SELECT set_config('synchronous_commit', 'off', true) AS setting),\n"
        if unflushed
        else ""
    )
    return f"""
WITH {unflushed_cte}saga AS (
    UPDATE {saga_table} SET
        attempt = attempt + 1,
        redeliveries = 0,
        due_at = NULL,
        claim_token = %(token)s,
        claimed_at = %(now)s,
        claim_host = %(host)s,
        claim_pid = %(pid)s,
        claim_worker = %(worker)s,
        deadline = %(deadline)s,
        updated_at = %(now)s
    WHERE id = %(saga_id)s
      AND saga_type = %(saga_type)s
      AND status = ANY(%(moving)s::text[])
      AND current_step = %(step)s
      AND current_phase = %(phase)s
      AND claim_token IS NULL
      AND due_at <= %(due_by)s
    RETURNING id, status, attempt, round_start, context, correlation_id, actor,
              failure_step, failure_code, failure_message
), step AS (
    UPDATE {step_table} SET
        status = %(step_status)s,
        {prefix}_attempts = (SELECT attempt FROM saga),
        {prefix}_started_at = COALESCE({prefix}_started_at, %(now)s)
    -- The key comes from the parameters, not a join with the CTE: equality on a unique
    -- index, so even a plan made while the table was small looks the row up by index
    -- (a prepared generic plan joined with the CTE chose a sequential scan, and kept it).
    WHERE saga_id = %(saga_id)s AND name = %(step)s AND EXISTS (SELECT FROM saga)
    RETURNING 1
)
SELECT status, attempt, round_start, context, correlation_id, actor,
       failure_step, failure_code, failure_message
FROM saga{", unflushed" if unflushed else ""}
"""  # noqa: S608


#: By (phase, whether the claim commits on its own, unflushed).
_FAST_SQL = {
    (phase, unflushed): _fast_sql(phase, unflushed=unflushed)
    for phase in Phase
    for unflushed in (False, True)
}


def _claim_fast(
    *,
    saga_id: UUID,
    saga_type: str,
    step: str,
    phase: Phase,
    worker: WorkerIdentity,
    now: datetime,
) -> Claimed | None:
    try:
        definition = get_definition(saga_type)
        step_index = definition.index(step)
    except (UnknownSagaType, KeyError):
        return None
    token = uuid.uuid4()
    params: dict[str, Any] = {
        "saga_id": saga_id,
        "saga_type": saga_type,
        "step": step,
        "phase": phase.value,
        "moving": sorted(s.value for s in MOVING_SAGA_STATUSES),
        "due_by": now + EARLY_TOLERANCE,
        "token": token,
        "now": now,
        "host": worker.host,
        "pid": worker.pid,
        "worker": worker.name,
        "deadline": now + lease_length(definition.steps[step_index].timeout),
        "step_status": claimed_step_status(phase).value,
    }
    # Prepared after a few runs on the connection (infrastructure.db): this runs on every step.
    with server_binding_cursor() as cursor:
        cursor.execute(_FAST_SQL[phase, not connection.in_atomic_block], params)
        row = cursor.fetchone()
    if row is None:
        return None
    status, attempt, round_start, context, correlation_id, actor, f_step, f_code, f_msg = row
    return Claimed(
        saga_type=saga_type,
        definition=definition,
        state=SagaState(
            status=SagaStatus(status),
            cursor=Cursor(step_index, phase),
            attempt=attempt,
            round_start=round_start,
            redeliveries=0,
            failure=Failure(step=f_step, code=f_code, message=f_msg) if f_code else None,
        ),
        token=token,
        started_at=now,
        # Django reads jsonb as text so that JSONField can decode it; so do we.
        context=json.loads(context) if isinstance(context, str) else dict(context),
        correlation_id=correlation_id,
        actor=actor,
    )


def _claim_locked(
    *,
    saga_id: UUID,
    step: str,
    phase: Phase,
    worker: WorkerIdentity,
    now: datetime,
    abandoned: UUID | None = None,
) -> Claimed | NotClaimed:
    with transaction.atomic(durable=True):
        saga = Saga.objects.select_for_update(no_key=True).filter(pk=saga_id).first()
        if saga is None:
            return NotClaimed("no such saga")
        definition = get_definition(saga.saga_type)
        try:
            step_index = definition.index(step)
        except KeyError:
            return NotClaimed(f"saga type {saga.saga_type} has no step {step!r}")
        state = saga_state(saga, definition)
        held = saga.claim_token is not None
        view = ClaimView(
            due_at=saga.due_at,
            claimed=held,
            claimant_dead=held
            and (
                (abandoned is not None and saga.claim_token == abandoned)
                or workers.claimant_dead(
                    host=saga.claim_host, pid=saga.claim_pid, token=saga.claim_token
                )
            ),
            lease_expired=held and saga.deadline is not None and saga.deadline <= now,
        )
        decision = decide_claim(
            state,
            view,
            step_index=step_index,
            phase=phase,
            now=now,
            max_redeliveries=int(settings.SAGA_MAX_REDELIVERIES),
        )
        if isinstance(decision, Ignore):
            return NotClaimed(decision.reason)
        if isinstance(decision, GiveUp):
            transition = decide(definition, state, Poisoned(decision.error), rand=random.random())  # noqa: S311 (jitter, not secrets)
            transition_apply(
                saga_id=saga.id,
                saga_type=saga.saga_type,
                definition=definition,
                state=state,
                transition=transition,
                now=now,
                claim_token=saga.claim_token,
                attempt=AttemptRecord(
                    attempt=max(state.attempt, 1),
                    started_at=saga.claimed_at,
                    worker=saga.claim_worker,
                ),
            )
            return NotClaimed(decision.error)
        assert isinstance(decision, Claim)
        if decision.takeover:
            lost_attempt_log(
                saga=saga,
                definition=definition,
                error=(
                    f"worker {saga.claim_worker} died during the attempt; "
                    f"taken over by {worker.name} (redelivery {decision.redeliveries})"
                ),
                now=now,
            )
        token = uuid.uuid4()
        Saga.objects.filter(pk=saga.id).update(
            attempt=decision.attempt,
            redeliveries=decision.redeliveries,
            due_at=None,
            claim_token=token,
            claimed_at=now,
            claim_host=worker.host,
            claim_pid=worker.pid,
            claim_worker=worker.name,
            deadline=now + lease_length(definition.steps[step_index].timeout),
            updated_at=now,
        )
        prefix = "action" if phase is Phase.ACTION else "compensation"
        SagaStep.objects.filter(saga_id=saga.id, position=step_index).update(
            status=claimed_step_status(phase).value,
            **{
                f"{prefix}_attempts": decision.attempt,
                f"{prefix}_started_at": Coalesce(F(f"{prefix}_started_at"), now),
            },
        )
    return Claimed(
        saga_type=saga.saga_type,
        definition=definition,
        state=SagaState(
            status=state.status,
            cursor=state.cursor,
            attempt=decision.attempt,
            round_start=state.round_start,
            redeliveries=decision.redeliveries,
            failure=state.failure,
        ),
        token=token,
        started_at=now,
        context=saga.context,
        correlation_id=saga.correlation_id,
        actor=saga.actor,
    )
