"""Celery tasks of the saga engine: one attempt of one step, and the recovery sweeper.

Thin edges: they parse their keyword arguments and make one call. Both rely on the project's
Celery settings (late acks, reject on worker lost, prefetch 1): a worker that dies mid-task
leaves the message to be delivered again, and the claim protocol makes that harmless.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connections

from infrastructure.clock import database_now
from infrastructure.heartbeats import WORKERS, heartbeat
from infrastructure.logs import log_context
from sagas.definitions import Step
from sagas.errors import UnknownSagaType
from sagas.registry import find_step
from sagas.runner import AttemptAbandoned, step_attempt_run
from sagas.statuses import Phase
from sagas.sweeper import sagas_sweep
from sagas.workers import current_worker

logger = logging.getLogger(__name__)

#: How often a step message is re-sent after the database connection failed under it.
CONNECTION_RETRIES = 5


def _drop_unusable_connections() -> None:
    """Close connections that broke or outlived CONN_MAX_AGE, as Django does per request.

    Connections outlive tasks (``CELERY_DB_REUSE_MAX``). Django's own per-request check would
    also ping the server before the first query (CONN_HEALTH_CHECKS): a round trip more per
    saga step, whose work is two statements. So the ping is skipped here, and a connection
    that fails mid-task is handled by the task's retry instead.
    """
    for conn in connections.all(initialized_only=True):
        # health_check_done is the wrapper's own flag (django-stubs leaves it out).
        checked = conn.health_check_done  # type: ignore[attr-defined]
        conn.close_if_unusable_or_obsolete()
        if conn.connection is not None:
            conn.health_check_done = checked  # type: ignore[attr-defined]


def step_queue(step: Step | None = None) -> str:
    """Name the queue a step's messages go to: its participant's, else the default queue.

    Read on each use, not at import: a test session points the queues at its own after the
    task module is loaded.
    """
    routes: dict[str, str] = settings.SAGA_QUEUE_ROUTES
    if step is not None and step.participant in routes:
        return routes[step.participant]
    return str(settings.CELERY_TASK_DEFAULT_QUEUE)


def step_queue_named(saga_type: str, step: str) -> str:
    """Name the queue of step ``step`` of saga type ``saga_type`` (unknown: the default)."""
    try:
        # The message does not say the saga's version: any version's step routes it.
        return step_queue(find_step(saga_type, step))
    except (UnknownSagaType, KeyError):
        return step_queue()


class SagaStepTask(Task[Any, Any]):
    """Send saga step messages to their step's queue (:func:`step_queue`), whoever sends them."""

    def apply_async(self, *args: Any, **options: Any) -> Any:
        """Send the task to its step's queue unless the caller names another.

        Celery caches a task's options on first use, so the queue is passed on every call.
        """
        if not options.get("queue"):
            kwargs = options.get("kwargs") or (args[1] if len(args) > 1 else None) or {}
            options["queue"] = step_queue_named(
                str(kwargs.get("saga_type", "")), str(kwargs.get("step", ""))
            )
        return super().apply_async(*args, **options)


@shared_task(
    bind=True,
    base=SagaStepTask,
    name="sagas.run_saga_step",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def run_saga_step(
    self: Task[Any, Any],
    *,
    saga_id: str,
    step: str,
    phase: str,
    saga_type: str = "",
    abandoned: str = "",
    **_ignored: object,
) -> None:
    """Run one attempt of a saga step, if the saga still wants it (else a no-op).

    ``abandoned`` is set only on this task's own retry after the database failed under an
    attempt it had claimed: the claim's token, so the retry may take that claim over at once.
    Keyword arguments this version does not know are ignored: during a rolling deploy an
    older worker still runs the step a newer sender asks for (a message is only a hint; the
    saga row says what runs).
    """
    _drop_unusable_connections()
    heartbeat(WORKERS)
    with log_context(saga_id=saga_id, step=step, phase=phase):
        _run_step(
            self, saga_id=saga_id, step=step, phase=phase, saga_type=saga_type, abandoned=abandoned
        )


def _run_step(
    task: Task[Any, Any], *, saga_id: str, step: str, phase: str, saga_type: str, abandoned: str
) -> None:
    try:
        report = step_attempt_run(
            saga_id=UUID(saga_id),
            step=step,
            phase=Phase(phase),
            worker=current_worker(task.request.hostname or ""),
            # The database's clock: due times and leases are compared across hosts.
            clock=database_now,
            abandoned=UUID(abandoned) if abandoned else None,
        )
    except AttemptAbandoned as exc:
        # Our claim is still in PostgreSQL under this live process: hand its token to the
        # retry, wherever it runs, instead of leaving it to its lease.
        close_old_connections()
        raise task.retry(
            exc=exc,
            countdown=1,
            max_retries=CONNECTION_RETRIES,
            kwargs={
                "saga_id": saga_id,
                "step": step,
                "phase": phase,
                "saga_type": saga_type,
                "abandoned": str(exc.token),
            },
        ) from exc
    except (InterfaceError, OperationalError) as exc:
        # The database went away under us (a restart, a failover). Send the message again
        # shortly on a fresh connection; a duplicate is harmless, and past the retries the
        # sweeper re-sends the step anyway.
        close_old_connections()
        raise task.retry(exc=exc, countdown=1, max_retries=CONNECTION_RETRIES) from exc
    if not report.ran:
        # A duplicate or late message (the saga row says the step is claimed, done or not
        # due): worth a line, with the saga's ids, now that Celery's own per-task lines are off.
        logger.info(
            "saga %s (%s) step %s %s: message ignored (no-op), %s",
            saga_id,
            saga_type,
            step,
            phase,
            report.detail,
        )


@shared_task(name="sagas.sweep", ignore_result=True)
def sweep_sagas() -> None:
    """Run one recovery pass: re-dispatch due, stalled and unsent steps."""
    close_old_connections()
    heartbeat(WORKERS)
    sagas_sweep(now=database_now())
