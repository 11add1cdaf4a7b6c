"""Re-drive sagas whose next move depends on nobody: the recovery sweeper.

Celery beat runs one pass every few seconds (``sagas.sweep``) and ``manage.py recover_sagas``
runs one by hand. A pass finds, from PostgreSQL alone:

- **due**: an attempt whose backoff was too long for a broker countdown and whose time has
  come (``due_at`` passed, no message sent for it): send it;
- **stalled**: an attempt still claimed past its lease (its worker hung, died on another
  host, or was killed by the hard time limit): count it as timed out (a transient failure,
  retried or given up like any other) and send what follows;
- **orphaned**: an attempt claimed by a process of this machine and PID namespace that no
  longer exists (the whole worker was killed: nothing redelivers its unacknowledged message
  before the broker's visibility timeout): send the step again at once, and the message that
  arrives takes the dead claim over, as a redelivered one would, instead of waiting for the
  attempt's lease to run out;
- **unsent**: an attempt due for longer than the grace period whose message should have run
  by now but has not (the process died between commit and publish, the broker lost the
  message, or it was published before a restart): send it again;
- **overdue**: an unfinished saga past its own deadline (``Saga.finish_by``), seen for the
  first time: log it at ERROR with its ids, once per saga (the admin's "needs attention"
  queue lists it until an operator or the saga itself moves it on).

Re-sending is always safe: a message only runs when the saga row says its attempt is due and
unclaimed, so a message that was merely slow becomes a no-op. Rows to re-send are taken with
``SKIP LOCKED``: a saga a worker is writing right now is left for the next pass. A stalled
attempt is timed out through ``sagas.recorder.outcome_record``, a compare-and-set on its
claim: an outcome its worker wrote in the meantime wins.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from infrastructure.clock import database_now
from infrastructure.logs import subject_ids
from sagas.dispatch import StepMessage, publish_on_commit
from sagas.engine import Claimant, TimedOut, decide
from sagas.errors import UnknownSagaType
from sagas.models import Saga
from sagas.recorder import (
    AttemptRecord,
    Loaded,
    outcome_record,
    overdue_mark,
    saga_load,
    saga_state,
)
from sagas.registry import get_definition
from sagas.statuses import MOVING_SAGA_STATUSES, Phase
from sagas.workers import claimant, namespace

logger = logging.getLogger(__name__)

#: Rows taken per transaction, so one pass never holds many locks for long.
BATCH_SIZE = 200
#: An orphaned claim's step is re-sent at most this often until a worker takes it over.
ORPHAN_RESEND_INTERVAL = timedelta(seconds=2)


@dataclass(frozen=True)
class SweepResult:
    """Count what one sweeper pass re-dispatched, by reason."""

    due: int = 0
    stalled: int = 0
    unsent: int = 0
    orphaned: int = 0
    #: Sagas newly found past their deadline (reported, not moved).
    overdue: int = 0

    @property
    def total(self) -> int:
        """Return how many sagas the pass moved."""
        return self.due + self.stalled + self.unsent + self.orphaned


def sagas_sweep(*, now: datetime | None = None, limit: int = 10_000) -> SweepResult:
    """Run one sweeper pass over every saga (at most ``limit`` of each kind) and count them."""
    # The database's clock, which wrote the due times, leases and deadlines compared here.
    now = now or database_now()
    grace = timedelta(seconds=float(settings.SAGA_SWEEP_GRACE_SECONDS))
    moving = [s.value for s in MOVING_SAGA_STATUSES]
    stalled = _time_out_stalled(now=now, limit=limit)
    orphaned = _resend(
        Q(pk__in=_orphaned_claims(now=now, limit=limit), claim_token__isnull=False)
        # Not again while the last re-send may still be on its way.
        & (Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now - ORPHAN_RESEND_INTERVAL)),
        now=now,
        limit=limit,
    )
    due = _resend(
        Q(status__in=moving, claim_token__isnull=True, due_at__lte=now, dispatched_at__isnull=True),
        now=now,
        limit=limit,
    )
    unsent = _resend(
        Q(
            status__in=moving,
            claim_token__isnull=True,
            due_at__lte=now - grace,
            # Strictly before: the pass itself stamps ``now``, so a zero grace cannot loop.
            dispatched_at__lt=now - grace,
        ),
        now=now,
        limit=limit,
    )
    overdue = _report_overdue(now=now, limit=limit)
    result = SweepResult(
        due=due, stalled=stalled, unsent=unsent, orphaned=orphaned, overdue=overdue
    )
    if result.total:
        logger.info(
            "saga sweeper: %s due, %s stalled, %s unsent, %s orphaned",
            due,
            stalled,
            unsent,
            orphaned,
        )
    return result


def _report_overdue(*, now: datetime, limit: int) -> int:
    with transaction.atomic(durable=True):
        found = overdue_mark(now=now, limit=limit)
    for saga in found:
        logger.error(
            "saga %s (%s) passed its deadline (%s) unfinished: %s at %s %s; it waits in the "
            "needs-attention queue for an operator",
            saga.saga_id,
            saga.saga_type,
            f"{saga.finish_by:%Y-%m-%d %H:%M:%S}",
            saga.status,
            saga.current_step,
            saga.current_phase,
            extra={
                "saga_id": str(saga.saga_id),
                "step": saga.current_step,
                "phase": saga.current_phase,
                **subject_ids(saga.subject),
            },
        )
    return len(found)


def _orphaned_claims(*, now: datetime, limit: int) -> list[UUID]:
    # Only processes of this boot and PID namespace can be checked; other claims wait for
    # their lease to run out.
    claims = Saga.objects.filter(
        status__in=[s.value for s in MOVING_SAGA_STATUSES],
        claim_token__isnull=False,
        claim_process__startswith=f"{namespace()}/",
        lease_until__gt=now,
    ).values_list("id", "claim_process", "claim_token")[:limit]
    return [
        saga_id for saga_id, process, token in claims if claimant(process, token) is Claimant.DEAD
    ]


def _resend(condition: Q, *, now: datetime, limit: int) -> int:
    taken = sent = 0
    while taken < limit:
        with transaction.atomic(durable=True):
            rows = list(
                Saga.objects.select_for_update(skip_locked=True, no_key=True)
                .filter(condition)
                .order_by("due_at")
                .values_list(
                    "id", "saga_type", "definition_version", "current_step", "current_phase"
                )[: min(BATCH_SIZE, limit - taken)]
            )
            if not rows:
                break
            Saga.objects.filter(pk__in=[row[0] for row in rows]).update(dispatched_at=now)
            for saga_id, saga_type, version, step, phase in rows:
                try:
                    definition_step = get_definition(saga_type, version).step(step)
                except (UnknownSagaType, KeyError):
                    # A definition removed or renamed under running sagas: nothing here can
                    # run them. Say so (once per grace period) instead of stopping the pass.
                    logger.error(
                        "saga %s: no definition for %s version %s step %s",
                        saga_id,
                        saga_type,
                        version,
                        step,
                    )
                    continue
                publish_on_commit(
                    StepMessage(
                        saga_id=saga_id,
                        saga_type=saga_type,
                        step=definition_step,
                        phase=Phase(phase),
                    )
                )
                sent += 1
        taken += len(rows)
        if len(rows) < BATCH_SIZE:
            break
    return sent


def _time_out_stalled(*, now: datetime, limit: int) -> int:
    candidates = list(
        Saga.objects.filter(
            status__in=[s.value for s in MOVING_SAGA_STATUSES],
            claim_token__isnull=False,
            lease_until__lte=now,
        )
        .order_by("lease_until")
        .values_list("id", flat=True)[:limit]
    )
    return sum(1 for saga_id in candidates if _time_out(saga_id=saga_id, now=now))


def _time_out(*, saga_id: UUID, now: datetime) -> bool:
    saga = saga_load(saga_id)
    if (
        saga is None
        or saga.claim_token is None
        or saga.lease_until is None
        or saga.lease_until > now
    ):
        return False
    try:
        definition = get_definition(saga.saga_type, saga.definition_version)
        loaded = Loaded(saga=saga, definition=definition, state=saga_state(saga, definition))
    except (UnknownSagaType, KeyError):
        logger.error(
            "saga %s: no definition for %s version %s",
            saga.id,
            saga.saga_type,
            saga.definition_version,
        )
        return False
    outcome = TimedOut(
        f"no outcome from {saga.claim_worker or 'its worker'} by the end of the attempt's lease "
        f"({saga.lease_until:%H:%M:%S}); counted as timed out"
    )
    # A compare-and-set on the claim: an outcome written in the meantime wins, and this
    # writes nothing.
    applied = outcome_record(
        loaded,
        lambda d, s: decide(d, s, outcome, rand=random.random()),  # noqa: S311 (jitter, not secrets)
        now=now,
        attempt=AttemptRecord.of_claim(saga),
    ).applied
    if applied:
        logger.error(
            "saga %s (%s) step %s %s ran past its lease: %s",
            saga.id,
            saga.saga_type,
            saga.current_step,
            saga.current_phase,
            outcome.error,
            extra={
                "saga_id": str(saga.id),
                "step": saga.current_step,
                "phase": saga.current_phase,
                **subject_ids(saga.subject),
            },
        )
    return applied
