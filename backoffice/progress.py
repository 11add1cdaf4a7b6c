"""Progress bars for the long commands, drawn by rich on the command's own output.

On a terminal the bars move; in a log or a test's captured output rich draws them once, when
the work ends, so the output stays readable.
"""

from __future__ import annotations

from django.core.management.base import OutputWrapper
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)


class CommandOutput:
    """Let rich write to a command's stdout (``OutputWrapper`` adds a newline to each write)."""

    def __init__(self, out: OutputWrapper) -> None:
        self.out = out

    def write(self, text: str) -> int:
        self.out.write(text, ending="")
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def isatty(self) -> bool:
        return self.out.isatty()


def progress_columns() -> tuple[ProgressColumn, ...]:
    """Return the columns every command's bar shows: what, bar, done/total, note, time."""
    return (
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    )


def command_progress(out: OutputWrapper) -> Progress:
    """Return a progress display writing to a command's ``out``."""
    return Progress(*progress_columns(), console=Console(file=CommandOutput(out), width=100))  # type: ignore[arg-type]
