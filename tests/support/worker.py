"""Run a real Celery worker process for tests (a pytest plugin: ``tests.support.worker``).

Fixtures:

- ``celery_test_queue`` (session, autouse): every test session sends its Celery messages to a
  queue of its own, so parallel runs, other engineers' runs and ``make run`` never take each
  other's messages. Its messages are deleted at the end.
- ``live_worker`` (session): ``celery -A config worker`` as a subprocess (prefork,
  concurrency 2, no gossip/mingle/heartbeat) on pytest-django's test database and the
  session's queue. Yields a :class:`WorkerHandle` (pid, child pids, ``kill_child()``,
  ``restart()``, the log file). Tests using it need ``transactional_db``: the worker only
  sees committed rows. The worker's log is attached to the report of a failing test.
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
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
#: How long a worker may take to answer its first ping.
START_TIMEOUT = 60.0
#: How long a worker may take to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 15.0
#: How long a detached worker may take to finish its running tasks before it is restarted.
DRAIN_TIMEOUT = 60.0

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


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found.extend(int(p) for p in (task / "children").read_text().split())
    if found:
        return sorted(set(found))
    # Kernels without /proc/<pid>/task/<tid>/children: scan every process's parent.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            fields = text[text.rfind(")") + 2 :].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return sorted(found)


def stop_process_group(process: subprocess.Popen[Any], *, timeout: float) -> None:
    """Stop a process started in its own group: SIGTERM, then SIGKILL of the group if it hangs.

    The group is killed in any case at the end: children orphaned by a parent that exited
    (a worker's pool, say) are in it.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@dataclass
class WorkerHandle:
    """Control a worker started for the test session."""

    queue: str
    nodename: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log_file: Any = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        """Return the worker's main process id."""
        assert self.process is not None, "worker is not running"
        return self.process.pid

    @property
    def child_pids(self) -> list[int]:
        """Return the pids of the pool's child processes (the ones running tasks)."""
        return _children(self.pid)

    def start(self) -> None:
        """Start the worker and wait until it answers a ping."""
        ARTIFACTS.mkdir(exist_ok=True)
        self._log_file = self.log_path.open("ab")
        self._log_file.write(f"\n===== worker start {time.strftime('%X')} =====\n".encode())
        self._log_file.flush()
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--queues={self.queue}",
            f"--hostname={self.nodename}",
            "--loglevel=INFO",
        ]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Its own process group, so stopping it can never touch anything else.
            start_new_session=True,
        )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        from config.celery import app

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited at start:\n{self.log_tail()}")
            replies = app.control.ping(destination=[self.nodename], timeout=0.5)
            if replies and len(self.child_pids) >= 2:
                return
        raise RuntimeError(f"worker did not answer a ping in {START_TIMEOUT}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the worker: SIGTERM (warm shutdown), then SIGKILL of its group if it hangs."""
        if self.process is None:
            return
        stop_process_group(self.process, timeout=STOP_TIMEOUT)
        self.process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def restart(self) -> None:
        """Stop the worker and start a fresh one on the same queue and database."""
        self.stop()
        self.start()

    def _consumed_queues(self) -> set[str] | None:
        from config.celery import app

        replies = app.control.inspect(destination=[self.nodename], timeout=2.0).active_queues()
        if not replies or self.nodename not in replies:
            return None
        return {queue["name"] for queue in replies[self.nodename]}

    def attach(self) -> None:
        """Consume the session's queue again (after :meth:`detach`), and wait until it does."""
        from config.celery import app

        assert self.process is not None, "worker is not running"
        # Whatever an earlier test left on the queue is not this test's work.
        delete_queue(self.queue)
        app.control.add_consumer(self.queue, destination=[self.nodename], reply=True, timeout=5)
        wait_for(
            lambda: self.queue in (self._consumed_queues() or set()),
            timeout=START_TIMEOUT,
            interval=0.1,
            message=lambda: f"worker {self.nodename} to consume {self.queue}",
        )

    def detach(self) -> None:
        """Stop consuming, let running tasks finish, drop scheduled ones, empty the queue.

        A worker that does not settle within :data:`DRAIN_TIMEOUT` is restarted and left
        detached: either way nothing of the test's runs on once this returns.
        """
        from config.celery import app

        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        app.control.cancel_consumer(self.queue, destination=[self.nodename], reply=True, timeout=5)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while time.monotonic() < deadline:
            inspect = app.control.inspect(destination=[self.nodename], timeout=2.0)
            active = (inspect.active() or {}).get(self.nodename)
            reserved = (inspect.reserved() or {}).get(self.nodename)
            scheduled = (inspect.scheduled() or {}).get(self.nodename)
            if active is None or reserved is None or scheduled is None:
                break  # no answer: restart below
            later = [entry["request"]["id"] for entry in scheduled]
            if later:
                # Countdowns held in the worker's memory: revoked, they are dropped unrun.
                app.control.revoke(later, destination=[self.nodename])
            if not active and not reserved and self.queue not in (self._consumed_queues() or ()):
                delete_queue(self.queue)
                return
            time.sleep(0.1)
        self.restart()
        app.control.cancel_consumer(self.queue, destination=[self.nodename], reply=True, timeout=5)
        delete_queue(self.queue)

    def busy_child(self) -> int | None:
        """Return the pid of a child running a task right now, if any."""
        from config.celery import app

        replies = app.control.inspect(destination=[self.nodename], timeout=1.0).active() or {}
        for tasks in replies.values():
            for task in tasks:
                if task.get("worker_pid"):
                    return int(task["worker_pid"])
        return None

    def kill_child(self, pid: int | None = None) -> int:
        """SIGKILL a pool child (``pid``, or one busy with a task) as the OOM killer would."""
        target = pid if pid is not None else self.busy_child()
        if target is None:
            raise RuntimeError("no worker child is busy")
        if target not in self.child_pids:
            raise RuntimeError(f"pid {target} is not a child of worker {self.pid}")
        os.kill(target, signal.SIGKILL)
        return target

    def log_tail(self, *, since: int = 0, limit: int = 20_000) -> str:
        """Return the worker's log from byte ``since`` (its last ``limit`` characters)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(since)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return text[-limit:]

    def log_size(self) -> int:
        """Return the log's current length in bytes (to show only a test's part of it)."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0


def delete_queue(queue: str) -> None:
    """Delete a queue's leftover messages and its exchange binding from the Redis broker."""
    from django.conf import settings
    from redis import Redis

    client = Redis.from_url(str(settings.CELERY_BROKER_URL))
    # kombu keeps a queue's messages in a list named after it (priorities in suffixed lists),
    # and the queue's binding to its direct exchange in two sets.
    client.delete(
        queue,
        f"_kombu.binding.{queue}",
        f"_kombu.binding_permanent.{queue}",
        *(f"{queue}\x06\x16{priority}" for priority in range(1, 10)),
    )


@pytest.fixture(scope="session", autouse=True)
def celery_test_queue() -> Iterator[str]:
    """Send this session's Celery messages to a queue nobody else reads."""
    from django.conf import settings

    from config.celery import app

    queue = f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    previous = (settings.CELERY_TASK_DEFAULT_QUEUE, app.conf.task_default_queue)
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    app.conf.task_default_queue = queue
    yield queue
    settings.CELERY_TASK_DEFAULT_QUEUE, app.conf.task_default_queue = previous
    with contextlib.suppress(Exception):
        delete_queue(queue)


def _database_url(settings_dict: dict[str, Any]) -> str:
    user = quote(str(settings_dict.get("USER") or ""), safe="")
    password = quote(str(settings_dict.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


@pytest.fixture(scope="session")
def live_worker(
    django_db_setup: None, django_db_blocker: Any, celery_test_queue: str
) -> Generator[WorkerHandle, None, None]:
    """Start a real Celery worker on the test database and this session's queue."""
    from django.conf import settings
    from django.db import connection

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.test_settings",
        DATABASE_URL=_database_url(connection.settings_dict),
        CELERY_BROKER_URL=str(settings.CELERY_BROKER_URL),
        CELERY_QUEUE=celery_test_queue,
        PYTHONUNBUFFERED="1",
        # System checks are `manage.py check`'s job (CI runs it); here they would import
        # every URL module and fail every worker test for an unrelated view's bug.
        CELERY_SKIP_CHECKS="1",
    )
    env.pop("TEST_DATABASE_NAME", None)
    handle = WorkerHandle(
        queue=celery_test_queue,
        nodename=f"{celery_test_queue}@{os.uname().nodename}",
        env=env,
        log_path=ARTIFACTS / f"worker-{celery_test_queue}.log",
    )
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


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
