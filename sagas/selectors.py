"""Read sagas: lists with filters, a subject's sagas, one saga's full detail.

The REST API, the admin and the order read side call these; none of them writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from django.db import connection
from django.db.models import Count, Prefetch, Q, QuerySet
from django.db.models.functions import Now

from sagas.definitions import Failure
from sagas.errors import SagaNotFound
from sagas.models import NeedsAttention, Saga, SagaOperatorAction, SagaStep, SagaStepExecution
from sagas.statuses import MOVING_SAGA_STATUSES, OperatorActionKind, Phase, SagaStatus
from sagas.webhooks import COMPENSATION_FAILED_EVENT, SAGA_STREAM


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


def saga_detail(*, saga_id: UUID, with_log: bool = True) -> SagaDetail:
    """Return a saga with its steps, step log and operator actions (SagaNotFound if none).

    ``with_log`` False leaves the log out (empty): a caller that shows it a page at a time
    reads it with :func:`saga_log`.
    """
    prefetches = [
        Prefetch("steps", queryset=SagaStep.objects.order_by("position")),
        Prefetch("operator_actions", queryset=SagaOperatorAction.objects.order_by("at", "id")),
    ]
    if with_log:
        prefetches.append(Prefetch("executions", queryset=saga_log(saga_id=saga_id)))
    saga = Saga.objects.prefetch_related(*prefetches).filter(pk=saga_id).first()
    if saga is None:
        raise SagaNotFound(saga_id)
    return SagaDetail(
        saga=saga,
        steps=list(saga.steps.all()),
        log=list(saga.executions.all()) if with_log else [],
        operator_actions=list(saga.operator_actions.all()),
        failure=saga.failure,
        current_step=saga.current_step,
        current_phase=Phase(saga.current_phase),
    )


def saga_log(*, saga_id: UUID) -> QuerySet[SagaStepExecution]:
    """Return a saga's attempt log, oldest first (for paging through it)."""
    return SagaStepExecution.objects.filter(saga_id=saga_id).order_by("at", "id")


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


@dataclass(frozen=True)
class AttentionCounts:
    """Count the sagas an operator has to move on, and those of them past their deadline."""

    needing: int
    past_deadline: int


def attention_counts() -> AttentionCounts:
    """Count the "needs attention" queue and its sagas moving past their deadline, in one query."""
    moving = sorted(s.value for s in MOVING_SAGA_STATUSES)
    counts = NeedsAttention.objects.order_by().aggregate(
        needing=Count("id"),
        past_deadline=Count("id", filter=Q(status__in=moving, finish_by__lt=Now())),
    )
    return AttentionCounts(needing=counts["needing"], past_deadline=counts["past_deadline"])


def saga_counts_by_type_and_status() -> dict[tuple[str, str], int]:
    """Count sagas by (type, status), in one query; only the pairs that exist."""
    rows = Saga.objects.order_by().values_list("saga_type", "status").annotate(n=Count("id"))
    return {(saga_type, status): n for saga_type, status, n in rows}


def saga_outcomes_since(*, since: datetime) -> dict[tuple[str, str], int]:
    """Count the sagas started since ``since`` by (type, status), in one query.

    The created_at index bounds the scan to the window; only the pairs that exist appear.
    """
    rows = (
        Saga.objects.filter(created_at__gte=since)
        .order_by()
        .values_list("saga_type", "status")
        .annotate(n=Count("id"))
    )
    return {(saga_type, status): n for saga_type, status, n in rows}


#: The step-latency chart reads at most this many of the newest attempts (by id), so its cost
#: stays bounded however busy the window was.
LATENCY_ATTEMPTS_WINDOW = 10_000


@dataclass(frozen=True)
class StepLatency:
    """Percentiles of one step's attempt durations (a phase of it), in seconds."""

    step: str
    phase: str
    attempts: int
    p50: float
    p90: float
    p99: float


def step_latency_percentiles(
    *, since: datetime, newest: int = LATENCY_ATTEMPTS_WINDOW
) -> list[StepLatency]:
    """Return p50/p90/p99 of the attempts recorded since ``since`` per (step, phase), one query.

    Only attempts with both a start and an end count (an attempt taken over from a lost
    worker has no start). At most the ``newest`` attempts by id are read: the attempt log
    has no index on time, and its primary key is the cheap bound. Steps come in their
    position's order, a step's action before its compensation.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT step, phase, count(*),
                   percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (
                       ORDER BY extract(epoch FROM finished_at - started_at))
            FROM sagas_sagastepexecution
            WHERE id > (SELECT coalesce(max(id), 0) FROM sagas_sagastepexecution) - %s
              AND at >= %s AND started_at IS NOT NULL AND finished_at IS NOT NULL
            GROUP BY step, phase
            ORDER BY min(position), phase = 'compensation', step
            """,
            [newest, since],
        )
        rows = cursor.fetchall()
    return [
        StepLatency(
            step=step,
            phase=phase,
            attempts=n,
            p50=float(quantiles[0]),
            p90=float(quantiles[1]),
            p99=float(quantiles[2]),
        )
        for step, phase, n, quantiles in rows
    ]


def failed_compensation_changes(*, since: datetime) -> dict[datetime, tuple[int, int]]:
    """Return, per UTC hour since ``since``: sagas that entered COMPENSATION_FAILED, and left it.

    A saga enters when the recorder appends ``SagaCompensationFailed`` to its stream; it
    leaves only by an operator's retry or skip. With the number waiting now, these give the
    number waiting at the end of every hour of the window (a ``skip_step`` resolves a saga
    that was not waiting there, so it is not counted). One query; both tables are read
    through indexes that lead with what the query filters on, and both hold only as many
    rows as there were failed compensations and operator actions.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT hour, sum(entered)::int, sum(left_)::int FROM (
                SELECT date_trunc('hour', recorded_at, 'UTC') AS hour, 1 AS entered, 0 AS left_
                FROM eventstore_event
                WHERE event_type = %s AND stream_type = %s AND recorded_at >= %s
                UNION ALL
                SELECT date_trunc('hour', at, 'UTC'), 0, 1
                FROM sagas_sagaoperatoraction
                -- A step skipped by hand (skip_step) was not a failed compensation.
                WHERE at >= %s AND action = ANY(%s)
            ) AS changes
            GROUP BY hour
            """,
            [
                COMPENSATION_FAILED_EVENT,
                SAGA_STREAM,
                since,
                since,
                [OperatorActionKind.RETRY.value, OperatorActionKind.SKIP_COMPENSATION.value],
            ],
        )
        rows = cursor.fetchall()
    return {hour.astimezone(UTC): (entered, left) for hour, entered, left in rows}
