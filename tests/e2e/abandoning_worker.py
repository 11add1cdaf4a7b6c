"""A Celery app for one test's worker: the database fails once right after a step is claimed.

``celery -A tests.e2e.abandoning_worker worker`` runs the project's app (``config.celery``)
unchanged, except that in each pool process the first statement of the fault plan's check
(the first statement an attempt makes after its claim, when fault injection is on) fails with
``OperationalError``, as a dropped connection would. Only one process of the worker fails:
whoever first creates the file named by ``ABANDON_ONCE_MARKER``.

That process then stays busy (alive, holding nothing) until the file named by
``ABANDON_RELEASE_MARKER`` exists, so the task's retry runs in the pool's other process: the
claim's holder is alive and elsewhere, and only the token the retry carries frees the claim
before its lease ends. (A retry landing in the holder's own process could tell by itself that
the attempt is no longer running there.)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from celery.signals import task_retry, worker_process_init

from config.celery import app

__all__ = ["MARKER_ENV", "RELEASE_ENV", "app"]

MARKER_ENV = "ABANDON_ONCE_MARKER"
RELEASE_ENV = "ABANDON_RELEASE_MARKER"
#: The longest the failing process stays busy, should the test never release it.
BUSY_AT_MOST = 120.0
logger = logging.getLogger("tests.e2e.abandoning_worker")


def _first_time(marker: str) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _fail_once_after_the_claim(marker: str) -> Callable[..., Any]:
    from django.db import OperationalError

    def wrapper(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        after_claim = "sagas_faultrule" in sql and sql.lstrip().upper().startswith("UPDATE")
        if after_claim and _first_time(marker):
            logger.warning("injected database error after the claim: %s", sql[:80])
            raise OperationalError("injected: server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    return wrapper


@worker_process_init.connect
def install_fault(**_: Any) -> None:
    """Install the one-off failure in this pool process (a no-op without the marker path)."""
    marker = os.environ.get(MARKER_ENV)
    if marker:
        from django.db import connections

        connections["default"].execute_wrappers.append(_fail_once_after_the_claim(marker))


@task_retry.connect
def stay_busy(**_: Any) -> None:
    """Keep the process whose attempt was abandoned busy until the test releases it."""
    release = os.environ.get(RELEASE_ENV)
    if not release:
        return
    logger.warning("process %s stays busy after abandoning its attempt", os.getpid())
    deadline = time.monotonic() + BUSY_AT_MOST
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.05)
