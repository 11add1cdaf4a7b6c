"""Start sagas and act on them as an operator: the saga engine's write API.

``saga_start`` and each operator action (``sagas.operations``) own one durable transaction.
``saga_begin`` is the start's work inside a transaction that the caller owns, for the one
service whose own transaction must hold more than the start (``orders.services.order_place``
reads back the order its saga's first step created). ``sagas_sweep`` (the recovery pass)
lives in ``sagas.sweeper`` and is exported here with the rest of the write API.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction

from infrastructure.clock import database_now
from infrastructure.db import pipelined_transaction
from sagas.definitions import (
    INJECTED_FAULT,
    SagaDefinition,
    Step,
    StepBusinessFailure,
    StepCall,
    StopRequest,
    TransientStepError,
    idempotency_key,
)
from sagas.dispatch import StepMessage, publish_on_commit
from sagas.engine import StopVerdict, first_cursor
from sagas.errors import (
    SagaAlreadyActive,
    TransactionRequired,
)
from sagas.faults import fault_take
from sagas.models import Saga
from sagas.operations import saga_retry, saga_skip_compensation
from sagas.recorder import saga_record_start, stop_request_record
from sagas.registry import get_definition
from sagas.statuses import (
    ACTIVE_SAGA_STATUSES,
    FaultMode,
    Phase,
)
from sagas.sweeper import SweepResult, sagas_sweep

__all__ = [
    "StopVerdict",
    "SweepResult",
    "is_one_active_exclusive_violation",
    "saga_begin",
    "saga_request_stop",
    "saga_retry",
    "saga_skip_compensation",
    "saga_start",
    "sagas_sweep",
]

#: The partial unique index that allows one active exclusive saga per subject.
_ONE_ACTIVE_EXCLUSIVE = "sagas_saga_one_active_exclusive_per_subject"


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
    """Start a saga in one durable transaction; its first remote step is sent after commit.

    Leading steps marked ``local`` run first, inside that transaction (see
    :func:`saga_begin`); what they write and the saga commit together or not at all. With
    ``exclusive``, a second active exclusive saga on the same ``subject`` raises
    :class:`SagaAlreadyActive` and nothing of the start is written.
    """
    try:
        with pipelined_transaction():
            return saga_begin(
                saga_type=saga_type,
                context=context,
                correlation_id=correlation_id,
                actor=actor,
                subject=subject,
                exclusive=exclusive,
                now=now,
            )
    except IntegrityError as exc:
        # Two exclusive starts racing each other: the index decides, at the latest when
        # the loser commits.
        if exclusive and is_one_active_exclusive_violation(exc):
            raise SagaAlreadyActive(subject) from exc
        raise


def is_one_active_exclusive_violation(exc: IntegrityError) -> bool:
    """Tell whether ``exc`` is the index refusing a second active exclusive saga on a subject."""
    return _ONE_ACTIVE_EXCLUSIVE in str(exc)


def saga_begin(
    *,
    saga_type: str,
    context: Mapping[str, Any],
    correlation_id: str,
    actor: str,
    subject: str = "",
    exclusive: bool = False,
    now: datetime | None = None,
) -> UUID:
    """Start a saga inside the caller's transaction (``TransactionRequired`` outside one).

    Leading steps marked ``local`` run first, right here: their results merge into the
    context, and the saga is then written as they left it, with those steps SUCCEEDED and
    logged. An exception from a local step reaches the caller before anything of the saga
    is written (and rolls the caller's transaction back with whatever the step wrote). A
    local step therefore cannot read its own saga's row. With ``exclusive``, an active
    exclusive saga on the same ``subject`` found before the local steps run raises
    :class:`SagaAlreadyActive` at once; between two starts racing each other a partial
    unique index decides, failing the loser's transaction with an ``IntegrityError`` (at
    its commit, in a pipelined one), which :func:`saga_start` reports as
    :class:`SagaAlreadyActive`.
    """
    definition = get_definition(saga_type)
    if not transaction.get_connection().in_atomic_block:
        raise TransactionRequired()
    # The database's clock: workers on other hosts compare the due time written here.
    now = now or database_now()
    saga_id = uuid.uuid4()
    if exclusive and _active_exclusive_saga_on(subject):
        # Checked before the local steps read anything: an exclusive saga that finished
        # after they read but before the row below was written would leave the unique index
        # nothing to refuse, and the new saga would act on what the finished one had changed
        # (a second cancellation of an order the first had just cancelled). Once none is
        # active here, whatever the last one did is committed and the local steps see it.
        # Two starts racing each other are still decided by the index.
        raise SagaAlreadyActive(subject)
    # Refuses what PostgreSQL's JSON could not hold, with the caller's stack trace, before
    # any local step runs.
    json.dumps(dict(context))
    data = _run_local_steps(
        saga_id=saga_id,
        saga_type=saga_type,
        definition=definition,
        context=dict(context),
        correlation_id=correlation_id,
        actor=actor,
        now=now,
    )
    saga_record_start(
        saga_id=saga_id,
        saga_type=saga_type,
        definition=definition,
        context=data,
        correlation_id=correlation_id,
        actor=actor,
        subject=subject,
        exclusive=exclusive,
        now=now,
    )
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


def saga_request_stop(
    *, saga_id: UUID, code: str, actor: str, now: datetime | None = None
) -> StopVerdict:
    """Ask a saga to stop at its next step boundary and compensate, in the caller's transaction.

    ``code`` is the failure code its compensations see, ``actor`` who asked. The request is
    recorded on the saga's row (the first one stands); a step already running finishes
    first and its outcome decides, and when none runs the saga starts compensating here.
    Returns the engine's verdict (``StopVerdict``): ``COMPLETED`` says the saga completed
    before it could be stopped, so undoing it is the caller's to start.
    ``TransactionRequired`` outside a transaction; ``SagaNotFound`` for an unknown id.
    """
    return stop_request_record(
        saga_id, StopRequest(code=code, actor=actor), now=now or database_now()
    )


def _active_exclusive_saga_on(subject: str) -> bool:
    return Saga.objects.filter(
        subject=subject, exclusive=True, status__in=ACTIVE_SAGA_STATUSES
    ).exists()


def _run_local_steps(
    *,
    saga_id: UUID,
    saga_type: str,
    definition: SagaDefinition,
    context: dict[str, Any],
    correlation_id: str,
    actor: str,
    now: datetime,
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
