"""A Celery app for the fault lab's worker that injects database and broker errors at a rate.

``celery -A lab.chaos worker`` runs the project's app (``config.celery``) unchanged
unless a rate above 0 is set; only then does each pool process, as it starts, install a hook:

- ``LAB_INJECT_DB_ERROR_RATE``: every SQL statement fails first with ``OperationalError`` at
  that rate (as a dropped connection would), through Django's ``execute_wrappers``;
- ``LAB_INJECT_BROKER_ERROR_RATE``: every step message published fails with kombu's
  ``OperationalError`` at that rate (as an unreachable broker would), by wrapping
  ``infrastructure.broker.send_task``, through which every step message goes.

In each pool process the first statement and the first publish always fail, so that a short
run at a low rate still injects both kinds (a test asserting "some were injected" cannot be
unlucky). This module lives in the lab, which no production process loads (the Procfile runs
``config``); each injected error is logged with the word ``injected`` so a run can count them.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
from collections.abc import Callable
from typing import Any

from celery.signals import worker_process_init
from kombu.exceptions import OperationalError as BrokerError

from config.celery import app

__all__ = ["BROKER_RATE_ENV", "DB_RATE_ENV", "app"]

DB_RATE_ENV = "LAB_INJECT_DB_ERROR_RATE"
BROKER_RATE_ENV = "LAB_INJECT_BROKER_ERROR_RATE"
logger = logging.getLogger("lab.chaos")


def _rate(name: str) -> float:
    return float(os.environ.get(name) or 0)


def _failing_sql(rate: float) -> Callable[..., Any]:
    from django.db import OperationalError

    calls = itertools.count()

    def wrapper(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        # The first statement always fails, so a run at a low rate injects at least one.
        if next(calls) == 0 or random.random() < rate:
            logger.warning("injected database error before: %s", sql[:80])
            raise OperationalError("injected: server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    return wrapper


@worker_process_init.connect
def install_faults(**_: Any) -> None:
    """Install the hooks in this pool process whose rate is set (otherwise do nothing)."""
    db_rate, broker_rate = _rate(DB_RATE_ENV), _rate(BROKER_RATE_ENV)
    if db_rate > 0:
        from django.db import connections

        connections["default"].execute_wrappers.append(_failing_sql(db_rate))
    if broker_rate > 0:
        from infrastructure import broker

        publish = broker.send_task
        publishes = itertools.count()

        def flaky_publish(*args: Any, **kwargs: Any) -> Any:
            # The first publish always fails, so a run at a low rate injects at least one.
            if next(publishes) == 0 or random.random() < broker_rate:
                logger.warning("injected broker error publishing %s", kwargs.get("kwargs"))
                raise BrokerError("injected: broker connection refused")
            return publish(*args, **kwargs)

        broker.send_task = flaky_publish
    if db_rate > 0 or broker_rate > 0:
        logger.warning("fault injection on: database %s, broker %s", db_rate, broker_rate)
