"""The benchmark's baseline: a bare Celery chain of four trivial tasks (no saga engine).

Its last task pushes the chain's number and the time it finished to a Redis list, which the
benchmark reads to time each chain end to end, as it reads a saga's ``finished_at``.
"""

from __future__ import annotations

import time
from functools import cache

from celery import shared_task
from django.conf import settings
from redis import Redis


@cache
def _redis() -> Redis:
    return Redis.from_url(settings.CELERY_BROKER_URL)


@shared_task(name="sagas_testing.chain_link", ignore_result=True)
def chain_link(*, run: str, n: int) -> None:
    """Do nothing, as a chain's inner link."""


@shared_task(name="sagas_testing.chain_end", ignore_result=True)
def chain_end(*, run: str, n: int) -> None:
    """Note that chain ``n`` of ``run`` finished, and when."""
    _redis().rpush(f"bench:{run}", f"{n} {time.time()}")
