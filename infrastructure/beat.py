"""Keep to one Celery beat per database: a second one waits until the first is gone.

Beat sends the sweeper and the projections' catch-up every few seconds. Two beats would send
each twice (harmless, the passes are idempotent, but twice the load for nothing), so a beat
takes a PostgreSQL advisory lock, on a connection of its own held for its whole life, before
it schedules anything. A second beat waits on that lock, a hot standby: when the first one
dies its connection closes, PostgreSQL frees the lock, and the second one takes over.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.signals import beat_init
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger(__name__)

#: The advisory lock's key (an arbitrary constant: "beat" in ASCII).
BEAT_LOCK_KEY = 0x62656174
#: How often a waiting beat tries the lock again.
RETRY_SECONDS = 2.0

#: The connection holding the lock, kept referenced for the process's life.
_holders: list[BaseDatabaseWrapper] = []


def beat_lock_take(*, wait: bool = True) -> bool:
    """Take the beat lock on a connection of its own; with ``wait``, until it is free."""
    announced = False
    while True:
        holder = connections.create_connection("default")
        try:
            with holder.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [BEAT_LOCK_KEY])
                row = cursor.fetchone()
        except Exception:
            holder.close()
            if not wait:
                raise
            logger.exception("beat: could not ask for the beat lock; trying again")
            row = None
        if row and row[0]:
            _holders.append(holder)
            logger.info("beat: holding the beat lock; scheduling")
            return True
        holder.close()
        if not wait:
            return False
        if not announced:
            logger.warning("beat: another beat holds the beat lock; waiting to take over")
            announced = True
        time.sleep(RETRY_SECONDS)


@beat_init.connect
def _take_the_beat_lock(sender: Any = None, **_kwargs: Any) -> None:
    beat_lock_take()
