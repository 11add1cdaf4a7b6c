"""Resolve the PostgreSQL and Redis this checkout uses: the environment's, else embedded ones.

``DATABASE_URL`` and ``REDIS_URL`` (or ``CELERY_BROKER_URL``) win. For each one unset, an
embedded server with its data under ``.local/`` is started, or reused when one already runs
there, and stopped again by the last process that uses it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from devtools import postgres_server, redis_server
from devtools.console import Console
from devtools.errors import DevtoolsError
from devtools.postgres_server import EmbeddedPostgres
from devtools.redis_server import EmbeddedRedis
from devtools.server_users import ServerUsers, exclusive_lock


class EmbeddedServer(Protocol):
    """What the resolver needs of an embedded server."""

    name: str

    def start(self) -> str: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class ServerUrls:
    """The servers in use, and which of them are embedded ones."""

    database_url: str
    redis_url: str
    embedded: tuple[str, ...] = ()

    def environment(self) -> dict[str, str]:
        """Return the variables that point settings, workers and tests at these servers."""
        return {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url}


def configured_urls(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """Return (database URL, broker URL) from the environment, as infrastructure.runtime does."""
    database_url = env.get("DATABASE_URL") or None
    broker_url = env.get("CELERY_BROKER_URL") or env.get("REDIS_URL") or None
    return database_url, broker_url


def write_runtime_file(path: Path, urls: ServerUrls) -> None:
    """Record the URLs in use for ``manage.py`` beside ``make run`` (infrastructure.runtime)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    payload = {"DATABASE_URL": urls.database_url, "REDIS_URL": urls.redis_url}
    # Never DEBUG: settings take it from the environment only (a production process started in
    # a checkout that once ran `make run` must not pick it up).
    temporary.write_text(json.dumps(payload, indent=2) + "\n")
    temporary.replace(path)


class ProjectServers:
    """Acquire the servers on entry and release them on exit (``with ProjectServers(...)``)."""

    def __init__(
        self,
        local_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        console: Console | None = None,
        postgres_port: int = postgres_server.DEFAULT_PORT,
        redis_port: int = redis_server.DEFAULT_PORT,
    ) -> None:
        self.local_dir = local_dir.absolute()
        self.env = os.environ if env is None else env
        self.console = console or Console()
        self.postgres = EmbeddedPostgres(
            self.local_dir / "postgres", preferred_port=postgres_port, console=self.console
        )
        self.redis = EmbeddedRedis(
            self.local_dir / "redis", preferred_port=redis_port, console=self.console
        )
        self._lock_path = self.local_dir / "servers.lock"
        self._in_use: list[EmbeddedServer] = []

    def _users(self, server: EmbeddedServer) -> ServerUsers:
        return ServerUsers(self.local_dir / f"{server.name.lower()}.users.json")

    def acquire(self) -> ServerUrls:
        """Return the servers to use, starting the embedded ones that are needed."""
        database_url, broker_url = configured_urls(self.env)
        if database_url:
            self.console.step("PostgreSQL: DATABASE_URL from the environment")
        if broker_url:
            self.console.step("Redis: REDIS_URL / CELERY_BROKER_URL from the environment")
        with exclusive_lock(self._lock_path):
            try:
                if not database_url:
                    database_url = self._start(self.postgres)
                if not broker_url:
                    broker_url = self._start(self.redis)
            except BaseException:
                self._release_locked()
                raise
        return ServerUrls(
            database_url=database_url,
            redis_url=broker_url,
            embedded=tuple(server.name for server in self._in_use),
        )

    def _start(self, server: EmbeddedServer) -> str:
        url = server.start()
        self._users(server).join(os.getpid())
        self._in_use.append(server)
        return url

    def release(self) -> bool:
        """Leave the embedded servers, stopping those nobody else uses; say if any stopped."""
        with exclusive_lock(self._lock_path):
            return self._release_locked()

    def _release_locked(self) -> bool:
        stopped = False
        failures: list[str] = []
        for server in reversed(self._in_use):
            others = self._users(server).leave(os.getpid())
            if others:
                self.console.step(
                    f"embedded {server.name} is still used by pid {', '.join(map(str, others))}:"
                    " leaving it running"
                )
                continue
            try:
                server.stop()
                stopped = True
            except DevtoolsError as error:
                failures.append(str(error))
        self._in_use.clear()
        if failures:
            raise DevtoolsError("\n".join(failures))
        return stopped

    def __enter__(self) -> ServerUrls:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
