"""Database helpers shared by the apps' hot paths.

Why a second kind of cursor: Django's psycopg backend binds parameters on the client
(``ClientCursor``), and a client-bound query is never prepared, so PostgreSQL parses and
plans it on every run. For the few statements that run on every event append and every saga
step (fixed texts, run thousands of times per connection) that is a large share of their
cost: about 0.3 ms of a 1.2 to 3 ms append here (docs/benchmarks.md). On a plain
``psycopg.Cursor`` the parameters travel separately and, with ``prepare_threshold`` in the
database OPTIONS (config/settings.py), psycopg prepares a statement once it has run that many
times on the connection; later runs skip parse and plan. Django's own cursors stay
client-bound and never prepare, so the ORM is unaffected.
"""

from __future__ import annotations

import psycopg
from django.db import connection
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
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        raw = psycopg.Cursor(connection.connection)
    if connection.queries_logged:
        return CursorDebugWrapper(raw, connection)
    return CursorWrapper(raw, connection)
