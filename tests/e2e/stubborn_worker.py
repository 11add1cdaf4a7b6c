"""A Celery app for one test's worker: its pool processes ignore the soft time limit.

``celery -A tests.e2e.stubborn_worker worker`` runs the project's app (``config.celery``)
unchanged, except that the soft time limit (SIGUSR1 to the pool process) does nothing, as with
a participant stuck in a call that never returns to Python. Only the hard time limit, a grace
after the step's timeout, can then end the attempt: the pool kills the process.
"""

from __future__ import annotations

from typing import Any

import billiard.pool

from config.celery import app

__all__ = ["app"]


def _ignore_soft_time_limit(signum: int, frame: Any) -> None:
    """Do nothing where Celery would raise SoftTimeLimitExceeded in the task."""


# Each pool process installs this handler right after it starts (billiard's after_fork),
# reading it from the module then: the replacement is what every pool process installs.
billiard.pool.soft_timeout_sighandler = _ignore_soft_time_limit
