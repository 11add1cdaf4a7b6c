"""Run a real Celery worker process, and clean up after one (tests, the benchmarks).

:class:`WorkerHandle` starts ``celery -A config worker`` (prefork, concurrency 2, no
gossip/mingle/heartbeat) on a queue of its own, in its own process group, and knows its pool's
child processes (``kill_child()``, ``restart()``, the log file). :func:`stop_process_group`
stops any such process and everything it left behind; :func:`delete_queue` removes a queue's
leftovers from the Redis broker; :func:`database_url` writes Django's connection settings as
the ``DATABASE_URL`` a worker reads. The pytest fixtures built on them are in
``tests.support.worker``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
#: How long a worker may take to answer its first ping.
START_TIMEOUT = 60.0
#: How long a worker may take to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 15.0
#: How long a detached worker may take to finish its running tasks before it is restarted.
DRAIN_TIMEOUT = 60.0


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
    #: Every queue it consumes (default: ``queue`` alone).
    queues: tuple[str, ...] = ()
    #: Its pool's processes.
    concurrency: int = 2
    process: subprocess.Popen[bytes] | None = None
    #: Celery's ``--loglevel``: it sets the root logger's level, whatever LOGGING says.
    loglevel: str = "INFO"
    _log_file: Any = field(default=None, repr=False)

    @property
    def all_queues(self) -> tuple[str, ...]:
        """Return the queues the worker consumes."""
        return self.queues or (self.queue,)

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
            f"--concurrency={self.concurrency}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--queues={','.join(self.all_queues)}",
            f"--hostname={self.nodename}",
            f"--loglevel={self.loglevel}",
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
            if replies and len(self.child_pids) >= self.concurrency:
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
        """Consume the worker's queue again (after :meth:`detach`), and wait until it does."""
        from config.celery import app

        assert self.process is not None, "worker is not running"
        # Whatever was left on the queues before is not the coming work's.
        for queue in self.all_queues:
            delete_queue(queue)
            app.control.add_consumer(queue, destination=[self.nodename], reply=True, timeout=5)
        deadline = time.monotonic() + START_TIMEOUT
        while not set(self.all_queues) <= (self._consumed_queues() or set()):
            if time.monotonic() >= deadline:
                raise RuntimeError(f"worker {self.nodename} does not consume {self.all_queues}")
            time.sleep(0.1)

    def detach(self) -> None:
        """Stop consuming, let running tasks finish, drop scheduled ones, empty the queue.

        A worker that does not settle within :data:`DRAIN_TIMEOUT` is restarted and left
        detached: either way nothing of what it held runs on once this returns.
        """
        from config.celery import app

        if self.process is None or self.process.poll() is not None:
            return
        self._cancel_consumers()
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
            if (
                not active
                and not reserved
                and not set(self.all_queues) & (self._consumed_queues() or set())
            ):
                for queue in self.all_queues:
                    delete_queue(queue)
                return
            time.sleep(0.1)
        self.restart()
        self._cancel_consumers()
        for queue in self.all_queues:
            delete_queue(queue)

    def _cancel_consumers(self) -> None:
        from config.celery import app

        for queue in self.all_queues:
            app.control.cancel_consumer(queue, destination=[self.nodename], reply=True, timeout=5)

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


def database_url(settings_dict: dict[str, Any]) -> str:
    """Return the PostgreSQL URL of Django's connection settings ``settings_dict``."""
    user = quote(str(settings_dict.get("USER") or ""), safe="")
    password = quote(str(settings_dict.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"
