"""Due times, leases and the sweeper's comparisons use the database's clock, not the host's.

Each test sets this process's wall clock (``timezone.now`` and ``time.time``, the clocks a
host would read) ahead of or behind the real time, as a host whose clock is off would have
it, and shows that what the saga log writes and compares does not move. The tests run the
Celery tasks' own bodies in this process, so they commit for real (``transaction=True``) and
send their step messages to a queue no worker reads.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from infrastructure.clock import database_now, forget_reading
from sagas.claims import Claimed, attempt_claim
from sagas.models import Saga
from sagas.statuses import Phase
from sagas.tasks import run_saga_step, sweep_sagas
from sagas.tests.harness import log_of, start
from sagas.workers import WorkerIdentity
from tests.support.worker import delete_queue

pytestmark = pytest.mark.django_db(transaction=True)

ELSEWHERE = WorkerIdentity(host="another-host", pid=4242, name="celery@another-host/4242")
#: A reading of the database's clock is taken in the middle of its round trip.
READING_TOLERANCE = timedelta(milliseconds=50)


class HostClock:
    """This process's wall clock, set off the real time by ``skew``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.skew = timedelta(0)
        real_now, real_time = timezone.now, time.time
        monkeypatch.setattr(timezone, "now", lambda: real_now() + self.skew)
        monkeypatch.setattr(time, "time", lambda: real_time() + self.skew.total_seconds())


@pytest.fixture
def host_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostClock]:
    # A reading taken before the clock was set would pass the tests whatever the code reads.
    forget_reading()
    yield HostClock(monkeypatch)
    forget_reading()


@pytest.fixture(autouse=True)
def unconsumed_queue(settings: Any) -> Iterator[str]:
    """Send the step messages these tests publish to a queue no worker reads."""
    queue = f"test-clock-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    yield queue
    delete_queue(queue)


def database_clock() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        row = cursor.fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


SKEWS = pytest.mark.parametrize(
    "skew", [timedelta(seconds=40), timedelta(seconds=-40)], ids=["ahead", "behind"]
)


@SKEWS
def test_a_saga_started_on_a_host_whose_clock_is_off_is_due_by_the_databases_clock(
    host_clock: HostClock, skew: timedelta
) -> None:
    host_clock.skew = skew
    before = database_clock()
    saga_id = start("test.effects")
    after = database_clock()

    saga = Saga.objects.get(pk=saga_id)
    assert saga.due_at is not None
    assert before - READING_TOLERANCE <= saga.due_at <= after + READING_TOLERANCE
    assert before - READING_TOLERANCE <= saga.created_at <= after + READING_TOLERANCE


@SKEWS
def test_a_first_message_runs_on_a_worker_whose_clock_disagrees_with_the_webs(
    host_clock: HostClock, skew: timedelta
) -> None:
    host_clock.skew = skew  # the web host placing the order
    saga_id = start("test.effects")
    host_clock.skew = -skew  # the worker host receiving its first message

    run_saga_step.run(saga_id=str(saga_id), step="a", phase="action", saga_type="test.effects")

    assert log_of(saga_id, "a") == ["SUCCEEDED"]
    saga = Saga.objects.get(pk=saga_id)
    assert saga.current_step == "b"
    assert saga.due_at is not None
    assert abs(saga.due_at - database_clock()) < timedelta(seconds=5)


@pytest.mark.parametrize(
    "skew", [timedelta(seconds=60), timedelta(seconds=-60)], ids=["ahead", "behind"]
)
def test_a_sweeper_whose_clock_is_off_leaves_a_live_attempt_alone(
    host_clock: HostClock, skew: timedelta
) -> None:
    saga_id = start("test.effects")
    claimed = attempt_claim(
        saga_id=saga_id, step="a", phase=Phase.ACTION, worker=ELSEWHERE, now=database_now()
    )
    assert isinstance(claimed, Claimed)
    host_clock.skew = skew  # the beat host's sweeper

    sweep_sagas.run()

    saga = Saga.objects.get(pk=saga_id)
    assert saga.claim_token == claimed.loaded.saga.claim_token
    # No outcome logged: not timed out.
    assert log_of(saga_id, "a") == []


def test_the_clock_is_read_from_the_database_once_per_resync_interval(
    host_clock: HostClock, django_assert_num_queries: Any
) -> None:
    database_now()
    with django_assert_num_queries(0):
        readings = [database_now() for _ in range(3)]
    assert readings == sorted(readings)
