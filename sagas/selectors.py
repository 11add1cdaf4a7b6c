"""Read sagas: lists with filters, a subject's sagas, one saga's full detail.

The REST API, the admin and the order read side call these; none of them writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from django.db.models import Count, Prefetch, QuerySet

from sagas.definitions import Failure
from sagas.errors import SagaNotFound
from sagas.models import Saga, SagaOperatorAction, SagaStep, SagaStepExecution
from sagas.statuses import Phase, SagaStatus


@dataclass(frozen=True)
class SagaDetail:
    """Hold one saga with everything its detail page shows, loaded in four queries.

    ``current_step``/``current_phase`` say where the saga is (or stopped): the step running
    or due, the failed compensation of a COMPENSATION_FAILED saga, the last step of a
    finished one. ``failure`` says why it compensates (None when it does not).
    """

    saga: Saga
    steps: list[SagaStep]
    log: list[SagaStepExecution]
    operator_actions: list[SagaOperatorAction]
    failure: Failure | None
    current_step: str
    current_phase: Phase


def saga_detail(*, saga_id: UUID) -> SagaDetail:
    """Return a saga with its steps, step log and operator actions (SagaNotFound if none)."""
    saga = (
        Saga.objects.prefetch_related(
            Prefetch("steps", queryset=SagaStep.objects.order_by("position")),
            Prefetch("executions", queryset=SagaStepExecution.objects.order_by("at", "id")),
            Prefetch("operator_actions", queryset=SagaOperatorAction.objects.order_by("at", "id")),
        )
        .filter(pk=saga_id)
        .first()
    )
    if saga is None:
        raise SagaNotFound(saga_id)
    return SagaDetail(
        saga=saga,
        steps=list(saga.steps.all()),
        log=list(saga.executions.all()),
        operator_actions=list(saga.operator_actions.all()),
        failure=saga.failure,
        current_step=saga.current_step,
        current_phase=Phase(saga.current_phase),
    )


def sagas_for_subject(*, subject: str) -> QuerySet[Saga]:
    """Return the sagas acting on ``subject``, newest first."""
    return Saga.objects.filter(subject=subject).order_by("-created_at", "-id")


def saga_list(
    *, status: SagaStatus | str | None = None, saga_type: str | None = None
) -> QuerySet[Saga]:
    """Return sagas, newest first, optionally only those with a status and/or of a type."""
    sagas = Saga.objects.all()
    if status:
        sagas = sagas.filter(status=str(status))
    if saga_type:
        sagas = sagas.filter(saga_type=saga_type)
    return sagas.order_by("-created_at", "-id")


def saga_counts_by_status() -> dict[str, int]:
    """Count sagas in each status (every status present, zero when none), in one query."""
    counts = dict.fromkeys((s.value for s in SagaStatus), 0)
    rows = Saga.objects.order_by().values_list("status").annotate(n=Count("id"))
    for status, n in rows:
        counts[status] = n
    return counts


def saga_counts_by_type_and_status() -> dict[tuple[str, str], int]:
    """Count sagas by (type, status), in one query; only the pairs that exist."""
    rows = Saga.objects.order_by().values_list("saga_type", "status").annotate(n=Count("id"))
    return {(saga_type, status): n for saga_type, status, n in rows}
