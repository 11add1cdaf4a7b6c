"""Read the Procfile: the long-running processes of the back office, one ``name: command`` a line.

The same file serves honcho, foreman and ``make run``, so the processes are written down
once. Commands are shell command lines; ``$PORT`` is expanded by the shell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from devtools.errors import DevtoolsError

_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+):\s*(?P<command>\S.*)$")


@dataclass(frozen=True)
class ProcfileEntry:
    """One process type of the Procfile."""

    name: str
    command: str

    def argv(self) -> list[str]:
        """Return the argv that runs the command through the shell, as the process itself."""
        # exec: the shell becomes the program, so signals reach it and not an idle shell.
        return ["/bin/sh", "-c", f"exec {self.command}"]


def read_procfile(path: Path) -> list[ProcfileEntry]:
    """Parse ``path``; blank lines and ``#`` comments are skipped."""
    entries: list[ProcfileEntry] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise DevtoolsError(f"{path}:{number}: expected 'name: command', got {raw!r}")
        entries.append(ProcfileEntry(name=match["name"], command=match["command"]))
    if not entries:
        raise DevtoolsError(f"{path} lists no processes")
    return entries
