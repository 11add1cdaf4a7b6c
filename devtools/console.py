"""Print progress lines and other processes' output, prefixed per process like honcho."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import TextIO

# Foreground colours cycled over process names, as foreman and honcho do.
_COLOURS = ("36", "33", "32", "35", "34", "31")


def _use_colour(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


class Console:
    """Write whole lines from several threads without interleaving them."""

    def __init__(self, stream: TextIO | None = None, *, prefix_width: int = 8) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()
        self._colour = _use_colour(self._stream)
        self._colours: dict[str, str] = {}
        self.prefix_width = prefix_width

    def _write(self, text: str) -> None:
        with self._lock:
            self._stream.write(text)
            self._stream.flush()

    def step(self, message: str) -> None:
        """Announce a step of the bootstrap ("starting embedded Redis…")."""
        self._write(f"==> {message}\n")

    def error(self, message: str) -> None:
        """Report a failure that stops the run."""
        self._write(f"error: {message}\n")

    def text(self, text: str) -> None:
        """Print a block of text as it is (the banner)."""
        self._write(text if text.endswith("\n") else text + "\n")

    def line(self, name: str, text: str) -> None:
        """Print one line of process ``name``'s output behind its prefix."""
        prefix = f"{name:<{self.prefix_width}} |"
        if self._colour:
            code = self._colours.setdefault(name, _COLOURS[len(self._colours) % len(_COLOURS)])
            prefix = f"\033[{code}m{prefix}\033[0m"
        self._write(f"{prefix} {text.rstrip()}\n")


def display_path(path: Path) -> str:
    """Return ``path`` relative to the working directory when it is inside it (for messages)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
