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

from collections.abc import Sequence
from typing import Any, TypeVar

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import Field, Model
from django.db.models.fields import AutoFieldMixin

M = TypeVar("M", bound=Model)


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


#: Statement texts by model (and WHERE clause): built once, so that each prepares.
_INSERTS: dict[type[Model], tuple[str, tuple[Field[Any, Any], ...], bool]] = {}
_SELECTS: dict[tuple[type[Model], str], str] = {}


def prepared_insert(obj: Model) -> None:
    """INSERT one model instance through a prepared statement, as ``save(force_insert=True)``.

    For the few rows written on every order (a payment, the simulated processor's charge):
    the ORM would compile its INSERT on every call. Every concrete field is written, from
    ``pre_save`` and ``get_db_prep_save`` as the ORM does; an auto-increment primary key left
    unset comes back from the database. No signals are sent (none are connected to these
    models).
    """
    model = type(obj)
    if model not in _INSERTS:
        meta = obj._meta
        auto_pk = isinstance(meta.pk, AutoFieldMixin)
        fields = tuple(f for f in meta.concrete_fields if not (auto_pk and f is meta.pk))
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        sql = (
            f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({columns}) "  # noqa: S608
            f"VALUES ({', '.join(['%s'] * len(fields))})"
        )
        if auto_pk:
            assert meta.pk is not None
            sql += f" RETURNING {connection.ops.quote_name(meta.pk.column)}"
        _INSERTS[model] = (sql, fields, auto_pk)
    sql, fields, auto_pk = _INSERTS[model]
    values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    with server_binding_cursor() as cursor:
        cursor.execute(sql, values)
        if auto_pk:
            row = cursor.fetchone()
            assert row is not None
            obj.pk = row[0]
    obj._state.adding = False
    obj._state.db = connection.alias


def prepared_select(model: type[M], where: str, params: Sequence[Any]) -> list[M]:
    """Return the model's rows matching ``where`` (SQL with ``%s`` placeholders), prepared.

    Only for models whose fields need no conversion from what psycopg returns (text, numbers,
    uuid, timestamps: no JSON), which is checked.
    """
    key = (model, where)
    if key not in _SELECTS:
        meta = model._meta
        needs_conversion = [f.name for f in meta.concrete_fields if hasattr(f, "from_db_value")]
        if needs_conversion:
            raise TypeError(f"{model.__name__}: fields {needs_conversion} need conversion")
        columns = ", ".join(connection.ops.quote_name(f.column) for f in meta.concrete_fields)
        _SELECTS[key] = (
            f"SELECT {columns} FROM {connection.ops.quote_name(meta.db_table)} WHERE {where}"  # noqa: S608
        )
    attnames = [f.attname for f in model._meta.concrete_fields]
    with server_binding_cursor() as cursor:
        cursor.execute(_SELECTS[key], list(params))
        rows = cursor.fetchall()
    return [model.from_db(connection.alias, attnames, row) for row in rows]
