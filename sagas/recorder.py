"""Own the saga tables' SQL: load a saga, claim an attempt, record an outcome.

Every change of a saga after its start is *load → decide → apply*, and this module holds the
load and the apply; the decision is always one of ``sagas.engine``'s pure functions:

- :func:`saga_load` reads a saga's row (one statement);
- :func:`claim_write` writes a claim ``decide_claim`` granted (one statement);
- :func:`outcome_record` decides what an outcome (or an operator's action) changes and
  writes it (one statement), then schedules the next attempt's message. The runner, the
  sweeper, the claim's poison guard and the operator actions all record through it.

Neither write takes a lock: each is a compare-and-set on the saga row as it was loaded (its
status, cursor, attempt and claim token), so a write whose saga changed in the meantime
(a duplicate message claimed first, the sweeper timed the attempt out, another operator
acted) writes nothing, and its caller is told. Each write changes the saga row, the step row
and, when an attempt ends, the attempt log together, in one round trip. The next step's
message is published only after the write commits (at once in autocommit, when the caller's
transaction commits otherwise).

A request to stop a saga (:func:`stop_request_record`) is the one other write: it runs in
its caller's transaction with the saga's row locked, records who asked, and, when no attempt
runs, records the stop's transition through :func:`outcome_record` in the same transaction.
The compare-and-set includes the request, so an outcome decided before a request landed
writes nothing; :func:`outcome_record` then loads the saga again and decides with the
request seen (see there).

Column lists come from the models' fields. A saga column is either set at the start and
never again (:data:`SAGA_SET_AT_START`), set by a stop request and never again
(:data:`SAGA_SET_BY_STOP_REQUEST`), or written by every recorded outcome; a step column
is set at the start, by the claim, or by the outcome; an attempt-log row is inserted from a
model instance, so a new column with a default needs no change here.

The attempt log of one step's phase is bounded (``SAGA_STEP_LOG_MAX``): once an attempt past
the bound is logged, the same statement drops the middle attempts, keeping the first half of
the bound (how it started failing) and the latest ones (how it fails now); the step's attempt
counter still counts them all, and the log's attempt numbers show the gap. The drift tests in
``sagas/tests/test_recorder.py`` hold the statements and the models together.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Field, Model

from eventstore.factory import event_store
from eventstore.records import NewEvent
from infrastructure.db import prepared_insert_row_groups, server_binding_cursor
from sagas.definitions import Failure, LateStop, SagaDefinition, StopRequest
from sagas.dispatch import StepMessage, countdown_allowed, publish_on_commit
from sagas.engine import (
    Claim,
    Cursor,
    SagaState,
    StopVerdict,
    Transition,
    claimed_step_status,
    decide_stop,
    decide_stop_request,
    first_cursor,
)
from sagas.errors import SagaNotFound, TransactionRequired
from sagas.models import Saga, SagaStep, SagaStepExecution
from sagas.registry import get_definition, saga_deadline
from sagas.statuses import ACTIVE_SAGA_STATUSES, AttemptStatus, Phase, SagaStatus, StepStatus
from sagas.telemetry import attempt_observed
from sagas.webhooks import COMPENSATION_FAILED_EVENT, SAGA_STREAM
from sagas.workers import WorkerIdentity, current_worker

#: Step statuses that close a phase of the step (its ``*_finished_at`` is set).
_PHASE_DONE = {
    StepStatus.SUCCEEDED,
    StepStatus.FAILED,
    StepStatus.COMPENSATED,
    StepStatus.COMPENSATION_FAILED,
    StepStatus.SKIPPED,
}

#: Saga fields written when the saga starts and never changed after.
SAGA_SET_AT_START = frozenset(
    {
        "id",
        "saga_type",
        "definition_version",
        "subject",
        "exclusive",
        "correlation_id",
        "actor",
        "created_at",
        "finish_by",
    }
)
#: Saga fields written by the sweeper when it first finds the saga past its deadline.
SAGA_SET_WHEN_OVERDUE = frozenset({"overdue_reported_at"})
#: Saga fields written by a request to stop the saga, once, and by nothing else.
SAGA_SET_BY_STOP_REQUEST = frozenset({"stop_code", "stop_actor", "stop_requested_at"})
#: Step fields written when the saga starts and never changed after.
STEP_SET_AT_START = frozenset({"id", "saga", "position", "name", "compensable"})


# --- columns, from the models ---------------------------------------------------------------


def table(model: type[Model]) -> str:
    """Return the model's table name, quoted for SQL."""
    return connection.ops.quote_name(model._meta.db_table)


def column(model: type[Model], name: str) -> str:
    """Return the quoted column of the model's field ``name`` (FieldDoesNotExist if none)."""
    field = model._meta.get_field(name)
    assert isinstance(field, Field) and field.column is not None
    return connection.ops.quote_name(field.column)


def _cast(field: Field[Any, Any]) -> str:
    # The column's type without a length: casting to varchar(n) would cut a long value
    # short where storing it should fail.
    return re.sub(r"\(.*\)$", "", str(field.db_type(connection)))


def inserted_fields(model: type[Model]) -> tuple[Field[Any, Any], ...]:
    """Return the fields an INSERT of the model writes: every concrete one but a serial key."""
    meta = model._meta
    serial = meta.pk is not None and meta.pk.get_internal_type() in ("AutoField", "BigAutoField")
    return tuple(f for f in meta.concrete_fields if not (serial and f is meta.pk))


def insert_if(model: type[Model], *, prefix: str, gate: str) -> str:
    """Return an INSERT of one row of ``model`` from bound parameters, made only if ``gate``.

    ``gate`` names a CTE of the same statement: the row is written when it has a row. The
    parameters are named ``prefix`` + attname; :func:`insert_params` fills them.
    """
    fields = inserted_fields(model)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    values = ", ".join(f"%({prefix}{f.attname})s::{_cast(f)}" for f in fields)
    return f"INSERT INTO {table(model)} ({columns}) SELECT {values} FROM {gate}"  # noqa: S608


def insert_params(obj: Model, *, prefix: str) -> dict[str, Any]:
    """Return the parameters :func:`insert_if` needs to write ``obj`` (defaults included)."""
    return {
        f"{prefix}{f.attname}": f.get_db_prep_save(f.pre_save(obj, True), connection)
        for f in inserted_fields(type(obj))
    }


def _set_list(model: type[Model], assignments: Mapping[str, str]) -> str:
    # In the model's field order; a name that is no field fails here, at import.
    for name in assignments:
        model._meta.get_field(name)
    return ",\n        ".join(
        f"{connection.ops.quote_name(f.column)} = {assignments[f.name]}"
        for f in model._meta.concrete_fields
        if f.name in assignments
    )


def _bound(model: type[Model], name: str, prefix: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, Field)
    return f"%({prefix}{field.attname})s::{_cast(field)}"


# --- load -----------------------------------------------------------------------------------

_SAGA_FIELDS = tuple(Saga._meta.concrete_fields)
_LOAD_SQL = (
    f"SELECT {', '.join(connection.ops.quote_name(f.column) for f in _SAGA_FIELDS)} "  # noqa: S608
    f"FROM {table(Saga)} WHERE {column(Saga, 'id')} = %s"
)


def saga_load(saga_id: UUID) -> Saga | None:
    """Read a saga's row (every column), or None when there is no such saga."""
    # Prepared after a few runs on the connection (infrastructure.db): this runs on every step.
    with server_binding_cursor() as cursor:
        cursor.execute(_LOAD_SQL, [saga_id])
        row = cursor.fetchone()
    if row is None:
        return None
    return _saga_from_row(row)


def _saga_from_row(row: tuple[Any, ...]) -> Saga:
    values = [
        convert(value, None, connection)
        if (convert := getattr(f, "from_db_value", None))
        else value
        for f, value in zip(_SAGA_FIELDS, row, strict=True)
    ]
    return Saga.from_db(connection.alias, [f.attname for f in _SAGA_FIELDS], values)


def saga_state(saga: Saga, definition: SagaDefinition) -> SagaState:
    """Read the engine's view of a saga from its row."""
    return SagaState(
        status=SagaStatus(saga.status),
        cursor=Cursor(definition.index(saga.current_step), Phase(saga.current_phase)),
        attempt=saga.attempt,
        round_start=saga.round_start,
        redeliveries=saga.redeliveries,
        failure=saga.failure,
        stop=saga.stop,
    )


@dataclass(frozen=True)
class Loaded:
    """Hold a saga as a decision sees it: its row as read, its definition and its state."""

    saga: Saga
    definition: SagaDefinition
    state: SagaState


def _seen(saga: Saga) -> dict[str, Any]:
    """Return the compare-and-set parameters: the row's version as it was loaded."""
    return {
        "seen_status": saga.status,
        "seen_step": saga.current_step,
        "seen_phase": saga.current_phase,
        "seen_attempt": saga.attempt,
        "seen_token": saga.claim_token,
        "seen_stop": saga.stop_requested_at,
    }


_SEEN = (
    f"{column(Saga, 'status')} = %(seen_status)s::text"
    f" AND {column(Saga, 'current_step')} = %(seen_step)s::text"
    f" AND {column(Saga, 'current_phase')} = %(seen_phase)s::text"
    f" AND {column(Saga, 'attempt')} = %(seen_attempt)s::integer"
    f" AND {column(Saga, 'claim_token')} IS NOT DISTINCT FROM %(seen_token)s::uuid"
    f" AND {column(Saga, 'stop_requested_at')} IS NOT DISTINCT FROM %(seen_stop)s::timestamptz"
)


# --- claim ----------------------------------------------------------------------------------

#: Saga fields a claim writes: the attempt it starts and who holds it until when.
_CLAIM_SAGA_SET = {
    name: _bound(Saga, name, "claim_")
    for name in (
        "attempt",
        "redeliveries",
        "due_at",
        "lease_until",
        "claim_token",
        "claimed_at",
        "claim_host",
        "claim_pid",
        "claim_worker",
        "claim_process",
        "updated_at",
    )
}


def _claim_step_set(phase: Phase) -> dict[str, str]:
    prefix = "action" if phase is Phase.ACTION else "compensation"
    started = column(SagaStep, f"{prefix}_started_at")
    return {
        "status": "%(step_status)s::text",
        f"{prefix}_attempts": _bound(Saga, "attempt", "claim_"),
        f"{prefix}_started_at": f"COALESCE({started}, %(claim_claimed_at)s::timestamptz)",
    }


def _claim_sql(phase: Phase, *, unflushed: bool, lost: bool) -> str:
    # Outside a transaction block the statement commits on its own, and then without waiting
    # for its WAL to reach the disk: a claim lost in a crash is harmless (the attempt is just
    # claimable again), and the outcome that follows is committed durably and flushes it.
    # ``set_config(..., true)`` is ``SET LOCAL``, in the same statement so that it stays one
    # round trip and can be prepared. The final SELECT reads the CTE, since PostgreSQL skips
    # one nobody reads.
    unflushed_cte = (
        "unflushed AS (SELECT set_config('synchronous_commit', 'off', true) AS setting),\n"
        if unflushed
        else ""
    )
    lost_cte = (
        f", lost AS ({insert_if(SagaStepExecution, prefix='lost_', gate='saga')} RETURNING 1)"
        if lost
        else ""
    )
    return f"""
WITH {unflushed_cte}saga AS (
    UPDATE {table(Saga)} SET
        {_set_list(Saga, _CLAIM_SAGA_SET)}
    WHERE {column(Saga, "id")} = %(saga_id)s::uuid AND {_SEEN}
    RETURNING 1
), step AS (
    UPDATE {table(SagaStep)} SET
        {_set_list(SagaStep, _claim_step_set(phase))}
    -- Keyed by the parameters on a unique index, not joined with the CTE, so that the
    -- prepared statement's generic plan looks the row up by index.
    WHERE {column(SagaStep, "saga")} = %(saga_id)s::uuid
      AND {column(SagaStep, "position")} = %(position)s::smallint
      AND EXISTS (SELECT FROM saga)
    RETURNING 1
){lost_cte}
SELECT count(*) FROM saga{", unflushed" if unflushed else ""}
"""  # noqa: S608


#: By (phase, whether the claim commits on its own, whether it logs a lost attempt).
_CLAIM_SQL = {
    (phase, unflushed, lost): _claim_sql(phase, unflushed=unflushed, lost=lost)
    for phase in Phase
    for unflushed in (False, True)
    for lost in (False, True)
}


def claim_write(
    loaded: Loaded,
    claim: Claim,
    *,
    token: UUID,
    holder: WorkerIdentity,
    now: datetime,
    lease_until: datetime,
    lost_error: str = "",
) -> Loaded | None:
    """Write a claim ``decide_claim`` granted on ``loaded``; return the saga as claimed.

    Returns None when the saga changed since it was loaded (another message claimed it
    first). A takeover passes ``lost_error``: the attempt the dead worker left is logged in
    the same statement.
    """
    saga = loaded.saga
    phase = loaded.state.cursor.phase
    claimed = Saga.from_db(
        connection.alias,
        [f.attname for f in _SAGA_FIELDS],
        [getattr(saga, f.attname) for f in _SAGA_FIELDS],
    )
    claimed.attempt = claim.attempt
    claimed.redeliveries = claim.redeliveries
    claimed.due_at = None
    claimed.lease_until = lease_until
    claimed.claim_token = token
    claimed.claimed_at = now
    claimed.claim_host = holder.host
    claimed.claim_pid = holder.pid
    claimed.claim_worker = holder.name
    claimed.claim_process = holder.process
    claimed.updated_at = now
    params: dict[str, Any] = {
        "saga_id": saga.id,
        "position": loaded.state.cursor.index,
        "step_status": claimed_step_status(phase).value,
        **_seen(saga),
        **{f"claim_{name}": getattr(claimed, name) for name in _CLAIM_SAGA_SET},
    }
    if lost_error:
        params.update(
            insert_params(
                _attempt_log(
                    loaded,
                    AttemptRecord.of_claim(saga),
                    status=AttemptStatus.WORKER_LOST,
                    error=lost_error,
                    now=now,
                ),
                prefix="lost_",
            )
        )
    sql = _CLAIM_SQL[phase, not connection.in_atomic_block, bool(lost_error)]
    # Prepared after a few runs on the connection (infrastructure.db): this runs on every step.
    with server_binding_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if not row or not row[0]:
        return None
    state = replace(loaded.state, attempt=claim.attempt, redeliveries=claim.redeliveries)
    return Loaded(saga=claimed, definition=loaded.definition, state=state)


# --- record an outcome ----------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptRecord:
    """Describe the attempt a transition closes, for its step-log row."""

    attempt: int
    started_at: datetime | None
    worker: str

    @classmethod
    def of_claim(cls, saga: Saga) -> AttemptRecord:
        """Describe the attempt the saga's row says is claimed (or was claimed last)."""
        return cls(
            attempt=max(saga.attempt, 1), started_at=saga.claimed_at, worker=saga.claim_worker
        )


def _attempt_log(
    loaded: Loaded, attempt: AttemptRecord, *, status: AttemptStatus, error: str, now: datetime
) -> SagaStepExecution:
    saga, cursor = loaded.saga, loaded.state.cursor
    return SagaStepExecution(
        saga_id=saga.id,
        step=loaded.definition.steps[cursor.index].name,
        position=cursor.index,
        phase=cursor.phase.value,
        attempt=max(attempt.attempt, 1),
        status=status.value,
        error=error,
        started_at=attempt.started_at,
        finished_at=now,
        worker=attempt.worker,
        at=now,
    )


#: Saga fields an outcome writes, bound by name (``_transition_write`` gives each a value).
#: Every field not set at the start is one: an outcome ends the claim and moves the cursor.
_OUTCOME_SAGA_BOUND = (
    "status",
    "current_step",
    "current_phase",
    "attempt",
    "round_start",
    "redeliveries",
    "due_at",
    "dispatched_at",
    "lease_until",
    "claim_token",
    "claimed_at",
    "claim_host",
    "claim_pid",
    "claim_worker",
    "claim_process",
    "failure_step",
    "failure_code",
    "failure_message",
    "updated_at",
)
_OUTCOME_SAGA_SET = {name: _bound(Saga, name, "saga_") for name in _OUTCOME_SAGA_BOUND} | {
    "context": (
        f"COALESCE({column(Saga, 'context')} || %(merge)s::jsonb, {column(Saga, 'context')})"
    ),
    "finished_at": (f"COALESCE(%(saga_finished_at)s::timestamptz, {column(Saga, 'finished_at')})"),
}


def _keep_or(name: str, value: str) -> str:
    return f"COALESCE({value}, {column(SagaStep, name)})"


#: Step fields an outcome writes.
_OUTCOME_STEP_SET = {
    "status": "%(step_status)s::text",
    "last_error": (
        f"CASE WHEN %(error)s::text = '' THEN {column(SagaStep, 'last_error')}"
        " ELSE %(error)s::text END"
    ),
    "action_finished_at": _keep_or("action_finished_at", "%(action_finished_at)s::timestamptz"),
    # A skipped compensation never started: it shows the skip as its start and end.
    "compensation_started_at": (
        f"COALESCE({column(SagaStep, 'compensation_started_at')}, %(skipped_at)s::timestamptz)"
    ),
    "compensation_finished_at": _keep_or(
        "compensation_finished_at", "%(compensation_finished_at)s::timestamptz"
    ),
}


#: The attempt log's bound per step and phase when ``SAGA_STEP_LOG_MAX`` is not set.
DEFAULT_STEP_LOG_MAX = 20


def step_log_window() -> tuple[int, int]:
    """Return how many of a step phase's attempts the log keeps: (first ones, latest ones)."""
    bound = max(int(getattr(settings, "SAGA_STEP_LOG_MAX", DEFAULT_STEP_LOG_MAX)), 2)
    return bound // 2, bound - bound // 2


def _outcome_sql(*, logged: bool, trimmed: bool = False) -> str:
    log_cte = (
        f", log AS ({insert_if(SagaStepExecution, prefix='log_', gate='saga')} RETURNING 1)"
        if logged
        else ""
    )
    if trimmed:
        # Keyed by the parameters (saga, position, phase, attempt range): the rows of the
        # step's phase between the first ones kept and the latest ones kept.
        log_cte += f"""
, trim AS (
    DELETE FROM {table(SagaStepExecution)}
    WHERE {column(SagaStepExecution, "saga")} = %(saga_id)s::uuid
      AND {column(SagaStepExecution, "position")} = %(position)s::smallint
      AND {column(SagaStepExecution, "phase")} = %(log_phase)s::text
      AND {column(SagaStepExecution, "attempt")} > %(trim_after)s::integer
      AND {column(SagaStepExecution, "attempt")} <= %(trim_through)s::integer
      AND EXISTS (SELECT FROM saga)
    RETURNING 1
)"""  # noqa: S608
    return f"""
WITH saga AS (
    UPDATE {table(Saga)} SET
        {_set_list(Saga, _OUTCOME_SAGA_SET)}
    WHERE {column(Saga, "id")} = %(saga_id)s::uuid AND {_SEEN}
    RETURNING 1
), step AS (
    UPDATE {table(SagaStep)} SET
        {_set_list(SagaStep, _OUTCOME_STEP_SET)}
    -- Keyed by the parameters on a unique index (see the claim's statement).
    WHERE {column(SagaStep, "saga")} = %(saga_id)s::uuid
      AND {column(SagaStep, "position")} = %(position)s::smallint
      AND EXISTS (SELECT FROM saga)
    RETURNING 1
){log_cte}
SELECT count(*) FROM saga
"""  # noqa: S608


#: By whether an attempt ended (and is logged), and whether the log is trimmed to its bound.
_OUTCOME_SQL = {
    (logged, trimmed): _outcome_sql(logged=logged, trimmed=trimmed)
    for logged in (False, True)
    for trimmed in (False, True)
    if logged or not trimmed
}

#: What decides a transition from a saga's definition and state (a ``sagas.engine`` call).
Decision = Callable[[SagaDefinition, SagaState], Transition]


@dataclass(frozen=True)
class Recorded:
    """Say what recording did: the saga as loaded, the transition, and whether it was written.

    ``applied`` is False when the saga changed between load and write (the attempt's claim
    was taken over or timed out, another operator acted first): nothing was written.
    """

    loaded: Loaded
    transition: Transition
    applied: bool


def outcome_record(
    target: UUID | Loaded,
    decision: Decision,
    *,
    now: datetime,
    attempt: AttemptRecord | None = None,
) -> Recorded:
    """Load the saga (unless given), decide with ``decision``, write the transition.

    ``attempt`` describes the attempt that ended, for the step log (None for an operator's
    action, which ends none). Raises :class:`SagaNotFound` for an
    unknown id, and whatever ``decision`` raises (``SagaStateConflict``), before writing.

    A stop request that landed between the load and the write makes the write miss (the
    compare-and-set includes it). The saga is then loaded again and, when nothing but the
    request changed, decided again with the request seen: the attempt's outcome is not
    dropped, and a last step that succeeded meanwhile completes the saga as stopped too late
    rather than as if nobody had asked. A request is written once, so this happens once.
    """
    loaded = target if isinstance(target, Loaded) else _load(target)
    recorded = _decide_and_write(loaded, decision, now=now, attempt=attempt)
    if not recorded.applied:
        fresh = _load(loaded.saga.id)
        if _only_a_stop_arrived(loaded.saga, fresh.saga):
            recorded = _decide_and_write(fresh, decision, now=now, attempt=attempt)
    return recorded


def _load(saga_id: UUID) -> Loaded:
    saga = saga_load(saga_id)
    if saga is None:
        raise SagaNotFound(saga_id)
    definition = get_definition(saga.saga_type, saga.definition_version)
    return Loaded(saga=saga, definition=definition, state=saga_state(saga, definition))


def _only_a_stop_arrived(seen: Saga, now: Saga) -> bool:
    """Tell whether ``now`` is ``seen`` with a stop request added and nothing else moved."""
    same = _seen(seen) | {"seen_stop": None} == _seen(now) | {"seen_stop": None}
    return same and seen.stop_requested_at is None and now.stop_requested_at is not None


def _decide_and_write(
    loaded: Loaded, decision: Decision, *, now: datetime, attempt: AttemptRecord | None
) -> Recorded:
    transition = decision(loaded.definition, loaded.state)
    failed = (
        transition.saga_status is SagaStatus.COMPENSATION_FAILED
        and loaded.state.status is not SagaStatus.COMPENSATION_FAILED
    )
    late = transition.stopped_late and loaded.definition.on_late_stop is not None
    if failed or late:
        # What tells the outside world (the webhooks' event) or undoes a saga stopped too
        # late (its definition's hook, e.g. a cancel saga) commits with the status or not
        # at all.
        with transaction.atomic():
            applied = _transition_write(loaded, transition, now=now, attempt=attempt)
            if applied and failed:
                _compensation_failed_append(loaded, transition, now=now)
            if applied and late:
                _late_stop_hand_over(loaded)
    else:
        applied = _transition_write(loaded, transition, now=now, attempt=attempt)
    if applied and attempt is not None:
        saga = loaded.saga
        attempt_observed(
            saga_id=saga.id,
            saga_type=saga.saga_type,
            subject=saga.subject,
            step=saga.current_step,
            phase=saga.current_phase,
            transition=transition,
            started_at=attempt.started_at,
            now=now,
        )
    return Recorded(loaded=loaded, transition=transition, applied=applied)


def _late_stop_hand_over(loaded: Loaded) -> None:
    """Call the definition's ``on_late_stop`` for a saga that completed although stopped."""
    saga, hook = loaded.saga, loaded.definition.on_late_stop
    assert hook is not None and loaded.state.stop is not None
    hook(
        LateStop(
            saga_id=saga.id,
            saga_type=saga.saga_type,
            context=dict(saga.context),
            correlation_id=saga.correlation_id,
            stop=loaded.state.stop,
        )
    )


def _compensation_failed_append(loaded: Loaded, transition: Transition, *, now: datetime) -> None:
    """Append ``SagaCompensationFailed`` to the saga's stream, with the saga's summary."""
    saga, state = loaded.saga, loaded.state
    failure = transition.failure
    store = event_store()
    stream_id = str(saga.id)
    store.append(
        stream_type=SAGA_STREAM,
        stream_id=stream_id,
        expected_version=store.stream_version(stream_type=SAGA_STREAM, stream_id=stream_id),
        events=[
            NewEvent(
                event_type=COMPENSATION_FAILED_EVENT,
                data={
                    "id": stream_id,
                    "saga_type": saga.saga_type,
                    "subject": saga.subject,
                    "status": transition.saga_status.value,
                    "step": loaded.definition.steps[state.cursor.index].name,
                    "error": transition.error,
                    "failure": (
                        {"step": failure.step, "code": failure.code, "message": failure.message}
                        if failure
                        else None
                    ),
                    "at": now.isoformat(),
                },
                metadata={"actor": f"saga:{saga.id}"},
            )
        ],
    )


def _transition_write(
    loaded: Loaded, transition: Transition, *, now: datetime, attempt: AttemptRecord | None
) -> bool:
    saga, definition, state = loaded.saga, loaded.definition, loaded.state
    old = state.cursor
    step = definition.steps[old.index]
    failure: Failure | None = transition.failure
    values: dict[str, Any] = {
        "status": transition.saga_status.value,
        "current_step": step.name,
        "current_phase": old.phase.value,
        "attempt": state.attempt,
        "round_start": state.round_start,
        "redeliveries": 0,
        "due_at": None,
        "dispatched_at": None,
        "lease_until": None,
        "claim_token": None,
        "claimed_at": None,
        "claim_host": "",
        "claim_pid": None,
        "claim_worker": "",
        "claim_process": "",
        "failure_step": failure.step if failure else "",
        "failure_code": failure.code if failure else "",
        "failure_message": failure.message if failure else "",
        "updated_at": now,
    }
    message = _schedule(values, loaded=loaded, transition=transition, now=now)
    done = transition.step_status in _PHASE_DONE
    in_action = old.phase is Phase.ACTION
    params: dict[str, Any] = {
        "saga_id": saga.id,
        "position": old.index,
        **_seen(saga),
        **{f"saga_{name}": value for name, value in values.items()},
        "saga_finished_at": now if transition.finished else None,
        "merge": json.dumps(dict(transition.merge)) if transition.merge else None,
        "step_status": transition.step_status.value,
        "error": transition.error,
        "action_finished_at": now if done and in_action else None,
        "compensation_finished_at": now if done and not in_action else None,
        "skipped_at": now if transition.step_status is StepStatus.SKIPPED else None,
    }
    logged = attempt is not None and transition.attempt_status is not None
    trimmed = False
    if logged:
        assert attempt is not None and transition.attempt_status is not None
        log = _attempt_log(
            loaded, attempt, status=transition.attempt_status, error=transition.error, now=now
        )
        params.update(insert_params(log, prefix="log_"))
        first, latest = step_log_window()
        if log.attempt > first + latest:
            trimmed = True
            params["trim_after"] = first
            params["trim_through"] = log.attempt - latest
    # Prepared after a few runs on the connection (infrastructure.db): this runs on every step.
    with server_binding_cursor() as cursor:
        cursor.execute(_OUTCOME_SQL[logged, trimmed], params)
        row = cursor.fetchone()
    if not row or not row[0]:
        return False
    if message is not None:
        publish_on_commit(message)
    return True


def _schedule(
    values: dict[str, Any], *, loaded: Loaded, transition: Transition, now: datetime
) -> StepMessage | None:
    """Put the next attempt's cursor and due time in ``values``; return its message, if sent."""
    schedule = transition.next
    if schedule is None:
        return None
    definition, state = loaded.definition, loaded.state
    target: Cursor = schedule.cursor
    if target != state.cursor:
        values.update(
            current_step=definition.steps[target.index].name,
            current_phase=target.phase.value,
            attempt=0,
            round_start=0,
        )
    elif schedule.new_round:
        values["round_start"] = state.attempt
    values["due_at"] = now + timedelta(seconds=schedule.delay)
    if not countdown_allowed(schedule.delay):
        # Left to the sweeper: a long countdown would sit in one worker's memory.
        return None
    values["dispatched_at"] = now
    return StepMessage(
        saga_id=loaded.saga.id,
        saga_type=loaded.saga.saga_type,
        step=definition.steps[target.index],
        phase=target.phase,
        delay=schedule.delay,
    )


# --- a request to stop ----------------------------------------------------------------------

_LOCK_SQL = f"{_LOAD_SQL} FOR UPDATE"
_STOP_SET = {name: _bound(Saga, name, "stop_") for name in SAGA_SET_BY_STOP_REQUEST}
_STOP_SQL = f"""
UPDATE {table(Saga)} SET
    {_set_list(Saga, _STOP_SET)}
WHERE {column(Saga, "id")} = %(saga_id)s::uuid
"""  # noqa: S608


def stop_request_record(saga_id: UUID, stop: StopRequest, *, now: datetime) -> StopVerdict:
    """Ask a saga to stop at its next step boundary and compensate; say what that did.

    Runs in the caller's transaction (``TransactionRequired`` outside one), so the request
    commits with whatever the caller writes beside it. The saga's row is locked first: a
    claim or an outcome racing the request waits for it, then finds the row changed and
    acts on what it says (a claim of a stopped cursor is a no-op; an outcome is decided
    again with the request seen, :func:`outcome_record`). :func:`decide_stop_request`
    decides; the request is written when it is the first; when no attempt runs, the stop
    itself is recorded too (``decide_stop``), its first compensation's message sent after
    commit. Raises :class:`SagaNotFound` for an unknown id.
    """
    if not connection.in_atomic_block:
        raise TransactionRequired()
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_SQL, [saga_id])
        row = cursor.fetchone()
    if row is None:
        raise SagaNotFound(saga_id)
    loaded = _loaded_from_row(row)
    verdict = decide_stop_request(
        loaded.definition, loaded.state, claimed=loaded.saga.claim_token is not None
    )
    if verdict not in (StopVerdict.RECORD_AND_WAIT, StopVerdict.RECORD_AND_STOP):
        return verdict
    saga = loaded.saga
    saga.stop_code, saga.stop_actor, saga.stop_requested_at = stop.code, stop.actor, now
    with connection.cursor() as cursor:
        cursor.execute(
            _STOP_SQL,
            {"saga_id": saga.id}
            | {f"stop_{name}": getattr(saga, name) for name in SAGA_SET_BY_STOP_REQUEST},
        )
    if verdict is StopVerdict.RECORD_AND_STOP:
        stopped = Loaded(
            saga=saga,
            definition=loaded.definition,
            state=saga_state(saga, loaded.definition),
        )
        recorded = outcome_record(stopped, decide_stop, now=now)
        # The row is locked by this transaction: nothing can have moved it.
        assert recorded.applied, f"saga {saga.id} changed under its row lock"
    return verdict


def _loaded_from_row(row: tuple[Any, ...]) -> Loaded:
    saga = _saga_from_row(row)
    definition = get_definition(saga.saga_type, saga.definition_version)
    return Loaded(saga=saga, definition=definition, state=saga_state(saga, definition))


# --- a saga past its deadline ---------------------------------------------------------------


@dataclass(frozen=True)
class Overdue:
    """Describe a saga found past its deadline for the first time."""

    saga_id: UUID
    saga_type: str
    subject: str
    status: str
    current_step: str
    current_phase: str
    finish_by: datetime


_OVERDUE_RETURNED = ("id", "saga_type", "subject", "status", "current_step", "current_phase")
_OVERDUE_SQL = f"""
UPDATE {table(Saga)} SET {column(Saga, "overdue_reported_at")} = %(now)s::timestamptz
WHERE {column(Saga, "id")} IN (
    SELECT {column(Saga, "id")} FROM {table(Saga)}
    WHERE {column(Saga, "status")} = ANY(%(active)s::text[])
      AND {column(Saga, "finish_by")} < %(now)s::timestamptz
      AND {column(Saga, "overdue_reported_at")} IS NULL
    ORDER BY {column(Saga, "finish_by")}
    LIMIT %(limit)s
    -- A saga a worker is writing now is reported by the next pass.
    FOR NO KEY UPDATE SKIP LOCKED
)
  -- Checked again on the row as it is when locked: two passes at once report a saga once.
  AND {column(Saga, "overdue_reported_at")} IS NULL
RETURNING {", ".join(column(Saga, name) for name in _OVERDUE_RETURNED)},
    {column(Saga, "finish_by")}
"""  # noqa: S608


def overdue_mark(*, now: datetime, limit: int) -> list[Overdue]:
    """Mark the unfinished sagas newly past their deadline as reported; return them.

    Each saga is returned by one call only, ever (its ``overdue_reported_at`` is set), so
    whoever reports them (the sweeper) does so once per saga, however many passes run.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _OVERDUE_SQL,
            {"now": now, "active": sorted(s.value for s in ACTIVE_SAGA_STATUSES), "limit": limit},
        )
        rows = cursor.fetchall()
    return [
        Overdue(
            saga_id=saga_id,
            saga_type=saga_type,
            subject=subject,
            status=status,
            current_step=step,
            current_phase=phase,
            finish_by=finish_by,
        )
        for saga_id, saga_type, subject, status, step, phase, finish_by in rows
    ]


# --- a saga's start ----------------------------------------------------------------------------


def saga_record_start(
    *,
    saga_id: UUID,
    saga_type: str,
    definition: SagaDefinition,
    context: Mapping[str, Any],
    correlation_id: str,
    actor: str,
    subject: str,
    exclusive: bool,
    now: datetime,
) -> None:
    """Write a new saga: its row, a row per step, and a log row per local step it ran.

    Its leading local steps have run (``sagas.services.saga_begin``); the first remote step
    is due now, its message sent after commit. One prepared statement for the three tables
    (``infrastructure.db.prepared_insert_row_groups``), writing every concrete field of each
    model (a field a start does not set gets its model default) and reading nothing back, so
    in a pipelined transaction it travels with the statements after it.
    """
    cursor = first_cursor(definition)
    # Nothing remote: the local steps were the whole saga.
    finished = cursor is None
    saga = Saga(
        id=saga_id,
        saga_type=saga_type,
        definition_version=definition.version,
        status=(SagaStatus.COMPLETED if finished else SagaStatus.RUNNING).value,
        subject=subject,
        exclusive=exclusive,
        correlation_id=correlation_id,
        actor=actor,
        context=dict(context),
        current_step=definition.steps[-1 if cursor is None else cursor.index].name,
        current_phase=Phase.ACTION.value,
        due_at=None if finished else now,
        dispatched_at=None if finished else now,
        finish_by=now + saga_deadline(definition),
        created_at=now,
        updated_at=now,
        finished_at=now if finished else None,
    )
    steps = [
        SagaStep(
            saga_id=saga_id,
            position=position,
            name=step.name,
            status=(StepStatus.SUCCEEDED if step.local else StepStatus.PENDING).value,
            compensable=step.compensation is not None,
            action_attempts=1 if step.local else 0,
            action_started_at=now if step.local else None,
            action_finished_at=now if step.local else None,
        )
        for position, step in enumerate(definition.steps)
    ]
    worker = f"local {current_worker().name}"
    log = [
        SagaStepExecution(
            saga_id=saga_id,
            step=step.name,
            position=position,
            phase=Phase.ACTION.value,
            attempt=1,
            status=AttemptStatus.SUCCEEDED.value,
            started_at=now,
            finished_at=now,
            worker=worker,
            at=now,
        )
        for position, step in enumerate(definition.steps)
        if step.local
    ]
    prepared_insert_row_groups([[saga], steps, log])


def step_logs_trim(*, dry_run: bool = False) -> int:
    """Bring every step phase's attempt log within ``SAGA_STEP_LOG_MAX``; return the rows
    dropped (or that would be, with ``dry_run``).

    Outcomes keep the logs they write within the bound; this catches logs written before the
    bound existed or was lowered. It keeps the same attempts an outcome would: the first half
    of the bound and the latest ones.
    """
    first, latest = step_log_window()
    executions = table(SagaStepExecution)
    saga, position, phase, attempt = (
        column(SagaStepExecution, name) for name in ("saga", "position", "phase", "attempt")
    )
    over = f"""
SELECT {saga} AS saga_id, {position} AS position, {phase} AS phase, max({attempt}) AS top
FROM {executions} GROUP BY 1, 2, 3 HAVING max({attempt}) > %(bound)s
"""  # noqa: S608
    matches = f"""
{executions}.{saga} = t.saga_id AND {executions}.{position} = t.position
AND {executions}.{phase} = t.phase AND {executions}.{attempt} > %(first)s
AND {executions}.{attempt} <= t.top - %(latest)s
"""
    params = {"bound": first + latest, "first": first, "latest": latest}
    if dry_run:
        sql = f"SELECT count(*) FROM {executions} JOIN ({over}) t ON {matches}"  # noqa: S608
    else:
        sql = (
            f"WITH d AS (DELETE FROM {executions} USING ({over}) t WHERE {matches} RETURNING 1)"  # noqa: S608
            " SELECT count(*) FROM d"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return int(row[0]) if row else 0
