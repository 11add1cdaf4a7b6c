"""A private RabbitMQ node that a test may stop and start again: the machine's own is shared.

:class:`PrivateRabbitMQ` runs the installed ``rabbitmq-server`` under a node name, AMQP port,
distribution port, configuration, plugin list, database (``RABBITMQ_MNESIA_BASE``) and log
directory of its own in a temporary directory, listening on 127.0.0.1 only, with no plugins
(no management listener to collide with). Its database survives :meth:`restart`, so durable
queues and persistent messages come back as they would on a real broker restart. Every start
is bounded in time; :meth:`close` stops the node and deletes its files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from devtools.ports import LOOPBACK, free_port, wait_for_port

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
#: The bound on a start (a loaded machine takes tens of seconds, never this long).
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


class PrivateRabbitMQ:
    """One RabbitMQ node of this process's own, on a free loopback port."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="backoffice-rabbitmq-"))
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"backoffice-{uuid.uuid4().hex[:8]}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        (self.root / "rabbitmq.conf").write_text(f"listeners.tcp.local = {LOOPBACK}:{self.port}\n")
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "enabled_plugins").write_text("[].\n")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{LOOPBACK}:{self.port}//"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            # Its own Erlang cookie (written under HOME), so it answers nobody else's tools.
            HOME=str(self.root),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS=LOOPBACK,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONFIG_FILE=str(self.root / "rabbitmq.conf"),
            RABBITMQ_CONF_ENV_FILE=str(self.root / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.root / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(self.root / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.root / "log"),
            RABBITMQ_PID_FILE=str(self.root / "rabbitmq.pid"),
            ERL_EPMD_ADDRESS=LOOPBACK,
            ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def start(self) -> None:
        """Start the node and wait (bounded) until it accepts AMQP connections."""
        log = (self.root / "server.out").open("ab")
        try:
            self.process = subprocess.Popen(
                [str(RABBITMQ_SERVER)],
                cwd=self.root,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stopping it touches nothing else
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited at start:\n{self.log_tail()}")
            if wait_for_port(self.port, timeout=0.5):
                return
        self.stop()
        raise RuntimeError(f"rabbitmq-server not ready in {START_TIMEOUT}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the node as a service manager would (SIGTERM: a clean shutdown), bounded."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT)
        # Whatever it left behind (the Erlang VM's helpers) goes with its group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)
        self.process = None

    def restart(self, *, down_for: float = 2.0) -> float:
        """Stop the node, keep it down ``down_for`` s, start it again; return seconds down."""
        started = time.monotonic()
        self.stop()
        time.sleep(down_for)
        self.start()
        return time.monotonic() - started

    def close(self) -> None:
        """Stop the node and delete its files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, limit: int = 6000) -> str:
        try:
            return (self.root / "server.out").read_text(errors="replace")[-limit:]
        except FileNotFoundError:
            return ""
