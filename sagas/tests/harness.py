"""Helpers the saga engine's tests share: start a saga, read its effects, wait for a status."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from sagas.faults import fault_rule_set, fault_rules_clear
from sagas.models import Saga, SagaStep, SagaStepExecution
from sagas.runner import AttemptReport, step_attempt_run
from sagas.services import saga_start
from sagas.statuses import MOVING_SAGA_STATUSES, FaultMode, Phase, SagaStatus
from sagas.testing.models import Call, Effect
from sagas.workers import WorkerIdentity, current_worker
from tests.support.worker import wait_for


class SteppingClock:
    """Tell a time that moves ``tick`` forward on every reading, so backoffs are always due."""

    def __init__(self, *, tick: timedelta = timedelta(minutes=2)) -> None:
        self.now = timezone.now()
        self.tick = tick

    def __call__(self) -> datetime:
        self.now += self.tick
        return self.now


def run_step(
    saga_id: UUID,
    *,
    clock: SteppingClock | None = None,
    worker: WorkerIdentity | None = None,
    step: str | None = None,
    phase: Phase | None = None,
    abandoned: UUID | None = None,
) -> AttemptReport:
    """Deliver one step message in this process, as a worker would (default: the cursor's)."""
    saga = Saga.objects.get(pk=saga_id)
    return step_attempt_run(
        saga_id=saga_id,
        step=step or saga.current_step,
        phase=phase or Phase(saga.current_phase),
        worker=worker or current_worker("inline"),
        clock=clock or SteppingClock(),
        abandoned=abandoned,
    )


def drive(saga_id: UUID, *, clock: SteppingClock | None = None, limit: int = 100) -> Saga:
    """Run the saga's attempts in this process, one after another, until it comes to rest."""
    clock = clock or SteppingClock()
    for _ in range(limit):
        saga = Saga.objects.get(pk=saga_id)
        if saga.status not in MOVING_SAGA_STATUSES:
            return saga
        report = run_step(saga_id, clock=clock)
        assert report.ran, report.detail
    raise AssertionError(f"saga {saga_id} did not come to rest in {limit} attempts")


def start(saga_type: str, context: dict[str, Any] | None = None, **kwargs: Any) -> UUID:
    """Start a saga in its own transaction (as a caller's service would) and return its id."""
    with transaction.atomic(durable=True):
        return saga_start(
            saga_type=saga_type,
            context=context or {},
            correlation_id=kwargs.pop("correlation_id", "corr-test"),
            actor=kwargs.pop("actor", "user:test"),
            **kwargs,
        )


def fail_b_compensation(mode: FaultMode = FaultMode.PERMANENT) -> None:
    """Make ``test.effects``'s step b fail its compensation, every time, until cleared."""
    fault_rule_set(
        saga_type="test.effects", step="b", phase=Phase.COMPENSATION, mode=mode, times=None
    )


def failed_compensation_saga(
    *, clock: SteppingClock | None = None, correlation_id: str = "corr-test"
) -> UUID:
    """Return a ``test.effects`` saga stuck in COMPENSATION_FAILED at b's compensation.

    Driven in this process; the fault is cleared again, so a retry then succeeds.
    """
    fail_b_compensation()
    saga_id = start("test.effects", {"fail_at": "d"}, correlation_id=correlation_id)
    assert drive(saga_id, clock=clock).status == SagaStatus.COMPENSATION_FAILED
    fault_rules_clear()
    return saga_id


def wait_status(saga_id: UUID, *statuses: SagaStatus, timeout: float = 30.0) -> Saga:
    """Wait until the saga reaches one of ``statuses`` (bounded) and return it."""
    wanted = [s.value for s in statuses]

    def describe() -> str:
        saga = Saga.objects.filter(pk=saga_id).first()
        where = "missing" if saga is None else f"{saga.status} at {saga.current_step}"
        return f"saga {saga_id} to reach {wanted} (it is {where})"

    return wait_for(
        lambda: Saga.objects.filter(pk=saga_id, status__in=wanted).first(),
        timeout=timeout,
        message=describe,
    )


def effects(saga_id: UUID) -> Counter[tuple[str, str]]:
    """Count the saga's recorded effects by (step, phase)."""
    return Counter(Effect.objects.filter(saga_id=saga_id).values_list("step", "phase"))


def effect_order(saga_id: UUID) -> list[tuple[str, str]]:
    """List the saga's effects in the order they happened."""
    return list(Effect.objects.filter(saga_id=saga_id).order_by("id").values_list("step", "phase"))


def calls(saga_id: UUID) -> Counter[tuple[str, str]]:
    """Count how often the engine called each participant, by (step, phase)."""
    return Counter(Call.objects.filter(saga_id=saga_id).values_list("step", "phase"))


def step_statuses(saga_id: UUID) -> dict[str, str]:
    """Map each step's name to its status."""
    return dict(
        SagaStep.objects.filter(saga_id=saga_id).order_by("position").values_list("name", "status")
    )


def log_of(saga_id: UUID, step: str, phase: str = "action") -> list[str]:
    """List the statuses of a step's logged attempts in one phase, in order."""
    return list(
        SagaStepExecution.objects.filter(saga_id=saga_id, step=step, phase=phase)
        .order_by("at", "id")
        .values_list("status", flat=True)
    )
