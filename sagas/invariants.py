"""The saga engine's invariants (``check_invariants``): every saga settles, none is forgotten.

- **saga**: every saga is final (COMPLETED, COMPENSATED) or waits for an operator
  (COMPENSATION_FAILED with the failed compensation's error recorded); RUNNING and
  COMPENSATING pass only with ``allow_in_flight``; an unfinished saga's definition version is
  registered (no worker of this code could move it otherwise);
- **dispatch**: no saga has an attempt due without a message sent for it, nor a claim
  past its lease (only moving sagas can: the database refuses either on a resting one).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from backoffice.invariants import InvariantOptions, InvariantReport, Violation, invariant
from sagas.models import Saga, SagaStep
from sagas.registry import definitions
from sagas.statuses import MOVING_SAGA_STATUSES, SagaStatus, StepStatus

FINAL_SAGA_STATUSES = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED})


@invariant("sagas")
def check_sagas(report: InvariantReport, options: InvariantOptions) -> None:
    """Check every saga is final or waits for an operator, and that its dispatch is sound."""
    sagas = list(Saga.objects.all().order_by("created_at"))
    report.count("sagas", (s.status for s in sagas))
    _check_resting(report, sagas, allow_in_flight=options.allow_in_flight)
    _check_dispatch(report, sagas, now=options.now)


def _check_resting(report: InvariantReport, sagas: list[Saga], *, allow_in_flight: bool) -> None:
    failed_steps = {
        step.saga_id: step
        for step in SagaStep.objects.filter(
            saga__status=SagaStatus.COMPENSATION_FAILED, status=StepStatus.COMPENSATION_FAILED
        )
    }
    registered = {(d.name, d.version) for d in definitions()}
    for saga in sagas:
        status = SagaStatus(saga.status)
        subject = f"saga {saga.saga_type} {saga.id}"
        if status in FINAL_SAGA_STATUSES:
            continue
        if (saga.saga_type, saga.definition_version) not in registered:
            report.violations.append(
                Violation(
                    "saga",
                    subject,
                    f"unfinished under definition version {saga.definition_version}, "
                    "which this code does not register",
                )
            )
        if status is SagaStatus.COMPENSATION_FAILED:
            step = failed_steps.get(saga.id)
            if step is None or not step.last_error.strip():
                report.violations.append(
                    Violation(
                        "saga",
                        subject,
                        "waits for an operator (COMPENSATION_FAILED) with no failed "
                        "compensation and error recorded",
                    )
                )
            continue
        if not allow_in_flight:
            report.violations.append(
                Violation(
                    "saga",
                    subject,
                    f"still {status.value} at {saga.current_step} ({saga.current_phase}): "
                    "neither final nor waiting for an operator",
                )
            )


def _check_dispatch(report: InvariantReport, sagas: list[Saga], *, now: datetime) -> None:
    grace = timedelta(seconds=float(settings.SAGA_SWEEP_GRACE_SECONDS))
    moving = {s.value for s in MOVING_SAGA_STATUSES}
    for saga in sagas:
        subject = f"saga {saga.saga_type} {saga.id}"
        if saga.status not in moving:
            if saga.due_at is not None or saga.claim_token is not None:
                report.violations.append(
                    Violation("dispatch", subject, f"{saga.status} but still due or claimed")
                )
            continue
        if saga.claim_token is not None:
            if saga.lease_until is not None and saga.lease_until < now - grace:
                report.violations.append(
                    Violation(
                        "dispatch",
                        subject,
                        f"{saga.current_step} ({saga.current_phase}) claimed past its lease "
                        f"{saga.lease_until.isoformat()}: stalled and not swept",
                    )
                )
        elif saga.due_at is None:
            report.violations.append(
                Violation(
                    "dispatch",
                    subject,
                    f"{saga.status} with nothing due and nothing running: nobody will move it",
                )
            )
        elif saga.due_at < now - grace and (
            saga.dispatched_at is None or saga.dispatched_at < now - grace
        ):
            sent = saga.dispatched_at.isoformat() if saga.dispatched_at else "never"
            report.violations.append(
                Violation(
                    "dispatch",
                    subject,
                    f"{saga.current_step} ({saga.current_phase}) due since "
                    f"{saga.due_at.isoformat()}, message sent {sent}: left unsent",
                )
            )
