"""The PostgreSQL event store.

Appends are one INSERT … SELECT statement per batch: it checks the stream's current version
and inserts the batch only when it matches, so a save is one round trip plus its commit. The
unique constraint on (stream_type, stream_id, version) settles races between writers that
both saw the same version; ``ON CONFLICT DO NOTHING`` turns a lost race into "fewer rows than
asked", which we report as a ``ConcurrencyError`` after rolling the batch back.

Reading the global log without skipping late commits, without a global lock: every event
records the id of the transaction that wrote it (``pg_current_xact_id()``). A reader takes
only events whose transaction id is below the oldest transaction still running
(``pg_snapshot_xmin(pg_current_snapshot())``) and walks them in (transaction id, position)
order. Every transaction below that horizon has finished, so nothing can later commit behind
the reader's checkpoint. Writers never wait for each other (unlike a table lock, which
eventsourcing's Django recorder takes on every append); the price is that readers lag behind
by the longest-running writing transaction (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection, transaction

from eventstore.errors import ConcurrencyError, DuplicateEventError
from eventstore.models import StoredEvent
from eventstore.records import (
    LOG_START,
    AppendResult,
    LogPosition,
    NewEvent,
    RecordedEvent,
    StoredSnapshot,
)
from eventstore.serialization import json_text, json_value
from eventstore.store import InlineProjector
from infrastructure.db import server_binding_cursor

# The columns of eventstore_event, from its model: this module is the only one that writes
# or reads that table in SQL.
_FIELDS = {f.name: f for f in StoredEvent._meta.concrete_fields}
_TABLE = connection.ops.quote_name(StoredEvent._meta.db_table)
#: Filled in by the database: the log position (a sequence), the writing transaction's id
#: and the time (column defaults, migration 0002).
DATABASE_FILLED = ("position", "transaction_id", "recorded_at")
#: Shared by every event of a batch.
PER_STREAM = ("stream_type", "stream_id")
#: Brought by each appended event. Any other column of the model is written with its
#: model default, so a column added with a default needs no change here.
PER_EVENT = ("event_id", "version", "event_type", "schema_version", "data", "metadata")
DEFAULTED = tuple(
    name for name in _FIELDS if name not in {*DATABASE_FILLED, *PER_STREAM, *PER_EVENT}
)


def _column(name: str) -> str:
    return connection.ops.quote_name(_FIELDS[name].column)


#: The columns a ``RecordedEvent`` is read from, in the order of its fields.
EVENT_COLUMNS = ", ".join(_column(f.name) for f in dataclasses.fields(RecordedEvent))


@functools.lru_cache(maxsize=64)
def append_sql(batch: int) -> str:
    """Return the append statement for a batch of ``batch`` events.

    Built once per batch size, so that each size is one text that psycopg prepares. It
    inserts the batch only when the stream is at the expected version, and returns the
    stored rows; a lost race (the unique constraint) stores none of them.
    """
    written = (*PER_EVENT, *DEFAULTED)
    casts = {name: _FIELDS[name].db_type(connection) for name in written}
    values = ", ".join(
        "(" + ", ".join(f"%(e{n}_{name})s::{casts[name]}" for name in written) + ")"
        for n in range(batch)
    )
    columns = ", ".join(_column(name) for name in (*PER_STREAM, *written))
    return (
        f"WITH cur AS (SELECT coalesce(max(version), 0) AS v FROM {_TABLE} "
        "WHERE stream_type = %(stream_type)s AND stream_id = %(stream_id)s) "
        f"INSERT INTO {_TABLE} ({columns}) "
        f"SELECT %(stream_type)s, %(stream_id)s, {', '.join(f'n.{name}' for name in written)} "
        f"FROM cur, (VALUES {values}) AS n({', '.join(written)}) "
        "WHERE cur.v = %(expected)s "
        "ON CONFLICT DO NOTHING "
        f"RETURNING {EVENT_COLUMNS}"
    )


def _append_params(
    stream_type: str, stream_id: str, expected_version: int, events: Sequence[NewEvent]
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "stream_type": stream_type,
        "stream_id": stream_id,
        "expected": expected_version,
    }
    for offset, event in enumerate(events):
        params[f"e{offset}_event_id"] = str(event.event_id)
        params[f"e{offset}_version"] = expected_version + offset + 1
        params[f"e{offset}_event_type"] = event.event_type
        params[f"e{offset}_schema_version"] = event.schema_version
        params[f"e{offset}_data"] = json_text(dict(event.data))
        params[f"e{offset}_metadata"] = json_text(dict(event.metadata))
        for name in DEFAULTED:
            field = _FIELDS[name]
            params[f"e{offset}_{name}"] = field.get_db_prep_save(field.get_default(), connection)
    return params


def record_from_row(row: Sequence[Any]) -> RecordedEvent:
    """Return the event in a row of ``EVENT_COLUMNS``."""
    return RecordedEvent(
        position=row[0],
        transaction_id=row[1],
        stream_type=row[2],
        stream_id=row[3],
        version=row[4],
        event_id=row[5] if isinstance(row[5], UUID) else UUID(str(row[5])),
        event_type=row[6],
        schema_version=row[7],
        data=json_value(row[8]),
        metadata=json_value(row[9]),
        recorded_at=row[10],
    )


class _PartlyStored(Exception):
    """Roll back a batch stored only in part (raised and caught inside ``append``)."""


class PostgresEventStore:
    """Store events in ``eventstore_event`` through Django's database connection.

    ``inline_projectors`` returns the projectors updated in the same transaction as each
    append (read models that must never lag behind the write, such as the order list).
    """

    def __init__(
        self, *, inline_projectors: Callable[[], Iterable[InlineProjector]] | None = None
    ) -> None:
        self._inline_projectors = inline_projectors

    def transaction(self) -> AbstractContextManager[object]:
        # Join the caller's transaction without a savepoint: a failed append must roll back
        # the whole unit of work, and savepoints would cost two extra round trips per save.
        return transaction.atomic(savepoint=False)

    # --- writing ---------------------------------------------------------------------------

    def append(
        self,
        *,
        stream_type: str,
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
    ) -> AppendResult:
        """Store ``events`` at the end of the stream, if it is at ``expected_version``.

        The inline projectors that follow any of the events update their read models in the
        same transaction.
        """
        if not events:
            raise ValueError("append needs at least one event")
        if expected_version < 0:
            raise ValueError("expected_version cannot be negative")
        following = self._following(events)
        params = _append_params(stream_type, stream_id, expected_version, events)
        # One statement is atomic by itself. A batch may be refused half-way, and its rows
        # that went in must then roll back: a savepoint when in a caller's transaction, so
        # the caller may reload and try again. An append with read-model writes after it
        # joins the caller's transaction (or makes one).
        if len(events) > 1:
            atomic: AbstractContextManager[object] = transaction.atomic()
        elif following:
            atomic = self.transaction()
        else:
            atomic = nullcontext()
        try:
            with atomic:
                # Prepared after a few runs (infrastructure.db): its text is fixed per batch.
                with server_binding_cursor() as cursor:
                    cursor.execute(append_sql(len(events)), params)
                    rows = cursor.fetchall()
                if len(rows) == len(events):
                    recorded = tuple(record_from_row(r) for r in sorted(rows, key=lambda r: r[4]))
                    for projector in following:
                        for event in recorded:
                            if event.event_type in projector.event_types:
                                projector.handle(event)
                    return AppendResult(
                        stream_type, stream_id, recorded[0].version, recorded[-1].version, recorded
                    )
                if rows:
                    # Part of the batch collided (a race or a partly re-sent batch). Raising
                    # rolls back the rows that did go in: a batch is all or nothing.
                    raise _PartlyStored
        except _PartlyStored:
            # The stream's version read once those rows are gone: the one to reload at.
            raise self._conflict_or_duplicate(stream_type, stream_id, expected_version) from None
        # Nothing was stored, so nothing needs rolling back: the refusal is raised outside
        # the atomic block and leaves a caller's transaction usable (Repository.execute
        # reloads and decides again in it).
        duplicate = self._stored_duplicate(stream_type, stream_id, events)
        if duplicate is not None:
            return duplicate
        raise self._conflict_or_duplicate(stream_type, stream_id, expected_version)

    def _following(self, events: Sequence[NewEvent]) -> list[InlineProjector]:
        """Return the inline projectors that follow any of the events."""
        if self._inline_projectors is None:
            return []
        return [
            p
            for p in self._inline_projectors()
            if any(e.event_type in p.event_types for e in events)
        ]

    def _stored_duplicate(
        self, stream_type: str, stream_id: str, events: Sequence[NewEvent]
    ) -> AppendResult | None:
        """Return the stored batch when every event of it is already stored in this stream."""
        ids = [str(e.event_id) for e in events]
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {EVENT_COLUMNS} FROM {_TABLE} WHERE event_id = ANY(%s::uuid[]) "
                "ORDER BY version",
                [ids],
            )
            stored = [record_from_row(r) for r in cursor.fetchall()]
        if not stored:
            return None
        if len(stored) != len(events):
            raise DuplicateEventError(
                f"batch for {stream_type}/{stream_id} mixes {len(stored)} stored events "
                f"with {len(events) - len(stored)} new ones"
            )
        if any((e.stream_type, e.stream_id) != (stream_type, stream_id) for e in stored):
            raise DuplicateEventError("event ids are already stored in another stream")
        return AppendResult(
            stream_type, stream_id, stored[0].version, stored[-1].version, tuple(stored), True
        )

    def _conflict_or_duplicate(
        self, stream_type: str, stream_id: str, expected_version: int
    ) -> ConcurrencyError:
        actual = self.stream_version(stream_type=stream_type, stream_id=stream_id)
        return ConcurrencyError(
            stream_type=stream_type, stream_id=stream_id, expected=expected_version, actual=actual
        )

    # --- reading ---------------------------------------------------------------------------

    def read_stream(
        self,
        *,
        stream_type: str,
        stream_id: str,
        after_version: int = 0,
        to_version: int | None = None,
    ) -> list[RecordedEvent]:
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM {_TABLE} "
            "WHERE stream_type = %s AND stream_id = %s AND version > %s"
        )
        params: list[Any] = [stream_type, stream_id, after_version]
        if to_version is not None:
            sql += " AND version <= %s"
            params.append(to_version)
        sql += " ORDER BY version"
        with server_binding_cursor() as cursor:
            cursor.execute(sql, params)
            return [record_from_row(r) for r in cursor.fetchall()]

    def read_stream_payloads(
        self,
        *,
        stream_type: str,
        stream_id: str,
        after_version: int = 0,
        to_version: int | None = None,
    ) -> list[tuple[int, str, int, dict[str, Any]]]:
        """Return (version, type, schema version, data) only: what replaying an aggregate needs.

        Loading a long stream is dominated by per-row work; skipping metadata and building
        no record objects keeps a 10,000-event load close to a plain fetch of its rows.
        """
        sql = (
            f"SELECT version, event_type, schema_version, data FROM {_TABLE} "
            "WHERE stream_type = %s AND stream_id = %s AND version > %s"
        )
        params: list[Any] = [stream_type, stream_id, after_version]
        if to_version is not None:
            sql += " AND version <= %s"
            params.append(to_version)
        sql += " ORDER BY version"
        loads = json.loads
        # Every aggregate load runs this: prepared after a few runs (two texts, with and
        # without an upper bound).
        with server_binding_cursor() as cursor:
            cursor.execute(sql, params)
            return [
                (v, t, s, loads(d) if isinstance(d, str) else d) for v, t, s, d in cursor.fetchall()
            ]

    def read_streams(
        self, *, stream_type: str, chunk: int = 2000
    ) -> Iterator[tuple[str, list[RecordedEvent]]]:
        """Yield every stream of a type with its events, in stream order, reading the table once.

        For whole-read-model checks (a projection's ``verify``): one server-side cursor in
        one transaction, fetched ``chunk`` rows at a time.
        """
        with transaction.atomic(), connection.chunked_cursor() as cursor:
            cursor.execute(
                f"SELECT {EVENT_COLUMNS} FROM {_TABLE} "
                "WHERE stream_type = %s ORDER BY stream_id, version",
                [stream_type],
            )
            current: list[RecordedEvent] = []
            while rows := cursor.fetchmany(chunk):
                for row in rows:
                    event = record_from_row(row)
                    if current and current[-1].stream_id != event.stream_id:
                        yield current[-1].stream_id, current
                        current = []
                    current.append(event)
            if current:
                yield current[-1].stream_id, current

    def read_streams_of(
        self, *, stream_type: str, stream_ids: Collection[str]
    ) -> dict[str, list[RecordedEvent]]:
        """Return the events of the named streams, in one query; a stream with none is absent.

        For batch work on a read model (a projection's rebuild): one round trip per batch of
        streams instead of one per stream.
        """
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {EVENT_COLUMNS} FROM {_TABLE} "
                "WHERE stream_type = %s AND stream_id = ANY(%s) ORDER BY stream_id, version",
                [stream_type, list(stream_ids)],
            )
            streams: dict[str, list[RecordedEvent]] = {}
            for row in cursor.fetchall():
                event = record_from_row(row)
                streams.setdefault(event.stream_id, []).append(event)
        return streams

    def stream_version(self, *, stream_type: str, stream_id: str) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT coalesce(max(version), 0) FROM {_TABLE} "
                "WHERE stream_type = %s AND stream_id = %s",
                [stream_type, stream_id],
            )
            row = cursor.fetchone()
        return int(row[0]) if row else 0

    def read_all(
        self,
        *,
        after: LogPosition = LOG_START,
        limit: int = 1000,
        event_types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM {_TABLE} "
            "WHERE (transaction_id, position) > (%s, %s) "
            # Only transactions older than every running one: nothing can commit behind us.
            "AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
        )
        params: list[Any] = [after.transaction_id, after.position]
        if event_types is not None:
            sql += " AND event_type = ANY(%s)"
            params.append(list(event_types))
        sql += " ORDER BY transaction_id, position LIMIT %s"
        params.append(limit)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [record_from_row(r) for r in cursor.fetchall()]

    def log_horizon(self) -> tuple[int, int]:
        """Return (readable, next): ``read_all`` shows transactions below ``readable``; every
        transaction that has started or committed so far is below ``next``."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint "
                "FROM pg_current_snapshot() AS s"
            )
            row = cursor.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def count_after(self, *, after: LogPosition, event_types: Collection[str] | None = None) -> int:
        """Count stored events after ``after`` (committed or not yet readable): a lag figure."""
        sql = f"SELECT count(*) FROM {_TABLE} WHERE (transaction_id, position) > (%s, %s)"
        params: list[Any] = [after.transaction_id, after.position]
        if event_types is not None:
            sql += " AND event_type = ANY(%s)"
            params.append(list(event_types))
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return int(row[0]) if row else 0

    # --- snapshots -------------------------------------------------------------------------

    def latest_snapshot(
        self,
        *,
        stream_type: str,
        stream_id: str,
        schema_version: int,
        max_version: int | None = None,
    ) -> StoredSnapshot | None:
        sql = (
            "SELECT version, state FROM eventstore_snapshot "
            "WHERE stream_type = %s AND stream_id = %s AND schema_version = %s"
        )
        params: list[Any] = [stream_type, stream_id, schema_version]
        if max_version is not None:
            sql += " AND version <= %s"
            params.append(max_version)
        sql += " ORDER BY version DESC LIMIT 1"
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        return StoredSnapshot(
            stream_type, stream_id, int(row[0]), schema_version, json_value(row[1])
        )

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO eventstore_snapshot "
                "(stream_type, stream_id, version, schema_version, state, created_at) "
                "VALUES (%s, %s, %s, %s, %s::jsonb, now()) ON CONFLICT DO NOTHING",
                [
                    snapshot.stream_type,
                    snapshot.stream_id,
                    snapshot.version,
                    snapshot.schema_version,
                    json_text(snapshot.state),
                ],
            )


#: The session setting the column default reads (migration 0004).
RECORDED_AT_SETTING = "eventstore.recorded_at"


def recorded_as_of(when: datetime) -> None:
    """Record this connection's next appends at ``when`` instead of their transaction's start.

    For building a past history through the real services (``seed_demo --orders``); every
    other rule of the append holds. A session setting: call it outside a transaction, and
    :func:`recorded_now` when done.
    """
    if connection.in_atomic_block:
        raise RuntimeError("recorded_as_of is a session setting: call it outside a transaction")
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, false)", [RECORDED_AT_SETTING, when.isoformat()])


def recorded_now() -> None:
    """Record this connection's appends at their transaction's start again (the default)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, '', false)", [RECORDED_AT_SETTING])
