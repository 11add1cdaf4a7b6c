"""Tell which process runs an attempt, and whether the process that claimed one is gone.

A claim records the process running the attempt by an identity no other process shares:
the machine's boot id, the inode of its PID namespace, its pid and its start time (in clock
ticks since boot). Host name and pid are recorded too, for people, but prove nothing: two
containers with a fixed host name, or two cloned VMs, have the same host name and reuse the
same pids.

When a worker child is killed mid-attempt, Celery (acks_late, reject_on_worker_lost) puts
the message back at once; a process that picks it up in the same PID namespace of the same
boot sees the claimant's pid gone (or reused by a process started later) and takes the
attempt over without waiting for its lease to run out. A claimant anywhere else cannot be
looked at: its lease (``Saga.lease_until``) is the only signal (the sweeper times it out).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from uuid import UUID

from sagas.engine import Claimant

#: Claim tokens of the attempts this process runs right now. Lets a process that finds its
#: own identity on a claim tell a live attempt (a thread pool) from one it lost (hard time
#: limit).
_running: set[UUID] = set()


@dataclass(frozen=True)
class WorkerIdentity:
    """Name the process running an attempt.

    ``process`` (see :func:`process_identity`) tells whether it lives; ``host`` and ``pid``
    say where to look for it and ``name`` (the Celery node and pid) is for people. An empty
    ``process`` cannot be checked from anywhere: only the claim's lease frees it.
    """

    host: str
    pid: int
    name: str
    process: str = ""


@cache
def namespace() -> str:
    """Return this machine's boot id and this process's PID namespace, as one string.

    Pids are comparable only between processes with the same value.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pid_namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        # No procfs to look at (not Linux): nobody can check this process but itself.
        return f"{uuid.uuid4()}/0"
    return f"{boot}/{pid_namespace}"


def _stat_fields(pid: int) -> list[str] | None:
    # /proc/<pid>/stat: "pid (comm) state ppid ...", where comm may hold spaces and
    # parentheses; the fields after it start with the state (field 3).
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.rfind(")") + 2 :].split()


def _started(fields: list[str]) -> str:
    return fields[19]  # field 22, starttime


def process_identity(pid: int) -> str:
    """Return the identity of process ``pid`` of this namespace (a gone pid: never alive)."""
    fields = _stat_fields(pid)
    started = _started(fields) if fields else "gone"
    return f"{namespace()}/{pid}/{started}"


def current_worker(name: str = "") -> WorkerIdentity:
    """Return this process's identity (``name``: the Celery node, shown in the step log)."""
    return _current_worker(os.getpid(), name)


@cache
def _current_worker(pid: int, name: str) -> WorkerIdentity:
    # Per pid: a forked pool child is a new process with an identity of its own.
    return worker_of(pid, f"{name or socket.gethostname()}/{pid}")


def worker_of(pid: int, name: str) -> WorkerIdentity:
    """Return the identity of process ``pid`` of this namespace, named ``name``."""
    return WorkerIdentity(
        host=socket.gethostname(), pid=pid, name=name, process=process_identity(pid)
    )


def claimant(process: str, token: UUID | None) -> Claimant:
    """Tell what the process that claimed an attempt with ``token`` is known to be."""
    here = f"{namespace()}/"
    if not process.startswith(here):
        return Claimant.ELSEWHERE
    pid_text, _, started = process[len(here) :].partition("/")
    try:
        pid = int(pid_text)
    except ValueError:
        return Claimant.ELSEWHERE
    fields = _stat_fields(pid)
    # A zombie has finished; a different start time means the pid now names another process.
    if fields is None or fields[0] in {"Z", "X", "x"} or _started(fields) != started:
        return Claimant.DEAD
    if pid == os.getpid():
        return Claimant.ALIVE if token in _running else Claimant.DEAD
    return Claimant.ALIVE


def attempt_started(token: UUID) -> None:
    """Note that this process runs the attempt claimed with ``token``."""
    _running.add(token)


def attempt_ended(token: UUID) -> None:
    """Note that this process no longer runs the attempt claimed with ``token``."""
    _running.discard(token)
