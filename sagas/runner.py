"""Run one attempt of one saga step: claim it, run the participant, record the outcome.

This is what a ``run_saga_step`` message does in a worker, in three short phases:

1. **Claim** (``sagas.claims``): read the saga's row and, if the message names the saga's
   cursor and the attempt is due and free (or the process holding it died), mark the attempt
   running on it, with a lease, the worker's host and pid and a fresh claim token.
2. **Run** the action or compensation outside any transaction (it may call other systems),
   or the failure the fault plan injects for it.
3. **Record** (``sagas.recorder.outcome_record``): one statement writes the outcome with a
   compare-and-set on the claim, the step-log row and the next attempt (due now, or after a
   backoff), whose message is sent once that has committed. A finisher whose claim was taken
   over or timed out writes nothing.

A message that finds nothing to do (a duplicate, a redelivery of a finished step, a stale
retry, an attempt held by a live worker) is acknowledged as a no-op.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Literal
from uuid import UUID

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError

from infrastructure.logs import log_context, subject_ids
from sagas import workers
from sagas.claims import Claimed, NotClaimed, attempt_claim
from sagas.definitions import (
    INJECTED_FAULT,
    StepBusinessFailure,
    StepCall,
    TransientStepError,
    idempotency_key,
)
from sagas.engine import BusinessFailure, Outcome, Succeeded, TimedOut, TransientFailure, decide
from sagas.faults import fault_take
from sagas.recorder import AttemptRecord, outcome_record
from sagas.statuses import FaultMode, Phase
from sagas.workers import WorkerIdentity

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class AttemptAbandoned(Exception):
    """Say that this process claimed an attempt, then lost the database before its outcome.

    The claim stays in PostgreSQL with this live process's pid, so no one else would take it
    over before its lease runs out; the retried message carries ``token`` to give it up.
    """

    def __init__(self, token: UUID) -> None:
        self.token = token
        super().__init__(f"attempt claimed with {token} abandoned: its outcome was not written")


@dataclass(frozen=True)
class AttemptReport:
    """Say what a step message did: ``ran`` an attempt or not, and why."""

    ran: bool
    detail: str


def step_attempt_run(
    *,
    saga_id: UUID,
    step: str,
    phase: Phase,
    worker: WorkerIdentity,
    clock: Clock,
    rand: Callable[[], float] = random.random,
    abandoned: UUID | None = None,
) -> AttemptReport:
    """Run the attempt a ``run_saga_step`` message asks for, if it is still wanted.

    ``abandoned`` is the token of a claim this message's sender gave up (see
    :class:`AttemptAbandoned`). Raises ``AttemptAbandoned`` when the database fails after
    the claim, before the outcome.
    """
    claimed = attempt_claim(
        saga_id=saga_id, step=step, phase=phase, worker=worker, now=clock(), abandoned=abandoned
    )
    if isinstance(claimed, NotClaimed):
        return AttemptReport(ran=False, detail=claimed.detail)
    # The attempt's ids join the log lines of this attempt only: an in-process caller (the
    # sweeper, a test driving sagas) runs the next attempt without them.
    ids = subject_ids(claimed.loaded.saga.subject)
    with log_context(correlation_id=claimed.correlation_id, **ids):
        try:
            fault = fault_take(
                saga_type=claimed.saga_type, step=step, phase=phase, now=claimed.started_at
            )
        except DatabaseError as exc:
            raise AttemptAbandoned(claimed.token) from exc
        workers.attempt_started(claimed.token)
        try:
            outcome = _run(saga_id=saga_id, claimed=claimed, fault=fault)
        finally:
            workers.attempt_ended(claimed.token)
        # One statement, so no transaction block: it commits (durably) on its own, and the next
        # step's message goes out right after.
        try:
            recorded = outcome_record(
                claimed.loaded,
                lambda definition, state: decide(definition, state, outcome, rand=rand()),
                now=clock(),
                attempt=AttemptRecord(
                    attempt=claimed.state.attempt, started_at=claimed.started_at, worker=worker.name
                ),
            )
        except DatabaseError as exc:
            raise AttemptAbandoned(claimed.token) from exc
        if not recorded.applied:
            logger.warning(
                "saga %s step %s %s attempt %s: claim was taken over or timed out; "
                "outcome %s dropped",
                saga_id,
                step,
                phase,
                claimed.state.attempt,
                type(outcome).__name__,
            )
            return AttemptReport(ran=True, detail="outcome dropped: claim lost")
        return AttemptReport(ran=True, detail=type(outcome).__name__)


def _phase_literal(phase: Phase) -> Literal["action", "compensation"]:
    return "action" if phase is Phase.ACTION else "compensation"


def _run(*, saga_id: UUID, claimed: Claimed, fault: FaultMode | None) -> Outcome:
    state = claimed.state
    step = claimed.definition.steps[state.cursor.index]
    phase = state.cursor.phase
    if fault is FaultMode.TRANSIENT:
        return TransientFailure(f"injected transient fault in {step.name} {phase}")
    if fault is FaultMode.PERMANENT:
        return BusinessFailure(INJECTED_FAULT, f"injected permanent fault in {step.name} {phase}")
    participant = step.action if phase is Phase.ACTION else step.compensation
    if participant is None:
        # Only a definition changed under a running saga gets here: nothing to undo.
        return Succeeded(None)
    call = StepCall(
        saga_id=saga_id,
        saga_type=claimed.saga_type,
        step=step.name,
        phase=_phase_literal(phase),
        attempt=state.attempt,
        idempotency_key=idempotency_key(saga_id=saga_id, step=step.name, phase=phase.value),
        context=MappingProxyType(claimed.context),
        correlation_id=claimed.correlation_id,
        actor=claimed.actor,
        failure=state.failure if phase is Phase.COMPENSATION else None,
    )
    started = time.monotonic()
    try:
        result = participant(call)
    except TransientStepError as exc:
        return TransientFailure(f"{type(exc).__name__}: {exc}")
    except StepBusinessFailure as exc:
        return BusinessFailure(exc.code, exc.message)
    except SoftTimeLimitExceeded:
        return TimedOut(f"interrupted at its {step.timeout:g}s timeout")
    except Exception as exc:
        # A bug or a passing database error: retried like a transient failure, and logged
        # with its traceback because nobody raised it on purpose.
        logger.exception("saga %s step %s %s raised unexpectedly", saga_id, step.name, phase)
        return TransientFailure(f"unexpected {type(exc).__qualname__}: {exc}")
    elapsed = time.monotonic() - started
    if elapsed > step.timeout:
        return TimedOut(f"took {elapsed:.1f}s, past its {step.timeout:g}s timeout")
    return _checked_result(result)


def _checked_result(result: object) -> Outcome:
    if result is None:
        return Succeeded(None)
    if not isinstance(result, Mapping):
        return TransientFailure(f"participant returned {type(result).__name__}, not a mapping")
    try:
        json.dumps(dict(result))
    except (TypeError, ValueError) as exc:
        return TransientFailure(f"participant returned data that is not JSON: {exc}")
    return Succeeded(dict(result))
