"""Run a command against the project's servers: ``python -m devtools.with_servers -- CMD…``.

``make test`` and ``make bench`` use it: the servers are resolved as ``make run`` resolves
them (the environment's, else embedded ones, reusing those a running ``make run`` started),
exported to the command as ``DATABASE_URL`` and ``REDIS_URL``, and the embedded ones that
nobody else uses are stopped when the command ends. The exit code is the command's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from devtools.console import Console
from devtools.errors import DevtoolsError
from devtools.servers import ProjectServers

ROOT = Path(__file__).resolve().parent.parent
LOCAL_DIR = ROOT / ".local"


COMMAND_GRACE_SECONDS = 30


def _run(args: list[str], env: dict[str, str]) -> int:
    """Run the command to its end; on Ctrl-C or SIGTERM let it finish its own shutdown."""
    process = subprocess.Popen(args, cwd=ROOT, env=env)

    def forward_sigterm(_signum: int, _frame: FrameType | None) -> None:
        process.terminate()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, forward_sigterm)
    try:
        return process.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached the command too (same process group): pytest, say, still prints its
        # summary and tears its fixtures down. Wait for that, within reason.
        try:
            process.wait(timeout=COMMAND_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return 130


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the command given after ``--``; return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    console = Console()
    if not args:
        console.error("usage: python -m devtools.with_servers -- COMMAND [ARG…]")
        return 2
    os.environ.setdefault("DEBUG", "true")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    servers = ProjectServers(LOCAL_DIR, console=console)
    try:
        urls = servers.acquire()
    except DevtoolsError as error:
        console.error(str(error))
        return 1
    except KeyboardInterrupt:
        return 130
    try:
        env = dict(os.environ)
        env.update(urls.environment())
        console.step(f"running {' '.join(args)}")
        code = _run(args, env)
    except KeyboardInterrupt:
        code = 130
    finally:
        # Stopping the servers must not be cut short by another Ctrl-C.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        servers.release()
    except DevtoolsError as error:
        console.error(str(error))
        code = code or 1
    return code


if __name__ == "__main__":
    sys.exit(main())
