"""Give benchmarks a database of their own, fresh for every run.

Benchmarks never run in the development database: ``use_bench_database`` drops and recreates
``<dbname>_bench`` on the server ``DATABASE_URL`` names (``BENCH_DATABASE_NAME`` overrides the
name, so two people can benchmark on one server at once), points ``DATABASE_URL`` at it,
sets Django up with ``bench.settings`` and migrates. Both variables are exported in
``os.environ``, so a worker or server a benchmark starts as a subprocess (Celery, gunicorn)
reaches the same database.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from infrastructure import runtime

SETTINGS_MODULE = "bench.settings"


def bench_database_name(database_url: str) -> str:
    """Return the bench database's name: ``BENCH_DATABASE_NAME``, else ``<dbname>_bench``."""
    override = os.environ.get("BENCH_DATABASE_NAME", "").strip()
    if override:
        return override
    dbname = urlsplit(database_url).path.lstrip("/")
    if not dbname:
        raise ValueError(f"DATABASE_URL names no database: {database_url!r}")
    return f"{dbname}_bench"


def with_database_name(database_url: str, name: str) -> str:
    """Return ``database_url`` pointing at database ``name`` on the same server."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def recreate_database(*, database_url: str, name: str) -> None:
    """Drop database ``name`` on ``database_url``'s server (closing its sessions), create it."""
    if name == urlsplit(database_url).path.lstrip("/"):
        raise ValueError(f"refusing to recreate {name!r}: it is the database DATABASE_URL names")
    # Connect to the maintenance database: one cannot drop the database one is connected to.
    with psycopg.connect(database_url, dbname="postgres", autocommit=True) as conn:
        database = sql.Identifier(name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(database))


def use_bench_database(*, migrate: bool = True) -> str:
    """Recreate the bench database, set Django up on it and migrate it; return its URL.

    Call it once per process, before anything imports Django models.
    """
    database_url = runtime.database_url()
    if not database_url:
        raise RuntimeError(
            "No database: set DATABASE_URL (postgres://user@host:port/name); the benchmark "
            "creates its own database beside that one."
        )
    name = bench_database_name(database_url)
    recreate_database(database_url=database_url, name=name)
    bench_url = with_database_name(database_url, name)
    os.environ["DATABASE_URL"] = bench_url
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE

    import django
    from django.core.management import call_command

    django.setup()
    if migrate:
        call_command("migrate", interactive=False, verbosity=0)
    return bench_url
