"""Tell the time by PostgreSQL's clock, carried forward by this host's monotonic clock.

Due times, leases and deadlines are written by one host and compared by another: the web
host that starts a saga, the worker that claims its step, the beat host whose sweeper times
attempts out. Were each to read its own wall clock, a web host a quarter second ahead of the
workers would make every new order's first message arrive "early" (a no-op until the sweeper
comes by), and a sweeper 40 s ahead would time out attempts that are still running. Every
process therefore reads the one clock they share, the database's.

Reading it on every call would add a round trip to every transaction that needs the time.
Instead a process reads PostgreSQL's ``clock_timestamp()`` once, notes this host's monotonic
clock at that instant (the middle of the round trip), and tells later times as that reading
plus the monotonic time elapsed since. The host's wall clock (``time.time``,
``timezone.now``) is never consulted, so setting it, or it drifting, changes nothing here;
the monotonic clock runs at the host's rate, so the reading is renewed every
:data:`RESYNC_SECONDS` to keep rate drift to microseconds. The monotonic clock is the same in
every process of a host, so a reading taken before a fork stays good in the children.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.db import connection

__all__ = ["RESYNC_SECONDS", "database_now", "forget_reading"]

#: How long one reading of the database's clock is carried forward before it is taken again.
RESYNC_SECONDS = 30.0


class _Reading:
    # (this host's monotonic time, the database's time at that instant): one tuple, so a
    # thread always sees a consistent pair.
    last: tuple[float, datetime] | None = None


_reading = _Reading()


def database_now() -> datetime:
    """Return the database's current time (UTC-aware), without a round trip most of the time."""
    reading = _reading.last
    if reading is None or time.monotonic() - reading[0] > RESYNC_SECONDS:
        reading = _reading.last = _read_database_clock()
    taken_at, database_time = reading
    return database_time + timedelta(seconds=time.monotonic() - taken_at)


def _read_database_clock() -> tuple[float, datetime]:
    with connection.cursor() as cursor:
        sent = time.monotonic()
        # clock_timestamp(), not now(): inside a transaction now() is the time it began.
        cursor.execute("SELECT clock_timestamp()")
        row = cursor.fetchone()
        answered = time.monotonic()
    assert row is not None
    return (sent + answered) / 2, row[0]


def forget_reading() -> None:
    """Drop the reading, so the next call reads the database's clock again (for tests)."""
    _reading.last = None
