"""A server-binding cursor for the few statements on the hot paths, so that they prepare.

Why a second kind of cursor: Django's psycopg backend binds parameters on the client
(``ClientCursor``), and a client-bound query is never prepared, so PostgreSQL parses and
plans it on every run. For the few statements that run on every event append and every saga
step (fixed texts, run thousands of times per connection) parsing and planning are a large
share of their cost (docs/benchmarks.md has the figures). On a plain
``psycopg.Cursor`` the parameters travel separately and, with ``prepare_threshold`` in the
database OPTIONS (config/settings.py), psycopg prepares a statement once it has run that many
times on the connection; later runs skip parse and plan. Django's own cursors stay
client-bound and never prepare, so the ORM is unaffected.
"""

from __future__ import annotations

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper


def server_binding_cursor() -> CursorWrapper:
    """Return a Django cursor over a server-binding psycopg cursor on Django's connection.

    Wrapped as ``connection.cursor()`` wraps its own, it keeps what Django does around a
    query: the health check and connect, the thread-sharing and broken-``atomic`` checks,
    Django's error classes, and query logging (``connection.queries``, ``assertNumQueries``;
    once prepared, a statement's text logs as None, since psycopg sends it by name).

    What changes for the SQL: one statement per execute (the extended protocol takes no
    ``;``-separated scripts), and each parameter is typed by its Python value or left for
    PostgreSQL to infer (``None`` and ``str``), so ambiguous ones need a cast. Prepared
    statements live in one server session: behind a transaction-mode pooler (pgbouncer) set
    ``prepare_threshold`` to None.
    """
    # The wrapper itself, looked up once: each attribute read through Django's
    # ``connection`` proxy looks it up again in a context-local mapping, which cost more
    # than the rest of this function.
    conn = connections[DEFAULT_DB_ALIAS]
    conn.close_if_health_check_failed()
    conn.ensure_connection()
    conn.validate_thread_sharing()
    with conn.wrap_database_errors:
        raw = psycopg.Cursor(conn.connection)
    if conn.queries_logged:
        return CursorDebugWrapper(raw, conn)
    return CursorWrapper(raw, conn)
