"""Decide every saga transition: plain functions over plain values, no Django, no Celery.

The Django side (``sagas.runner``, ``sagas.services``, ``sagas.sweeper``) reads a saga's row,
asks a function here what happens next, and writes the answer. Keeping the decisions here
lets them be tested table-driven without a database, and keeps the rules in one place:

- A step runs at a *cursor*: a step index and a phase (action or compensation). One attempt
  at a time: the saga row holds the cursor, its attempt count and, while an attempt runs,
  the claim.
- An action that succeeds moves the cursor to the next action, or completes the saga.
- A transient failure (or a timeout) retries the same cursor after a backoff until the
  step's policy runs out; then it is a failure for good with code ``step_failed``.
- A failure for good in an action starts compensating: the compensations of the steps that
  succeeded run in reverse order, passing over steps that have none. When the failed action's
  outcome is unknown (its retries ran out, it timed out, or it kept killing its worker), its
  own compensation runs first: a charge that timed out may have moved money all the same.
  Compensations are idempotent and treat "nothing to undo" as success, so this is safe. A
  business failure is the participant saying nothing happened, so that step is passed over.
- A step with forward recovery (past the saga's point of no return) never starts
  compensating on a failure its retries did not fix: it keeps retrying at its policy's
  longest delay, the error on show, until it succeeds.
- A compensation that fails for good stops the saga in ``COMPENSATION_FAILED``; earlier
  compensations wait for an operator's retry (a new round of attempts at the same cursor) or
  skip (the compensation counts as done by hand, the saga carries on).
- A saga can be asked to stop (a :class:`~sagas.definitions.StopRequest`, recorded on its
  row). The request never interrupts an attempt: a step already running finishes first, and
  at the next boundary (its success) the saga compensates instead of running the next step,
  the step that just succeeded included, with the request's code as its failure. A step not
  yet running is stopped by the request itself (:func:`decide_stop_request`,
  :func:`decide_stop`). If the step that just succeeded was the last one, there is nothing
  left to stop: the saga completes and says it was stopped too late
  (``Transition.stopped_late``), so its definition's ``on_late_stop`` undoes it with a saga
  of its own. A failure while a stop is pending is decided as without it (a retry is the
  same step finishing); steps past the point of no return ignore the request.
- A claim whose worker process died is taken over by the redelivered message and runs the
  same attempt again; past ``max_redeliveries`` takeovers the step fails for good (a poison
  message must not crash workers forever).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, assert_never

from sagas.definitions import STEP_FAILED, Failure, RetryPolicy, SagaDefinition, StopRequest
from sagas.errors import SagaStateConflict, StepNotSkippable
from sagas.statuses import (
    MOVING_SAGA_STATUSES,
    AttemptStatus,
    Attention,
    Phase,
    SagaStatus,
    StepStatus,
)


@dataclass(frozen=True)
class Cursor:
    """Point at what a saga runs next: a step (by index) and a phase."""

    index: int
    phase: Phase


@dataclass(frozen=True)
class SagaState:
    """Hold what the decisions need to know about a saga (read from its row).

    ``attempt`` counts the attempts made at the cursor, the running one included;
    ``round_start`` is how many of them belong to rounds before an operator's retry, so the
    retry policy counts only this round's. ``stop`` is a request to stop at the next step
    boundary, once made.
    """

    status: SagaStatus
    cursor: Cursor
    attempt: int = 0
    round_start: int = 0
    redeliveries: int = 0
    failure: Failure | None = None
    stop: StopRequest | None = None


# --- Outcomes of one attempt ------------------------------------------------------------


@dataclass(frozen=True)
class Succeeded:
    """The participant returned; ``result`` merges into the saga's context."""

    result: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TransientFailure:
    """The participant raised a transient (or unexpected) error, described in ``error``."""

    error: str


@dataclass(frozen=True)
class BusinessFailure:
    """The participant raised a business failure (or a permanent fault was injected)."""

    code: str
    message: str


@dataclass(frozen=True)
class TimedOut:
    """The attempt ran past its step's timeout (counts as a transient failure)."""

    error: str


@dataclass(frozen=True)
class Poisoned:
    """The attempt lost its worker more often than the poison guard allows."""

    error: str


Outcome = Succeeded | TransientFailure | BusinessFailure | TimedOut | Poisoned


# --- Transitions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """Say which attempt runs next and in how many seconds.

    ``new_round`` starts a fresh count of attempts at the same cursor (an operator's retry);
    a schedule at another cursor always starts counting from zero.
    """

    cursor: Cursor
    delay: float = 0.0
    new_round: bool = False


@dataclass(frozen=True)
class Transition:
    """Describe everything one decision changes.

    ``step_status`` is the new status of the step at the *old* cursor. ``attempt_status``
    is how the finished attempt is logged (None when no attempt finished, as for operator
    actions). ``next`` is None when the saga comes to rest (finished, or waiting for an
    operator). ``stopped_late``: the saga completes although it was asked to stop.
    """

    saga_status: SagaStatus
    step_status: StepStatus
    attempt_status: AttemptStatus | None
    error: str
    next: Schedule | None
    failure: Failure | None
    merge: Mapping[str, Any] | None = None
    stopped_late: bool = False

    @property
    def finished(self) -> bool:
        """Tell whether the saga reached an end state (COMPLETED or COMPENSATED)."""
        return self.saga_status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED)


def compensation_order(
    definition: SagaDefinition, *, failed_index: int, outcome_unknown: bool = False
) -> list[int]:
    """List the steps to compensate after step ``failed_index`` failed, in running order.

    Every step before the failed one succeeded; those with a compensation are undone, the
    latest first. The failed step itself is undone too when ``outcome_unknown``: its action
    may have taken effect before the error that we saw.
    """
    first = failed_index if outcome_unknown else failed_index - 1
    return [i for i in range(first, -1, -1) if definition.steps[i].compensation]


def _previous_compensation(definition: SagaDefinition, *, below: int) -> int | None:
    for i in range(below - 1, -1, -1):
        if definition.steps[i].compensation is not None:
            return i
    return None


def _policy(definition: SagaDefinition, cursor: Cursor) -> RetryPolicy:
    step = definition.steps[cursor.index]
    return step.retry if cursor.phase is Phase.ACTION else step.compensation_retry


def first_cursor(definition: SagaDefinition) -> Cursor | None:
    """Return where a new saga starts after its local steps ran (None: nothing is remote)."""
    for i, step in enumerate(definition.steps):
        if not step.local:
            return Cursor(i, Phase.ACTION)
    return None


def _start_compensating(
    definition: SagaDefinition,
    state: SagaState,
    failure: Failure,
    *,
    logged: AttemptStatus,
    outcome_unknown: bool,
) -> Transition:
    below = state.cursor.index + 1 if outcome_unknown else state.cursor.index
    target = _previous_compensation(definition, below=below)
    message = f"{failure.code}: {failure.message}" if failure.message else failure.code
    return Transition(
        saga_status=SagaStatus.COMPENSATING if target is not None else SagaStatus.COMPENSATED,
        step_status=StepStatus.FAILED,
        attempt_status=logged,
        error=message,
        next=Schedule(Cursor(target, Phase.COMPENSATION)) if target is not None else None,
        failure=failure,
    )


def _continue_compensating(
    definition: SagaDefinition,
    state: SagaState,
    *,
    step_status: StepStatus,
    logged: AttemptStatus | None,
    merge: Mapping[str, Any] | None = None,
) -> Transition:
    target = _previous_compensation(definition, below=state.cursor.index)
    return Transition(
        saga_status=SagaStatus.COMPENSATING if target is not None else SagaStatus.COMPENSATED,
        step_status=step_status,
        attempt_status=logged,
        error="",
        next=Schedule(Cursor(target, Phase.COMPENSATION)) if target is not None else None,
        failure=state.failure,
        merge=merge,
    )


def _compensation_failed(state: SagaState, error: str, logged: AttemptStatus) -> Transition:
    return Transition(
        saga_status=SagaStatus.COMPENSATION_FAILED,
        step_status=StepStatus.COMPENSATION_FAILED,
        attempt_status=logged,
        error=error,
        next=None,
        failure=state.failure,
    )


def _retry_forward(
    definition: SagaDefinition, state: SagaState, error: str, *, logged: AttemptStatus
) -> Transition:
    # Past the point of no return: wait the longest delay, try again, keep the error on show.
    policy = _policy(definition, state.cursor)
    return Transition(
        saga_status=state.status,
        step_status=StepStatus.PENDING,
        attempt_status=logged,
        error=f"{error} (retrying until it succeeds: compensating is no longer possible)",
        next=Schedule(state.cursor, delay=policy.max_delay),
        failure=state.failure,
    )


def _after_transient(
    definition: SagaDefinition,
    state: SagaState,
    error: str,
    *,
    logged: AttemptStatus | None,
    rand: float,
) -> Transition:
    """Retry a transient failure (or a timeout) within the policy, then give it up for good."""
    cursor = state.cursor
    step = definition.steps[cursor.index]
    in_action = cursor.phase is Phase.ACTION
    policy = _policy(definition, cursor)
    failed_in_round = state.attempt - state.round_start
    if failed_in_round < policy.max_attempts:
        return Transition(
            saga_status=state.status,
            step_status=StepStatus.PENDING if in_action else StepStatus.COMPENSATING,
            attempt_status=logged or AttemptStatus.RETRYING,
            error=error,
            next=Schedule(cursor, delay=policy.delay(failed_attempts=failed_in_round, rand=rand)),
            failure=state.failure,
        )
    if in_action and step.forward != "none":
        return _retry_forward(definition, state, error, logged=logged or AttemptStatus.RETRYING)
    exhausted = f"{error} (gave up after {failed_in_round} attempts)"
    if in_action:
        return _start_compensating(
            definition,
            state,
            Failure(step=step.name, code=STEP_FAILED, message=exhausted),
            logged=logged or AttemptStatus.FAILED,
            outcome_unknown=True,
        )
    return _compensation_failed(state, exhausted, logged or AttemptStatus.FAILED)


def decide(
    definition: SagaDefinition, state: SagaState, outcome: Outcome, *, rand: float
) -> Transition:
    """Decide what follows the attempt at ``state.cursor`` that ended with ``outcome``.

    ``rand`` (in [0, 1)) feeds the backoff's jitter, so the caller owns the randomness.
    """
    if state.status not in MOVING_SAGA_STATUSES:
        raise SagaStateConflict(saga_id=None, status=state.status, action="record an attempt of")
    cursor = state.cursor
    step = definition.steps[cursor.index]
    in_action = cursor.phase is Phase.ACTION

    following = cursor.index + 1
    done = following >= len(definition.steps)
    stopping = _stop_honoured(definition, state)

    match outcome:
        case Succeeded(result=result) if not in_action:
            return _continue_compensating(
                definition,
                state,
                step_status=StepStatus.COMPENSATED,
                logged=AttemptStatus.SUCCEEDED,
                merge=result,
            )
        case Succeeded(result=result) if stopping and not done:
            # The boundary a stop request waited for: undo this step and those before it.
            return _stopped(
                definition,
                state,
                through=cursor.index,
                step_status=StepStatus.SUCCEEDED,
                logged=AttemptStatus.SUCCEEDED,
                merge=result,
            )
        case Succeeded(result=result):
            return Transition(
                saga_status=SagaStatus.COMPLETED if done else SagaStatus.RUNNING,
                step_status=StepStatus.SUCCEEDED,
                attempt_status=AttemptStatus.SUCCEEDED,
                error="",
                next=None if done else Schedule(Cursor(following, Phase.ACTION)),
                failure=None,
                merge=result,
                stopped_late=stopping,
            )
        case TransientFailure(error=error) | TimedOut(error=error):
            logged = AttemptStatus.TIMED_OUT if isinstance(outcome, TimedOut) else None
            return _after_transient(definition, state, error, logged=logged, rand=rand)
        case BusinessFailure(code=code, message=message):
            error = f"{code}: {message}" if message else code
            if in_action and step.forward == "always":
                return _retry_forward(definition, state, error, logged=AttemptStatus.FAILED)
            if in_action:
                return _start_compensating(
                    definition,
                    state,
                    Failure(step=step.name, code=code, message=message),
                    logged=AttemptStatus.FAILED,
                    outcome_unknown=False,
                )
            return _compensation_failed(state, error, AttemptStatus.FAILED)
        case Poisoned(error=error):
            # The attempt keeps killing its worker; retrying it again would too, but past
            # the point of no return a slow retry still beats an inconsistent end.
            if in_action and step.forward != "none":
                return _retry_forward(definition, state, error, logged=AttemptStatus.WORKER_LOST)
            if in_action:
                return _start_compensating(
                    definition,
                    state,
                    Failure(step=step.name, code=STEP_FAILED, message=error),
                    logged=AttemptStatus.WORKER_LOST,
                    outcome_unknown=True,
                )
            return _compensation_failed(state, error, AttemptStatus.WORKER_LOST)
    assert_never(outcome)


def _stop_honoured(definition: SagaDefinition, state: SagaState) -> bool:
    """Tell whether a stop was asked that the action at the cursor gives way to."""
    cursor = state.cursor
    return (
        state.stop is not None
        and state.status is SagaStatus.RUNNING
        and cursor.phase is Phase.ACTION
        and definition.steps[cursor.index].forward == "none"
    )


def _stopped(
    definition: SagaDefinition,
    state: SagaState,
    *,
    through: int,
    step_status: StepStatus,
    logged: AttemptStatus | None,
    merge: Mapping[str, Any] | None = None,
) -> Transition:
    """Compensate steps ``through`` and before (latest first) because a stop was asked."""
    assert state.stop is not None
    failure = state.stop.failure(definition.steps[state.cursor.index].name)
    target = _previous_compensation(definition, below=through + 1)
    return Transition(
        saga_status=SagaStatus.COMPENSATING if target is not None else SagaStatus.COMPENSATED,
        step_status=step_status,
        attempt_status=logged,
        error="",
        next=Schedule(Cursor(target, Phase.COMPENSATION)) if target is not None else None,
        failure=failure,
        merge=merge,
    )


class StopVerdict(enum.Enum):
    """Say what a request to stop a saga does (see :func:`decide_stop_request`)."""

    #: Record it; the attempt running now finishes, and its outcome decides with it.
    RECORD_AND_WAIT = "record_and_wait"
    #: Record it and compensate at once: nothing runs at the cursor (:func:`decide_stop`).
    RECORD_AND_STOP = "record_and_stop"
    #: A stop was asked before: the first request stands, nothing to write.
    ALREADY_REQUESTED = "already_requested"
    #: The saga is undoing itself already (compensating, or waiting for an operator to).
    UNDOING = "undoing"
    #: Too late: the saga completed (whatever undoes it is the caller's to start).
    COMPLETED = "completed"
    #: The saga was undone already.
    COMPENSATED = "compensated"


def decide_stop_request(
    definition: SagaDefinition, state: SagaState, *, claimed: bool
) -> StopVerdict:
    """Decide what a request to stop does to a saga in ``state`` (``claimed``: a step runs).

    The caller holds the saga's row locked, so no outcome or claim lands meanwhile: an
    attempt either holds the claim (its outcome will see the request) or none runs.
    """
    match state.status:
        case SagaStatus.COMPLETED:
            return StopVerdict.COMPLETED
        case SagaStatus.COMPENSATED:
            return StopVerdict.COMPENSATED
        case SagaStatus.COMPENSATING | SagaStatus.COMPENSATION_FAILED:
            return StopVerdict.UNDOING
        case SagaStatus.RUNNING:
            if state.stop is not None:
                return StopVerdict.ALREADY_REQUESTED
            stoppable = definition.steps[state.cursor.index].forward == "none"
            if claimed or not stoppable:
                return StopVerdict.RECORD_AND_WAIT
            return StopVerdict.RECORD_AND_STOP
    assert_never(state.status)


def decide_stop(definition: SagaDefinition, state: SagaState) -> Transition:
    """Stop a RUNNING saga whose cursor's action is not running: compensate what was done.

    An action that was attempted before (its retry waits for its due time) may have taken
    effect, so its own compensation runs too, as when its retries run out; one never
    attempted is passed over and stays PENDING.
    """
    if state.status is not SagaStatus.RUNNING or state.stop is None:
        raise SagaStateConflict(saga_id=None, status=state.status, action="stop")
    attempted = state.attempt > 0
    return _stopped(
        definition,
        state,
        through=state.cursor.index if attempted else state.cursor.index - 1,
        step_status=StepStatus.FAILED if attempted else StepStatus.PENDING,
        logged=None,
    )


def decide_operator_retry(definition: SagaDefinition, state: SagaState) -> Transition:
    """Resume a COMPENSATION_FAILED saga at its failed compensation, with fresh attempts."""
    if state.status is not SagaStatus.COMPENSATION_FAILED:
        raise SagaStateConflict(saga_id=None, status=state.status, action="retry")
    return Transition(
        saga_status=SagaStatus.COMPENSATING,
        step_status=StepStatus.COMPENSATING,
        attempt_status=None,
        error="",
        next=Schedule(state.cursor, new_round=True),
        failure=state.failure,
    )


def decide_operator_skip(definition: SagaDefinition, state: SagaState) -> Transition:
    """Mark the failed compensation resolved by hand (SKIPPED) and carry on compensating."""
    if state.status is not SagaStatus.COMPENSATION_FAILED:
        raise SagaStateConflict(saga_id=None, status=state.status, action="skip a compensation of")
    return _continue_compensating(definition, state, step_status=StepStatus.SKIPPED, logged=None)


# --- Needing attention -------------------------------------------------------------------


def retrying_forward(definition: SagaDefinition, state: SagaState, *, claimed: bool) -> bool:
    """Tell whether the saga's action keeps retrying past its point of no return.

    That is a step with forward recovery whose failures in this round (the attempt running
    now, when ``claimed``, not counted) reached its policy's attempts: from there on it only
    retries at the longest delay, and only a fix or an operator moves it on.
    """
    cursor = state.cursor
    step = definition.steps[cursor.index]
    if state.status is not SagaStatus.RUNNING or cursor.phase is not Phase.ACTION:
        return False
    failed = state.attempt - state.round_start - (1 if claimed else 0)
    return step.forward != "none" and failed >= step.retry.max_attempts


def attention(
    definition: SagaDefinition, state: SagaState, *, claimed: bool, past_deadline: bool
) -> Attention | None:
    """Say why the saga needs an operator, or None when it gets on by itself.

    ``past_deadline``: the saga's deadline passed (the caller compares it with its clock).
    """
    if state.status is SagaStatus.COMPENSATION_FAILED:
        return Attention.COMPENSATION_FAILED
    if retrying_forward(definition, state, claimed=claimed):
        return Attention.RETRYING_FORWARD
    if past_deadline and state.status in MOVING_SAGA_STATUSES:
        return Attention.PAST_DEADLINE
    return None


def decide_operator_skip_step(
    definition: SagaDefinition, state: SagaState, *, claimed: bool, past_deadline: bool
) -> Transition:
    """Resolve by hand the step a saga needing attention waits at; the saga carries on.

    A failed compensation is skipped as :func:`decide_operator_skip` does. An action (one
    retrying forward, or any step of a saga past its deadline) counts as succeeded: the
    operator asserts its effect happened or is not needed, and the saga moves to the next
    step, completes, or (asked to stop before) compensates, exactly as after a success. A
    compensation still retrying counts as SKIPPED and compensating continues. A step an
    attempt is running now is refused: its outcome is on its way.
    """
    why = attention(definition, state, claimed=claimed, past_deadline=past_deadline)
    if why is None:
        raise StepNotSkippable(
            saga_id=None,
            status=state.status,
            why=f"it is {state.status}, before its deadline and not retrying forward",
        )
    if why is Attention.COMPENSATION_FAILED:
        return decide_operator_skip(definition, state)
    if claimed:
        raise StepNotSkippable(
            saga_id=None,
            status=state.status,
            why="an attempt of its step is running; skip it once that attempt has ended",
        )
    if state.cursor.phase is Phase.COMPENSATION:
        return _continue_compensating(
            definition, state, step_status=StepStatus.SKIPPED, logged=None
        )
    # rand is unused on a success: no backoff follows it.
    return replace(decide(definition, state, Succeeded(), rand=0.0), attempt_status=None)


# --- Claims -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """Start attempt ``attempt`` at the cursor (``takeover``: rerun a lost attempt)."""

    attempt: int
    takeover: bool = False
    redeliveries: int = 0


@dataclass(frozen=True)
class Ignore:
    """Acknowledge the message and do nothing (duplicate, stale, early or busy)."""

    reason: str


@dataclass(frozen=True)
class GiveUp:
    """Stop taking over an attempt that keeps losing its worker: fail it for good."""

    error: str


ClaimDecision = Claim | Ignore | GiveUp


class Claimant(enum.Enum):
    """Say what the process holding a claim is known to be."""

    #: Seen running (this machine, this PID namespace, the same process).
    ALIVE = "alive"
    #: Known gone: its process exited or its pid now names another process, or it gave the
    #: claim up.
    DEAD = "dead"
    #: On another machine or in another PID namespace: it cannot be looked at from here, so
    #: only its lease can free the claim (a same host name or pid proves nothing).
    ELSEWHERE = "elsewhere"


@dataclass(frozen=True)
class ClaimView:
    """Hold what a claim decision needs beyond the saga state: timing and the current claim.

    ``claimed`` tells whether an attempt holds the saga; ``claimant`` what its worker process
    is known to be; ``lease_expired`` whether it ran past its lease (the sweeper times those
    out).
    """

    due_at: datetime | None
    claimed: bool
    claimant: Claimant = Claimant.ALIVE
    lease_expired: bool = False


#: A message may arrive a little before its due time (clock granularity, countdown rounding).
EARLY_TOLERANCE = timedelta(milliseconds=250)


def decide_claim(
    state: SagaState,
    view: ClaimView,
    *,
    step_index: int,
    phase: Phase,
    now: datetime,
    max_redeliveries: int,
) -> ClaimDecision:
    """Decide whether a message for ``(step_index, phase)`` may run an attempt now.

    A message is a hint, never an order: it runs only when the saga is moving, the message
    names the saga's cursor, the attempt is due and no live attempt holds the saga. So a
    duplicated, redelivered or stale message is a no-op, and a step that succeeded is never
    run again.
    """
    if state.status not in MOVING_SAGA_STATUSES:
        return Ignore(f"saga is {state.status}")
    if state.cursor != Cursor(step_index, phase):
        return Ignore("not the saga's current step and phase")
    if view.claimed:
        if view.claimant is not Claimant.DEAD:
            if view.lease_expired:
                return Ignore("the running attempt is past its lease; the sweeper times it out")
            if view.claimant is Claimant.ELSEWHERE:
                return Ignore(
                    "a live attempt holds the step (its worker runs on another machine or in "
                    "another PID namespace; its lease decides)"
                )
            return Ignore("a live attempt holds the step")
        if state.redeliveries >= max_redeliveries:
            return GiveUp(
                f"poison guard: attempt {state.attempt} lost its worker "
                f"{state.redeliveries + 1} times; giving up"
            )
        return Claim(attempt=state.attempt, takeover=True, redeliveries=state.redeliveries + 1)
    if view.due_at is None:
        return Ignore("nothing is due at this step")
    if view.due_at - EARLY_TOLERANCE > now:
        return Ignore("not due yet")
    return Claim(attempt=state.attempt + 1)


def claimed_step_status(phase: Phase) -> StepStatus:
    """Return the status a step shows while an attempt of ``phase`` runs."""
    return StepStatus.RUNNING if phase is Phase.ACTION else StepStatus.COMPENSATING
