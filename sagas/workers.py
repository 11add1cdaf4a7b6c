"""Tell which process runs an attempt, and whether the process that claimed one is gone.

A claim records the host and pid of the process running the attempt. When a worker child is
killed mid-attempt, Celery (acks_late, reject_on_worker_lost) puts the message back at once;
the process that picks it up on the same host sees the claimant's pid is no longer alive and
takes the attempt over without waiting for its deadline. Claims by other hosts cannot be
checked this way: their deadline is the only signal (the sweeper times them out).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

#: Claim tokens of the attempts this process runs right now. Lets a process that finds its
#: own pid on a claim tell a live attempt (a thread pool) from one it lost (hard time limit).
_running: set[UUID] = set()


@dataclass(frozen=True)
class WorkerIdentity:
    """Name the process running an attempt: host and pid for liveness, name for people."""

    host: str
    pid: int
    name: str


def current_worker(name: str = "") -> WorkerIdentity:
    """Return this process's identity (``name``: the Celery node, shown in the step log)."""
    host = socket.gethostname()
    pid = os.getpid()
    return WorkerIdentity(host=host, pid=pid, name=f"{name or host}/{pid}")


def process_alive(pid: int) -> bool:
    """Tell whether ``pid`` is a running process on this host (a zombie counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        stat = ""
    if stat:
        # The state letter follows the command name, which is in parentheses and may
        # itself contain spaces or parentheses.
        state = stat[stat.rfind(")") + 2 : stat.rfind(")") + 3]
        return state not in {"Z", "X", "x"}
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claimant_dead(*, host: str, pid: int | None, token: UUID | None) -> bool:
    """Tell whether the attempt claimed by ``host``/``pid`` can no longer be running."""
    if pid is None or host != socket.gethostname():
        return False
    if pid == os.getpid():
        return token not in _running
    return not process_alive(pid)


def attempt_started(token: UUID) -> None:
    """Note that this process runs the attempt claimed with ``token``."""
    _running.add(token)


def attempt_ended(token: UUID) -> None:
    """Note that this process no longer runs the attempt claimed with ``token``."""
    _running.discard(token)
