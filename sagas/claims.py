"""Claim an attempt of a saga step for this process, or find that the message is a no-op.

A claim marks the attempt running on the saga row: a fresh claim token, the attempt number,
the worker's host, pid, name and process identity (``sagas.workers``), and a lease
(``lease_until``) past which the sweeper counts the attempt as stalled. The step row shows RUNNING
(COMPENSATING for a compensation).

One path, one rule: read the saga's row, let ``sagas.engine.decide_claim`` decide, act:

- **ignore** the message (duplicate, stale, early, or a live attempt holds the step);
- **refuse** it when this process's code lacks the definition version the saga started under
  (logged as an error; the saga waits, unclaimed, for a worker that has it);
- **claim** the attempt, or take over one whose worker process died (logging the lost run),
  with one compare-and-set statement (``sagas.recorder.claim_write``): when another message
  claimed the saga between the read and the write, nothing is written and this message is a
  no-op;
- **give up** on an attempt that keeps killing its workers (the poison guard): recorded as
  the outcome ``Poisoned``.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings

from infrastructure.logs import subject_ids
from sagas import workers
from sagas.definitions import SagaDefinition
from sagas.engine import (
    Claim,
    Claimant,
    ClaimView,
    GiveUp,
    Ignore,
    Poisoned,
    SagaState,
    decide,
    decide_claim,
)
from sagas.errors import UnknownDefinitionVersion, UnknownSagaType
from sagas.recorder import (
    AttemptRecord,
    Loaded,
    claim_write,
    outcome_record,
    saga_load,
    saga_state,
)
from sagas.registry import get_definition
from sagas.statuses import Phase
from sagas.workers import WorkerIdentity

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    """Describe an attempt this process now holds: the saga as claimed and when it started."""

    loaded: Loaded
    started_at: datetime

    @property
    def saga_type(self) -> str:
        """Return the saga's type."""
        return self.loaded.saga.saga_type

    @property
    def definition(self) -> SagaDefinition:
        """Return the saga's definition."""
        return self.loaded.definition

    @property
    def state(self) -> SagaState:
        """Return the engine's view of the saga, the claimed attempt counted."""
        return self.loaded.state

    @property
    def token(self) -> UUID:
        """Return the claim's token (only its holder knows it)."""
        token = self.loaded.saga.claim_token
        assert token is not None
        return token

    @property
    def context(self) -> dict[str, Any]:
        """Return the saga's context as the attempt starts."""
        return dict(self.loaded.saga.context)

    @property
    def correlation_id(self) -> str:
        """Return the saga's correlation id."""
        return self.loaded.saga.correlation_id

    @property
    def actor(self) -> str:
        """Return who started the saga."""
        return self.loaded.saga.actor


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
    the end of its lease. Only the claimant knows its token, so nobody else can free a live claim.
    """
    saga = saga_load(saga_id)
    if saga is None:
        return NotClaimed("no such saga")
    try:
        # The version the saga started under, never another: running its steps under a
        # different one would guess at what it did and what undoing it means.
        definition = get_definition(saga.saga_type, saga.definition_version)
        step_index = definition.index(step)
        state = saga_state(saga, definition)
    except UnknownDefinitionVersion as exc:
        # Left unclaimed for a worker that has the version; the sweeper re-sends the step.
        logger.error(
            "saga %s step %s %s refused: %s; this worker's code does not have it",
            saga.id,
            step,
            phase,
            exc,
            extra={
                "saga_id": str(saga.id),
                "step": step,
                "phase": phase.value,
                "definition_version": saga.definition_version,
                **subject_ids(saga.subject),
            },
        )
        return NotClaimed(f"refused: {exc}")
    except UnknownSagaType as exc:
        return NotClaimed(str(exc))
    except KeyError:
        return NotClaimed(f"saga type {saga.saga_type} has no step {step!r}")
    loaded = Loaded(saga=saga, definition=definition, state=state)
    held = saga.claim_token is not None
    view = ClaimView(
        due_at=saga.due_at,
        claimed=held,
        claimant=(
            Claimant.DEAD
            if held and abandoned is not None and saga.claim_token == abandoned
            else workers.claimant(saga.claim_process, saga.claim_token)
        ),
        lease_expired=held and saga.lease_until is not None and saga.lease_until <= now,
    )
    decision = decide_claim(
        state,
        view,
        step_index=step_index,
        phase=phase,
        now=now,
        max_redeliveries=int(settings.SAGA_MAX_REDELIVERIES),
    )
    match decision:
        case Ignore(reason=reason):
            return NotClaimed(reason)
        case GiveUp(error=error):
            recorded = outcome_record(
                loaded,
                lambda d, s: decide(d, s, Poisoned(error), rand=random.random()),  # noqa: S311 (jitter, not secrets)
                now=now,
                attempt=AttemptRecord.of_claim(saga),
            )
            if recorded.applied:
                logger.error(
                    "saga %s (%s) step %s %s poisoned: %s",
                    saga.id,
                    saga.saga_type,
                    step,
                    phase,
                    error,
                    extra={
                        "saga_id": str(saga.id),
                        "step": step,
                        "phase": phase.value,
                        **subject_ids(saga.subject),
                    },
                )
            return NotClaimed(error)
        case Claim(takeover=takeover, redeliveries=redeliveries):
            lost_error = (
                f"worker {saga.claim_worker} died during the attempt; "
                f"taken over by {worker.name} (redelivery {redeliveries})"
                if takeover
                else ""
            )
            claimed = claim_write(
                loaded,
                decision,
                token=uuid.uuid4(),
                holder=worker,
                now=now,
                lease_until=now + lease_length(definition.steps[step_index].timeout),
                lost_error=lost_error,
            )
            if claimed is None:
                return NotClaimed("another message claimed the attempt first")
            return Claimed(loaded=claimed, started_at=now)
