"""Name the statuses of sagas, steps and attempts (DESIGN.md spells them; keep them exactly).

Plain enums with no Django or Celery import, shared by the pure engine and the models.
"""

from __future__ import annotations

from enum import StrEnum


class SagaStatus(StrEnum):
    """Where a saga stands as a whole."""

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    COMPENSATING = "COMPENSATING"
    COMPENSATED = "COMPENSATED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"


#: Statuses in which a saga still has work to do or waits for an operator.
ACTIVE_SAGA_STATUSES: frozenset[SagaStatus] = frozenset(
    {SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.COMPENSATION_FAILED}
)
#: Statuses in which a saga's steps are dispatched and claimed (no operator needed).
MOVING_SAGA_STATUSES: frozenset[SagaStatus] = frozenset(
    {SagaStatus.RUNNING, SagaStatus.COMPENSATING}
)


class StepStatus(StrEnum):
    """Where one step stands; a step shows its compensation's status once compensating."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    COMPENSATING = "COMPENSATING"
    COMPENSATED = "COMPENSATED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"
    SKIPPED = "SKIPPED"


#: Step statuses that describe the compensation phase (the step shows compensation attempts).
COMPENSATION_STEP_STATUSES: frozenset[StepStatus] = frozenset(
    {
        StepStatus.COMPENSATING,
        StepStatus.COMPENSATED,
        StepStatus.COMPENSATION_FAILED,
        StepStatus.SKIPPED,
    }
)


class Phase(StrEnum):
    """Which half of a step runs: its action or its compensation."""

    ACTION = "action"
    COMPENSATION = "compensation"


class AttemptStatus(StrEnum):
    """How one attempt of an action or a compensation ended (one step-log row each)."""

    SUCCEEDED = "SUCCEEDED"
    #: Failed transiently; another attempt follows (after a backoff).
    RETRYING = "RETRYING"
    #: Failed for good: a business failure, a permanent fault, or retries exhausted.
    FAILED = "FAILED"
    #: Ran past its timeout (counts as a transient failure).
    TIMED_OUT = "TIMED_OUT"
    #: Its worker process died mid-attempt; the same attempt is taken over.
    WORKER_LOST = "WORKER_LOST"


class FaultMode(StrEnum):
    """How an injected fault fails a step: transiently (retried) or for good."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"


class OperatorActionKind(StrEnum):
    """What an operator did to a saga that needed attention."""

    RETRY = "retry"
    SKIP_COMPENSATION = "skip_compensation"
    #: A forward step resolved by hand: it counts as done, the saga carries on forward.
    SKIP_STEP = "skip_step"


class Attention(StrEnum):
    """Say why a saga is in the "needs attention" queue (``sagas.engine.attention``)."""

    COMPENSATION_FAILED = "compensation failed"
    RETRYING_FORWARD = "retrying forward past its point of no return"
    PAST_DEADLINE = "past its deadline"
