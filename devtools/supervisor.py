"""Run several long-lived processes together, show their output, and stop them all.

Each child runs in its own session (so its own process group): the terminal's Ctrl-C
reaches only us, and stopping a child signals its whole group, which takes gunicorn's
workers and Celery's pool processes down with their parent and leaves no orphans.
Children named as restartable (the Celery worker and beat under ``make run``) are started
again when they exit on their own, a few times a minute at most; any other exit stops all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devtools.console import Console
from devtools.errors import DevtoolsError

DEFAULT_GRACE_SECONDS = 10.0
# A restartable child that exits this often within the window is broken, not unlucky.
RESTARTS_PER_WINDOW = 5
RESTART_WINDOW_SECONDS = 60.0


class StepFailed(DevtoolsError):
    """A one-off command of the bootstrap (migrate, seed_demo…) exited non-zero."""

    def __init__(self, name: str, returncode: int, output: list[str]) -> None:
        self.name = name
        self.returncode = returncode
        self.output = output
        super().__init__(f"{name} failed (exit {returncode})")


def run_step(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    console: Console,
    echo: bool = True,
) -> list[str]:
    """Run a one-off command to completion, printing its output behind ``name``.

    Return its output lines (stdout and stderr merged); raise StepFailed on a non-zero exit.
    With ``echo`` off the output is only returned (or shown on failure).
    """
    lines: list[str] = []
    with subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if echo:
                console.line(name, line)
    if process.returncode != 0:
        if not echo:
            for line in lines:
                console.line(name, line)
        raise StepFailed(name, process.returncode, lines)
    return lines


@dataclass
class Child:
    """A supervised process and the thread that copies its output."""

    name: str
    process: subprocess.Popen[str]
    reader: threading.Thread
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = Path()
    restarts: list[float] = field(default_factory=list)

    @property
    def pgid(self) -> int:
        # Started with start_new_session, so the child leads its own group.
        return self.process.pid


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


class Supervisor:
    """Start named children, wait until one exits or a stop is requested, stop them all."""

    def __init__(
        self,
        console: Console,
        *,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        restart: Collection[str] = (),
        max_restarts: int = RESTARTS_PER_WINDOW,
    ) -> None:
        self.console = console
        self.grace_seconds = grace_seconds
        # Children restarted when they exit on their own, as a service manager would: a Celery
        # worker can exit on a broker restart (the saga rows in PostgreSQL lose nothing, but
        # the back office would stop working until someone ran `make run` again).
        self.restart = frozenset(restart)
        self.max_restarts = max_restarts
        self.children: list[Child] = []
        self.stop_requested = threading.Event()
        self._hurry = threading.Event()

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> Child:
        """Start ``argv`` as child ``name``; its output is printed line by line behind its name."""
        child = self._spawn(name, list(argv), dict(env), cwd)
        self.children.append(child)
        return child

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> Child:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        reader = threading.Thread(
            target=self._copy_output, args=(name, process), name=f"output-{name}", daemon=True
        )
        child = Child(name=name, process=process, reader=reader, argv=argv, env=env, cwd=cwd)
        reader.start()
        self.console.line(name, f"started with pid {process.pid}")
        return child

    def _restarted(self, child: Child) -> bool:
        """Start an exited restartable child again; False when it is not, or dies too often."""
        if child.name not in self.restart:
            return False
        now = time.monotonic()
        recent = [t for t in child.restarts if now - t < RESTART_WINDOW_SECONDS]
        code = child.process.returncode
        if len(recent) >= self.max_restarts:
            self.console.line(
                child.name,
                f"exited with code {code}, the {len(recent) + 1}th time in "
                f"{RESTART_WINDOW_SECONDS:.0f} s: giving up",
            )
            return False
        child.reader.join(timeout=2)
        self.console.line(child.name, f"exited with code {code}: restarting it")
        fresh = self._spawn(child.name, child.argv, child.env, child.cwd)
        fresh.restarts = [*recent, now]
        self.children[self.children.index(child)] = fresh
        return True

    def _copy_output(self, name: str, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.console.line(name, line)

    def request_stop(self) -> None:
        """Ask for a stop (signal-handler safe); asked twice, stop without waiting for grace."""
        if self.stop_requested.is_set():
            self._hurry.set()
        self.stop_requested.set()

    def install_signal_handlers(self) -> None:
        """Make SIGINT, SIGTERM and SIGHUP request a stop instead of killing us."""
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda _signum, _frame: self.request_stop())

    def exited(self) -> Child | None:
        """Return a child that has exited, if any."""
        for child in self.children:
            if child.process.poll() is not None:
                return child
        return None

    def wait(self, *, poll_seconds: float = 0.1) -> Child | None:
        """Block until a stop is requested (return None) or a child exits (return it)."""
        while not self.stop_requested.wait(poll_seconds):
            child = self.exited()
            if child is not None and not self._restarted(child):
                return child
        return None

    def stop(self) -> None:
        """Stop every child's process group: SIGTERM, then SIGKILL after the grace period."""
        running = [child for child in self.children if _group_alive(child.pgid)]
        for child in running:
            self.console.line(child.name, "stopping (SIGTERM)")
            _signal_group(child.pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        while time.monotonic() < deadline and not self._hurry.is_set():
            # The group leader may exit first and leave workers behind: wait for the groups.
            if not any(_group_alive(child.pgid) for child in running):
                break
            for child in running:
                child.process.poll()  # reap the leader so its group can empty
            time.sleep(0.05)
        reason = "asked twice" if self._hurry.is_set() else "did not stop in time"
        for child in running:
            if _group_alive(child.pgid):
                self.console.line(child.name, f"{reason}: SIGKILL")
                _signal_group(child.pgid, signal.SIGKILL)
        for child in self.children:
            code = child.process.wait()
            child.reader.join(timeout=2)
            self.console.line(child.name, f"exited with code {code}")
