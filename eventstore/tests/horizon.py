"""Wait until the global log's readers can see what a test wrote.

``PostgresEventStore.read_all`` hands out only transactions older than every transaction still
running, and transaction ids belong to the whole server: a transaction open in another
database (another test run, a ``make run``, a benchmark) holds that horizon back for a while.
Readers lag then, they never skip; a test that reads the log right after writing must wait
for the lag to pass, not assume there is none.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from django.db import connection

T = TypeVar("T")

#: How long another session's transaction may hold the horizon back before the test fails.
HORIZON_TIMEOUT = 120.0


def eventually(read: Callable[[], T], done: Callable[[T], bool]) -> T:
    """Return ``read()`` once ``done`` holds for it, polling until :data:`HORIZON_TIMEOUT`."""
    deadline = time.monotonic() + HORIZON_TIMEOUT
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"the global log did not show the test's events in {HORIZON_TIMEOUT}s")
        time.sleep(0.05)


def _everything_readable() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(max(transaction_id), 0) "
            "< pg_snapshot_xmin(pg_current_snapshot())::text::bigint FROM eventstore_event"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def wait_until_readable() -> None:
    """Wait until every event stored so far is below the readers' horizon (autocommit only)."""
    assert not connection.in_atomic_block, "inside a transaction the horizon never passes it"
    eventually(_everything_readable, bool)
