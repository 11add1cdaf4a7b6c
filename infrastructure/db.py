"""Database helpers shared by the apps' hot paths.

Why a second kind of cursor: Django's psycopg backend binds parameters on the client
(``ClientCursor``), and a client-bound query is never prepared, so PostgreSQL parses and
plans it on every run. For the few statements that run on every event append and every saga
step (fixed texts, run thousands of times per connection) that is a large share of their
cost (docs/performance.md). On a plain
``psycopg.Cursor`` the parameters travel separately and, with ``prepare_threshold`` in the
database OPTIONS (config/settings.py), psycopg prepares a statement once it has run that many
times on the connection; later runs skip parse and plan. Django's own cursors stay
client-bound and never prepare, so the ORM is unaffected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import Field, Model
from django.db.models.fields import AutoFieldMixin

M = TypeVar("M", bound=Model)


def server_binding_cursor(*, numbered: bool = False) -> CursorWrapper:
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

    ``numbered``: the SQL's placeholders are PostgreSQL's own (``$1``, ``$2``…), sent as
    they are, where psycopg would otherwise rewrite every ``%s`` on every run (it caches
    the rewrite only for short statements of at most 50 parameters).
    """
    # The wrapper itself, looked up once: each attribute read through Django's
    # ``connection`` proxy looks it up again in a context-local mapping, which cost more
    # than the rest of this function.
    conn = connections[DEFAULT_DB_ALIAS]
    conn.close_if_health_check_failed()
    conn.ensure_connection()
    conn.validate_thread_sharing()
    with conn.wrap_database_errors:
        raw = (psycopg.RawCursor if numbered else psycopg.Cursor)(conn.connection)
    if conn.queries_logged:
        return CursorDebugWrapper(raw, conn)
    return CursorWrapper(raw, conn)


@contextmanager
def pipelined_transaction() -> Iterator[None]:
    """Run a durable transaction whose statements travel in psycopg's pipeline mode.

    A write service's transaction is several statements. In pipeline mode psycopg sends a
    statement without waiting for the one before to answer; it waits only when a result is
    read (a ``fetch*``) and when the pipeline ends. Statements whose results nobody reads
    therefore share a round trip with the next one that is read, or with the pipeline's end,
    and the service keeps the plain shape "one transaction, one statement per write".

    What code inside must respect: ``cursor.rowcount`` and errors are only known once the
    pipeline has answered (a fetch, or its end), so a statement whose outcome decides what
    happens next must fetch (``RETURNING``) rather than read ``rowcount``; an error of a
    statement nobody fetched surfaces at the end of this block and rolls it all back.
    """
    conn = connections[DEFAULT_DB_ALIAS]
    # The transaction around the pipeline: psycopg waits for the server whenever the
    # autocommit mode changes in pipeline mode, and Django changes it on entering and
    # leaving the outermost atomic block. The pipeline's end waits for every statement, so
    # an error surfaces inside the block, which rolls back.
    with transaction.atomic(durable=True):
        conn.ensure_connection()
        # Django's error classes for what surfaces at the pipeline's end, as for a query.
        with conn.wrap_database_errors, conn.connection.pipeline():
            yield


#: Statement texts by model (and WHERE clause): built once, so that each prepares.
_SELECTS: dict[tuple[type[Model], str], str] = {}


_INSERTS: dict[tuple[tuple[tuple[type[Model], int], ...], bool], str] = {}


def insert_fields(model: type[Model]) -> tuple[Field[Any, Any], ...]:
    """Return the fields an INSERT of ``model`` writes: every concrete one but an auto key."""
    meta = model._meta
    auto_pk = isinstance(meta.pk, AutoFieldMixin)
    return tuple(f for f in meta.concrete_fields if not (auto_pk and f is meta.pk))


def _insert_sql(model: type[Model], rows: int, *, first: int) -> str:
    # Numbered placeholders from ``first`` on (server_binding_cursor(numbered=True)).
    meta = model._meta
    fields = insert_fields(model)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    width = len(fields)
    values = ", ".join(
        "(" + ", ".join(f"${first + r * width + i}" for i in range(width)) + ")"
        for r in range(rows)
    )
    return (
        f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({columns}) "  # noqa: S608
        f"VALUES {values}"
    )


def _grouped_insert_sql(
    shape: tuple[tuple[type[Model], int], ...], *, ignore_conflicts: bool
) -> str:
    # Every group but the last is a data-modifying CTE of the last one's INSERT: PostgreSQL
    # runs each of them exactly once, whether or not anything reads it.
    statements = []
    first = 1
    for model, rows in shape:
        statements.append(_insert_sql(model, rows, first=first))
        first += rows * len(insert_fields(model))
    *leading, final = statements
    if ignore_conflicts:
        final += " ON CONFLICT DO NOTHING"
    if not leading:
        return final
    ctes = ", ".join(f"w{n} AS ({sql})" for n, sql in enumerate(leading))
    return f"WITH {ctes} {final}"


def prepared_insert_rows(objs: Sequence[Model], *, ignore_conflicts: bool = False) -> None:
    """INSERT instances of one model in one prepared statement, reading nothing back.

    Every concrete field is written (an auto-increment key is left to the database and not
    read back), each value from ``pre_save`` and ``get_db_prep_save`` as the ORM does, so a
    field added to the model with a default is written without touching any SQL. Nothing is
    fetched: in pipeline mode (``pipelined_transaction``) the statement costs no round trip
    of its own. ``ignore_conflicts`` skips a conflicting row. No signals are sent.
    """
    if objs:
        _insert_groups([objs], ignore_conflicts=ignore_conflicts)


def prepared_insert_row_groups(groups: Sequence[Sequence[Model]]) -> None:
    """INSERT several groups of instances, one model per group, in one prepared statement.

    Each group is written as :func:`prepared_insert_rows` writes it (every concrete field,
    defaults included, nothing read back); empty groups are left out. One statement instead
    of one per group: what a statement costs the client and the server on its own (its
    execute, its parse-bind-execute messages, its result) is paid once. The statement's text
    is built once per sequence of (model, row count), so that it prepares.
    """
    present = [group for group in groups if group]
    if present:
        _insert_groups(present, ignore_conflicts=False)


def _insert_groups(groups: Sequence[Sequence[Model]], *, ignore_conflicts: bool) -> None:
    shape = tuple((type(group[0]), len(group)) for group in groups)
    key = (shape, ignore_conflicts)
    if key not in _INSERTS:
        _INSERTS[key] = _grouped_insert_sql(shape, ignore_conflicts=ignore_conflicts)
    # The connection itself, not Django's ``connection`` proxy: each field's
    # get_db_prep_save reads it, and each read through the proxy is a context-local lookup.
    conn = connections[DEFAULT_DB_ALIAS]
    values: list[Any] = []
    for group in groups:
        fields = insert_fields(type(group[0]))
        values += [f.get_db_prep_save(f.pre_save(obj, True), conn) for obj in group for f in fields]
    with server_binding_cursor(numbered=True) as cursor:
        cursor.execute(_INSERTS[key], values)


def prepared_select_sent(
    model: type[M], where: str, params: Sequence[Any]
) -> Callable[[], list[M]]:
    """Send a prepared SELECT of the model's rows matching ``where``; return their reader.

    ``where`` is SQL with ``%s`` placeholders, written by the module that owns the table.
    Every concrete field is read; a field that converts what the database returns (a
    ``JSONField``) converts it as the ORM would.

    In pipeline mode (``pipelined_transaction``) the query travels with the statements
    around it and its answer arrives when the pipeline next waits (its end, say), so a read
    whose answer is needed only after the writes costs no round trip of its own. Outside
    pipeline mode it is a plain query in two halves.
    """
    key = (model, where)
    meta = model._meta
    if key not in _SELECTS:
        columns = ", ".join(connection.ops.quote_name(f.column) for f in meta.concrete_fields)
        _SELECTS[key] = (
            f"SELECT {columns} FROM {connection.ops.quote_name(meta.db_table)} WHERE {where}"  # noqa: S608
        )
    cursor = server_binding_cursor()
    cursor.execute(_SELECTS[key], list(params))

    def rows() -> list[M]:
        try:
            fetched = cursor.fetchall()
        finally:
            cursor.close()
        attnames = [f.attname for f in meta.concrete_fields]
        converters = [
            (i, f) for i, f in enumerate(meta.concrete_fields) if hasattr(f, "from_db_value")
        ]
        if converters:
            fetched = [list(row) for row in fetched]
            for row in fetched:
                for i, field in converters:
                    row[i] = field.from_db_value(row[i], None, connection)
        return [model.from_db(connection.alias, attnames, row) for row in fetched]

    return rows
