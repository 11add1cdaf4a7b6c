"""Start sagas and act on them as an operator: the saga engine's write API.

``saga_start`` joins the caller's transaction, so that what a saga is started for (an order's
first event, say) and the saga itself commit together or not at all; a saga whose local step
carries its start needs none, the step's one write carrying the saga's. The operator actions
(``sagas.operations``) each own one durable transaction. They and ``sagas_sweep`` (the
recovery pass, in ``sagas.sweeper``) are exported here with the rest of the write API.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Mapping
from contextlib import nullcontext
from datetime import datetime
from types import MappingProxyType
from typing import Any
from uuid import UUID

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from psycopg import sql

from eventstore.records import Rider
from infrastructure.db import server_binding_cursor
from sagas.definitions import (
    INJECTED_FAULT,
    SagaDefinition,
    Step,
    StepBusinessFailure,
    StepCall,
    TransientStepError,
    idempotency_key,
)
from sagas.dispatch import StepMessage, publish_on_commit
from sagas.engine import first_cursor
from sagas.errors import SagaAlreadyActive, TransactionRequired
from sagas.faults import fault_take
from sagas.models import Saga, SagaStep, SagaStepExecution
from sagas.operations import saga_retry, saga_skip_compensation
from sagas.registry import get_definition
from sagas.statuses import (
    ACTIVE_SAGA_STATUSES,
    AttemptStatus,
    FaultMode,
    Phase,
    SagaStatus,
    StepStatus,
)
from sagas.sweeper import SweepResult, sagas_sweep
from sagas.workers import current_worker

__all__ = [
    "SweepResult",
    "saga_retry",
    "saga_skip_compensation",
    "saga_start",
    "sagas_sweep",
]


def saga_start(
    *,
    saga_type: str,
    context: Mapping[str, Any],
    correlation_id: str,
    actor: str,
    subject: str = "",
    exclusive: bool = False,
    now: datetime | None = None,
) -> UUID:
    """Write a new saga in the caller's transaction and send its first step after commit.

    Leading steps marked ``local`` run first, right here, inside that transaction: their
    results merge into the context, and the saga is then written as they left it, with
    those steps SUCCEEDED and logged, in one statement. An exception from a local step
    reaches the caller before anything of the saga is written (and rolls the caller's
    transaction back with whatever the step wrote). A local step therefore cannot read its
    own saga's row. With ``exclusive``, a second active exclusive saga on the same
    ``subject`` raises :class:`SagaAlreadyActive`, and leaves nothing of the start, local
    steps included, in the caller's transaction: an active one found before the local steps
    run refuses at once, and between two starts racing each other a partial unique index
    decides.

    A saga whose local step ``carries_start`` needs no transaction: that step's one write
    carries the saga's row, so the whole start is one statement (see :class:`Step`).
    """
    definition = get_definition(saga_type)
    if definition.start_carrier is None and not transaction.get_connection().in_atomic_block:
        raise TransactionRequired()
    now = now or timezone.now()
    saga_id = uuid.uuid4()
    if exclusive and _active_exclusive_saga_on(subject):
        # Checked before the local steps read anything: an exclusive saga that finished
        # after they read but before the row below was written would leave the unique index
        # nothing to refuse, and the new saga would act on what the finished one had changed
        # (a second cancellation of an order the first had just cancelled). Once none is
        # active here, whatever the last one did is committed and the local steps see it.
        # Two starts racing each other are still decided by the index.
        raise SagaAlreadyActive(subject)
    # An exclusive start takes a savepoint: a refused one leaves nothing of itself (its local
    # steps included) in the caller's transaction.
    try:
        with transaction.atomic() if exclusive else nullcontext():
            _start(
                saga_id=saga_id,
                saga_type=saga_type,
                definition=definition,
                context=context,
                correlation_id=correlation_id,
                actor=actor,
                subject=subject,
                exclusive=exclusive,
                now=now,
            )
    except IntegrityError as exc:
        if exclusive and "sagas_saga_one_active_exclusive_per_subject" in str(exc):
            raise SagaAlreadyActive(subject) from exc
        raise
    cursor = first_cursor(definition)
    if cursor is not None:
        publish_on_commit(
            StepMessage(
                saga_id=saga_id,
                saga_type=saga_type,
                step=definition.steps[cursor.index],
                phase=Phase.ACTION,
            )
        )
    return saga_id


def _active_exclusive_saga_on(subject: str) -> bool:
    return Saga.objects.filter(
        subject=subject, exclusive=True, status__in=ACTIVE_SAGA_STATUSES
    ).exists()


def _start(
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
    # Refuses what PostgreSQL's JSON could not hold, with the caller's stack trace, before
    # any local step runs; the carried row stores this very text.
    context_json = json.dumps(dict(context))
    row = functools.partial(
        _row_params,
        saga_id=saga_id,
        saga_type=saga_type,
        definition=definition,
        correlation_id=correlation_id,
        actor=actor,
        subject=subject,
        exclusive=exclusive,
        now=now,
    )
    carried: list[int] = []
    start_rider = None
    if definition.start_carrier is not None:
        # The row holds the context the carrier starts from: it must change nothing.
        start_rider = Rider(
            sql=_start_sql(definition, carried=True),
            params=row(data_json=context_json),
            counted="saga_row",
            written=lambda _events, rows: carried.append(rows),
        )
    data = _run_local_steps(
        saga_id=saga_id,
        saga_type=saga_type,
        definition=definition,
        context=dict(context),
        correlation_id=correlation_id,
        actor=actor,
        now=now,
        start_rider=start_rider,
    )
    if carried == [1]:
        if data != dict(context):
            raise ValueError(
                f"saga {saga_type!r}: step {definition.steps[0].name!r} carries the start "
                "and changed the context it carried"
            )
        return
    # Not carried (no carrier, or its append stored nothing new): the saga's own statement.
    with server_binding_cursor() as cursor:
        cursor.execute(_start_sql(definition, carried=False), row(data_json=json.dumps(data)))


def _row_params(
    *,
    saga_id: UUID,
    saga_type: str,
    definition: SagaDefinition,
    data_json: str,
    correlation_id: str,
    actor: str,
    subject: str,
    exclusive: bool,
    now: datetime,
) -> dict[str, Any]:
    """Return the parameters of the statement that writes a new saga, its steps and log."""
    cursor = first_cursor(definition)
    # Nothing remote: the local steps were the whole saga.
    finished = cursor is None
    return {
        "id": saga_id,
        "saga_type": saga_type,
        "status": (SagaStatus.COMPLETED if finished else SagaStatus.RUNNING).value,
        "subject": subject,
        "exclusive": exclusive,
        "correlation_id": correlation_id,
        "actor": actor,
        "context": data_json,
        "current_step": definition.steps[-1 if cursor is None else cursor.index].name,
        # The first remote step is due now, and its message is sent after commit.
        "due_at": None if finished else now,
        "finished_at": now if finished else None,
        "now": now,
        "worker": f"local {current_worker().name}" if definition.steps[0].local else "",
    }


def _table(model: type[Saga | SagaStep | SagaStepExecution]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _literal(value: str) -> str:
    return sql.Literal(value).as_string()


@functools.lru_cache(maxsize=64)
def _start_sql(definition: SagaDefinition, *, carried: bool) -> str:
    """Return the SQL that writes a saga of this definition, its steps and its local steps' log.

    Carried, it is the WITH definitions of a rider on a local step's append, gated on "the
    append stored its event"; otherwise the saga's own statement.

    One statement writes it all: a third of the ORM's cost in the caller's request, and no
    savepoint (docs/benchmarks.md). The steps' plan (position, name, compensable, ran
    locally) is fixed by the definition, so it is written into the text as literals: one
    text per definition, prepared after a few runs (infrastructure.db), and four array parameters
    fewer to encode on every start, a tenth of a placed order's Python time. Table names
    come from the models; step names and statuses are quoted literals; the rest is bound.
    """
    plan = ", ".join(
        f"({i}, {_literal(step.name)}, "
        f"{'true' if step.compensation is not None else 'false'}, "
        f"{'true' if step.local else 'false'})"
        for i, step in enumerate(definition.steps)
    )
    gate = "WHERE EXISTS (SELECT 1 FROM appended)" if carried else ""
    succeeded, pending = _literal(StepStatus.SUCCEEDED.value), _literal(StepStatus.PENDING.value)
    attempt_done = _literal(AttemptStatus.SUCCEEDED.value)
    ctes = f"""
saga_row AS (
    INSERT INTO {_table(Saga)} (id, saga_type, status, subject, exclusive, correlation_id,
        actor, context, current_step, current_phase, attempt, round_start, redeliveries,
        due_at, dispatched_at, claim_host, claim_worker, failure_step, failure_code,
        failure_message, created_at, updated_at, finished_at)
    SELECT %(id)s::uuid, %(saga_type)s::text, %(status)s::text, %(subject)s::text,
        %(exclusive)s::boolean, %(correlation_id)s::text, %(actor)s::text,
        %(context)s::jsonb, %(current_step)s::text, 'action', 0, 0, 0,
        %(due_at)s::timestamptz, %(due_at)s::timestamptz, '', '', '', '', '',
        %(now)s::timestamptz, %(now)s::timestamptz, %(finished_at)s::timestamptz
    {gate}
    RETURNING id
), saga_plan AS (
    SELECT * FROM (VALUES {plan}) AS s(position, name, compensable, done)
), saga_steps AS (
    INSERT INTO {_table(SagaStep)} (saga_id, position, name, status, compensable,
        action_attempts, compensation_attempts, last_error, action_started_at,
        action_finished_at)
    SELECT saga_row.id, s.position, s.name,
           CASE WHEN s.done THEN {succeeded} ELSE {pending} END,
           s.compensable, CASE WHEN s.done THEN 1 ELSE 0 END, 0, '',
           CASE WHEN s.done THEN %(now)s::timestamptz END,
           CASE WHEN s.done THEN %(now)s::timestamptz END
    FROM saga_row, saga_plan AS s
    RETURNING 1
), saga_log AS (
    INSERT INTO {_table(SagaStepExecution)} (saga_id, step, position, phase, attempt, status,
        error, started_at, finished_at, worker, at)
    SELECT saga_row.id, s.name, s.position, 'action', 1, {attempt_done}, '',
           %(now)s::timestamptz, %(now)s::timestamptz, %(worker)s::text, %(now)s::timestamptz
    FROM saga_row, saga_plan AS s
    WHERE s.done
    RETURNING 1
)"""  # noqa: S608
    return ctes if carried else f"WITH {ctes} SELECT 1"


def _run_local_steps(
    *,
    saga_id: UUID,
    saga_type: str,
    definition: SagaDefinition,
    context: dict[str, Any],
    correlation_id: str,
    actor: str,
    now: datetime,
    start_rider: Rider | None = None,
) -> dict[str, Any]:
    """Run the leading local steps in order; return the context as they leave it."""
    for step in definition.steps:
        if not step.local:
            break
        _local_fault(saga_type=saga_type, step=step, now=now)
        result = step.action(
            StepCall(
                saga_id=saga_id,
                saga_type=saga_type,
                step=step.name,
                phase="action",
                attempt=1,
                idempotency_key=idempotency_key(saga_id=saga_id, step=step.name, phase="action"),
                context=MappingProxyType(context),
                correlation_id=correlation_id,
                actor=actor,
                failure=None,
                start_rider=start_rider if step.carries_start else None,
            )
        )
        if result:
            context.update(result)
    return context


def _local_fault(*, saga_type: str, step: Step, now: datetime) -> None:
    mode = fault_take(saga_type=saga_type, step=step.name, phase=Phase.ACTION, now=now)
    if mode is FaultMode.TRANSIENT:
        raise TransientStepError(f"injected transient fault in {step.name} action")
    if mode is FaultMode.PERMANENT:
        raise StepBusinessFailure(INJECTED_FAULT, f"injected permanent fault in {step.name} action")
