"""What a saga's attempts tell operators: the workers' series and the lines worth a look.

Recorded where an attempt's outcome is written (``sagas.recorder.outcome_record``), whoever
ended it: the worker that ran it, the sweeper that timed it out, the claim that gave up on a
poisoned one. Only ids and step names are logged: a saga's context (which may hold a payment
token or a customer's details) and its participants' errors stay in PostgreSQL.

The series are recorded unless the setting ``SAGA_STEP_METRICS`` is False, which only the
benchmark's "observability off" settings (bench/settings_observability_off.py) do, to
measure what recording costs; it is read once per process.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import cache

from django.conf import settings
from prometheus_client import Counter, Histogram

from infrastructure.logs import subject_ids
from sagas.engine import Transition
from sagas.statuses import AttemptStatus, SagaStatus

logger = logging.getLogger("sagas")

step_attempts = Counter(
    "backoffice_saga_step_attempts",
    "Saga step attempts ended, by saga type, step, phase and outcome (the attempt's status).",
    ["saga_type", "step", "phase", "outcome"],
)
step_duration = Histogram(
    "backoffice_saga_step_duration_seconds",
    "From an attempt's claim to its outcome, by saga type, step and phase.",
    ["saga_type", "step", "phase"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


@cache
def _metrics_recorded() -> bool:
    return bool(getattr(settings, "SAGA_STEP_METRICS", True))


def attempt_observed(
    *,
    saga_id: object,
    saga_type: str,
    subject: str,
    step: str,
    phase: str,
    transition: Transition,
    started_at: datetime | None,
    now: datetime,
) -> None:
    """Count an ended attempt, time it, log it (a retry: WARNING; a stuck saga: ERROR)."""
    outcome = transition.attempt_status or AttemptStatus.SUCCEEDED
    if _metrics_recorded():
        step_attempts.labels(saga_type, step, phase, outcome.value).inc()
        if started_at is not None:
            step_duration.labels(saga_type, step, phase).observe(
                max((now - started_at).total_seconds(), 0.0)
            )
    ids = {"saga_id": str(saga_id), "step": step, "phase": phase, **subject_ids(subject)}
    logger.info(
        "saga %s (%s) step %s %s: %s, saga %s",
        saga_id,
        saga_type,
        step,
        phase,
        outcome.value,
        transition.saga_status.value,
        extra=ids,
    )
    if transition.saga_status is SagaStatus.COMPENSATION_FAILED:
        logger.error(
            "saga %s (%s) is COMPENSATION_FAILED at %s %s: an operator must retry or skip it",
            saga_id,
            saga_type,
            step,
            phase,
            extra=ids,
        )
    elif outcome in (AttemptStatus.RETRYING, AttemptStatus.TIMED_OUT) and transition.next:
        logger.warning(
            "saga %s (%s) step %s %s: attempt %s, retrying in %.1fs",
            saga_id,
            saga_type,
            step,
            phase,
            outcome.value,
            transition.next.delay,
            extra=ids,
        )
