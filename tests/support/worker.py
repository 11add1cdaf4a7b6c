"""Run a real Celery worker process for tests (a pytest plugin: ``tests.support.worker``).

Fixtures:

- ``celery_test_queues`` (session, autouse): every test session sends its Celery messages to
  queues of its own (the deployment's queues under a session prefix), so parallel runs, other
  engineers' runs and ``make run`` never take each other's messages. Their messages are
  deleted at the end. ``celery_test_queue``: the default (maintenance) one of them.
- ``live_worker`` (session): ``celery -A config worker`` as a subprocess on pytest-django's
  test database, consuming all the session's queues. Yields a ``lab.worker.WorkerHandle``
  (pid, child
  pids, ``kill_child()``, ``restart()``, the log file). Tests using it need
  ``transactional_db``: the worker only sees committed rows. The worker's log is attached to
  the report of a failing test.
- ``worker_attached_only_to_its_tests`` (autouse): the session's worker consumes its queue
  only while a test that asked for it runs. Before that test's database flush, it stops
  consuming, finishes what it holds, drops what it had scheduled for later, and the queue is
  emptied; every other test runs with no consumer on the queue. Without this, a worker
  started by an earlier test ran the sagas of later tests that drive steps themselves, and
  raced their teardown's TRUNCATE into a deadlock.
- ``run_sweeper``: a function running one pass of the saga sweeper in the test process.

And :func:`wait_for`, bounded polling for a condition (a broken test fails with a clear
message instead of hanging; it never asserts how fast anything was).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lab.worker import ARTIFACTS, WorkerHandle, database_url, delete_queue

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | bool | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    Fails the test after ``timeout`` seconds: the bound only keeps a broken test from hanging.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            pytest.fail(f"timed out after {timeout}s waiting for {text}")
        time.sleep(interval)


def free_port() -> int:
    """Return a TCP port nothing listens on now (for a subprocess to bind)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def worker_metrics_url(worker: WorkerHandle) -> str:
    """Return the URL of ``worker``'s metrics exporter (WORKER_METRICS_PORT)."""
    return f"http://127.0.0.1:{worker.env['WORKER_METRICS_PORT']}/metrics"


@pytest.fixture(scope="session", autouse=True)
def celery_test_queues() -> Iterator[list[str]]:
    """Send this session's Celery messages to queues nobody else reads: each queue of the
    deployment (``orders``, ``inventory``, ``payments``, ``maintenance``) under a prefix of
    the session's own. Yields their names, the default (maintenance) queue first.
    """
    from django.conf import settings

    from config.celery import app

    prefix = f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}-"
    previous = (
        settings.CELERY_QUEUE_PREFIX,
        settings.SAGA_QUEUE_ROUTES,
        settings.CELERY_TASK_DEFAULT_QUEUE,
        app.conf.task_default_queue,
    )
    settings.CELERY_QUEUE_PREFIX = prefix
    settings.SAGA_QUEUE_ROUTES = {
        participant: prefix + queue.removeprefix(previous[0])
        for participant, queue in previous[1].items()
    }
    default = prefix + "maintenance"
    settings.CELERY_TASK_DEFAULT_QUEUE = app.conf.task_default_queue = default
    queues = [default, *sorted(set(settings.SAGA_QUEUE_ROUTES.values()) - {default})]
    yield queues
    (
        settings.CELERY_QUEUE_PREFIX,
        settings.SAGA_QUEUE_ROUTES,
        settings.CELERY_TASK_DEFAULT_QUEUE,
        app.conf.task_default_queue,
    ) = previous
    for queue in queues:
        with contextlib.suppress(Exception):
            delete_queue(queue)


@pytest.fixture(scope="session")
def celery_test_queue(celery_test_queues: list[str]) -> str:
    """Name this session's default queue (where test sagas' steps and housekeeping go)."""
    return celery_test_queues[0]


def worker_env(**overrides: str) -> dict[str, str]:
    """Return the environment of a worker process on this session's test database and queues.

    ``overrides`` replace any of it (another broker, another queue prefix).
    """
    from django.conf import settings
    from django.db import connection

    metrics_dir = Path(tempfile.mkdtemp(prefix="worker-metrics-"))
    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_NAME", "CELERY_QUEUE")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.test_settings",
        DATABASE_URL=database_url(connection.settings_dict),
        CELERY_BROKER_URL=str(settings.CELERY_BROKER_URL),
        CELERY_QUEUE_PREFIX=str(settings.CELERY_QUEUE_PREFIX),
        PYTHONUNBUFFERED="1",
        # System checks are `manage.py check`'s job (CI runs it); here they would import
        # every URL module and fail every worker test for an unrelated view's bug.
        CELERY_SKIP_CHECKS="1",
        # JSON lines, as in production: tests/observability follow one order through them.
        LOG_FORMAT="json",
        # The worker's series, its prefork children's summed, on an exporter of its own.
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        WORKER_METRICS_PORT=str(metrics_port),
    )
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def live_worker(
    django_db_setup: None, django_db_blocker: Any, celery_test_queues: list[str]
) -> Generator[WorkerHandle, None, None]:
    """Start a real Celery worker on the test database, consuming all this session's queues."""
    env = worker_env()
    default = celery_test_queues[0]
    handle = WorkerHandle(
        queue=default,
        queues=tuple(celery_test_queues),
        nodename=f"{default}@{os.uname().nodename}",
        env=env,
        log_path=ARTIFACTS / f"worker-{default}.log",
    )
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()
        shutil.rmtree(env["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


@pytest.fixture(autouse=True)
def worker_attached_only_to_its_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Let the session's worker consume only during the tests that ask for it.

    The database fixture is taken first, so that its teardown (the flush) comes after the
    worker has detached and settled.
    """
    if "live_worker" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("transactional_db")
    handle: WorkerHandle = request.getfixturevalue("live_worker")
    handle.attach()
    try:
        yield
    finally:
        handle.detach()


@pytest.fixture
def run_sweeper() -> Callable[..., Any]:
    """Return a function that runs one saga sweeper pass in the test process."""
    from django.utils import timezone

    from sagas.services import sagas_sweep

    def sweep(**kwargs: Any) -> Any:
        kwargs.setdefault("now", timezone.now())
        return sagas_sweep(**kwargs)

    return sweep


_LOG_START = pytest.StashKey[tuple[WorkerHandle, int]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the worker's log since the test started to a failing test's report."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "setup" and "live_worker" in getattr(item, "fixturenames", ()):
        handle = item.funcargs.get("live_worker")  # type: ignore[attr-defined]
        if isinstance(handle, WorkerHandle):
            item.stash[_LOG_START] = (handle, handle.log_size())
    if report.failed and report.when in ("call", "setup", "teardown"):
        started = item.stash.get(_LOG_START, None)
        if started is not None:
            handle, offset = started
            report.sections.append(("celery worker log", handle.log_tail(since=offset)))
