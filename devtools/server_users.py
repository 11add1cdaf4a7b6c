"""Count the processes that use an embedded server, so that the last one out stops it.

``make run`` and ``make test`` may overlap: whichever starts first starts the embedded
servers, the other reuses them, and the one that finishes last stops them. Each server has
a file listing the pids of its users; a lock file serialises starting, joining and leaving.
A user that died without leaving (kill -9) is dropped the next time the list is read.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) inside the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_live(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


class ServerUsers:
    """The pids using one embedded server, kept in a JSON file. Call under the lock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def live(self) -> list[int]:
        """Return the recorded users that are still running."""
        try:
            pids = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return []
        return [pid for pid in pids if isinstance(pid, int) and _is_live(pid)]

    def _write(self, pids: list[int]) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(pids) + "\n")
        temporary.replace(self.path)

    def join(self, pid: int) -> None:
        """Record ``pid`` as a user."""
        pids = self.live()
        if pid not in pids:
            pids.append(pid)
        self._write(pids)

    def leave(self, pid: int) -> list[int]:
        """Remove ``pid``; return the users that remain."""
        pids = [other for other in self.live() if other != pid]
        self._write(pids)
        return pids
