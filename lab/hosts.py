"""Run a Celery process as a separate "host" on this machine: its own PID and UTS namespaces.

:class:`NamespacedHost` starts ``unshare --pid --uts --fork --mount-proc`` (root only) with a
shell as the namespace's init (pid 1). The shell sets the host name (the same one for every
host, on purpose: as containers with a fixed host name or cloned VMs have), moves the
namespace's next pid to a value of its own (so pids differ between hosts, and a worker that
looked up another host's pid in its own ``/proc`` would find nothing there), and runs the
command in the background. :meth:`NamespacedHost.kill` SIGKILLs that init: the kernel then
kills every process in the namespace at once, as a host that loses power loses them all.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
#: How long the namespace's init may take to appear.
START_TIMEOUT = 30.0


@dataclass
class NamespacedHost:
    """One command in fresh PID and UTS namespaces, under host name ``hostname``."""

    name: str
    command: Sequence[str]
    env: dict[str, str]
    log_path: Path
    hostname: str
    #: The namespace's first pids start above this (below the machine's ``pid_max``).
    first_pid: int
    process: subprocess.Popen[bytes] | None = None
    _log: object = field(default=None, repr=False)

    def start(self) -> None:
        """Start the namespace and its command (not waiting for the command to be ready)."""
        script = (
            f"hostname {shlex.quote(self.hostname)} && "
            f"echo {self.first_pid} > /proc/sys/kernel/ns_last_pid && "
            # In the background: the shell stays the namespace's init, and its death is the
            # host's.
            f"{shlex.join(self.command)} & wait"
        )
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                ["unshare", "--pid", "--uts", "--fork", "--mount-proc", "sh", "-c", script],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def init_pid(self) -> int:
        """Return the pid (seen from here) of the namespace's init, the shell."""
        assert self.process is not None, f"{self.name} is not running"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(psutil.NoSuchProcess):
                children = psutil.Process(self.process.pid).children()
                if children:
                    return children[0].pid
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: no namespace init after {START_TIMEOUT}s")

    def alive(self) -> bool:
        """Tell whether the namespace still runs."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the namespace's init: the kernel kills everything in the namespace."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
            psutil.Process(self.init_pid()).send_signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(timeout=30)

    def log_tail(self, limit: int = 20_000) -> str:
        """Return the end of the host's log."""
        try:
            return self.log_path.read_bytes().decode(errors="replace")[-limit:]
        except FileNotFoundError:
            return ""
