"""Hand "run this step now" messages to the broker, after the state they act on has committed.

A message carries ids and names only (JSON, keyword arguments): the saga row in PostgreSQL says
what to do, so a lost message costs time (the sweeper re-sends it), never correctness, and a
duplicated one is a no-op (the claim refuses it).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from uuid import UUID

from django.conf import settings
from django.db import transaction

from infrastructure import broker
from sagas.definitions import Step
from sagas.statuses import Phase

logger = logging.getLogger(__name__)

#: The Celery task that runs one attempt of one step (defined in sagas.tasks).
RUN_STEP_TASK = "sagas.run_saga_step"


@dataclass(frozen=True)
class StepMessage:
    """Name one attempt to run: which saga, which step, which phase, and when."""

    saga_id: UUID
    saga_type: str
    step: Step
    phase: Phase
    delay: float = 0.0


def countdown_allowed(delay: float) -> bool:
    """Tell whether a backoff this long may wait in the broker as a countdown.

    Longer waits stay in PostgreSQL (``due_at``) for the sweeper: a countdown is held by a
    worker in memory and comes back only after the visibility timeout if that worker dies.
    """
    return delay <= float(settings.SAGA_COUNTDOWN_MAX_SECONDS)


def publish(message: StepMessage) -> None:
    """Send the message now (call it only after the state it acts on has committed)."""
    from config.celery import app
    from sagas.tasks import step_queue

    grace = float(settings.SAGA_HARD_TIME_LIMIT_GRACE_SECONDS)
    kwargs = {
        "saga_id": str(message.saga_id),
        "saga_type": message.saga_type,
        "step": message.step.name,
        "phase": message.phase.value,
    }
    # The message apply_async would send, in one LPUSH (infrastructure.broker explains why).
    broker.send_task(
        app,
        RUN_STEP_TASK,
        kwargs=kwargs,
        queue=step_queue(message.step),
        # Zero sends it for now; a short backoff waits in the broker.
        countdown=message.delay,
        # The soft limit interrupts the participant at its timeout (a transient failure);
        # the hard limit, a grace later, kills a participant that ignores it. Celery counts
        # whole seconds here; the runner also checks the exact timeout itself.
        soft_time_limit=math.ceil(message.step.timeout),
        time_limit=math.ceil(message.step.timeout + grace),
        # What logs and monitors show of the message: plain strings need no bounded repr.
        kwargsrepr=repr(kwargs),
    )


def _publish_logged(message: StepMessage) -> None:
    try:
        publish(message)
    except Exception:
        # The saga row already says the step is due: the sweeper re-sends it after its grace
        # period, so a broker outage delays the saga instead of losing it.
        logger.exception(
            "could not publish saga %s step %s %s; the sweeper will re-send it",
            message.saga_id,
            message.step.name,
            message.phase,
        )


def publish_on_commit(message: StepMessage) -> None:
    """Send the message once the current transaction commits (never if it rolls back)."""
    transaction.on_commit(lambda: _publish_logged(message))
