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
by the longest-running writing transaction, measured in docs/benchmarks.md.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol
from uuid import UUID

from django.db import connection, transaction

from eventstore.errors import ConcurrencyError, DuplicateEventError
from eventstore.records import (
    LOG_START,
    AppendResult,
    LogPosition,
    NewEvent,
    RecordedEvent,
    Rider,
    StoredSnapshot,
)
from infrastructure.db import server_binding_cursor

EVENT_COLUMNS = (
    "position, transaction_id, stream_type, stream_id, version, event_id, event_type, "
    "schema_version, data, metadata, recorded_at"
)
_EVENT_COLUMN_COUNT = len(EVENT_COLUMNS.split(", "))
_RIDER_PARAM = re.compile(r"%\((\w+)\)s")


@functools.lru_cache(maxsize=64)
def _append_sql(batch: int, riders: tuple[tuple[str, str], ...]) -> str:
    """Return the append statement for a batch size and riders (``(sql, counted)`` pairs).

    Built once per shape, so that each shape is one text that psycopg prepares; riders'
    parameters are renamed ``r<index>_<name>`` so that two riders cannot collide.
    """
    values = ", ".join(
        f"(%(e{n}_id)s::uuid, %(e{n}_version)s::int, %(e{n}_type)s, %(e{n}_schema)s::int, "
        f"%(e{n}_data)s::jsonb, %(e{n}_meta)s::jsonb)"
        for n in range(batch)
    )
    insert = (
        "INSERT INTO eventstore_event "
        "(event_id, stream_type, stream_id, version, event_type, schema_version, "
        "data, metadata) "
        "SELECT n.event_id, %(stream_type)s, %(stream_id)s, n.version, n.event_type, "
        "n.schema_version, n.data, n.metadata "
        f"FROM cur, (VALUES {values}) "
        "AS n(event_id, version, event_type, schema_version, data, metadata) "
        "WHERE cur.v = %(expected)s "
        "ON CONFLICT DO NOTHING "
        f"RETURNING {EVENT_COLUMNS}"
    )
    current = (
        "WITH cur AS (SELECT coalesce(max(version), 0) AS v FROM eventstore_event "
        "WHERE stream_type = %(stream_type)s AND stream_id = %(stream_id)s) "
    )
    if not riders:
        return current + insert
    ctes = [_RIDER_PARAM.sub(rf"%(r{index}_\1)s", sql) for index, (sql, _) in enumerate(riders)]
    counts = "".join(f", (SELECT count(*) FROM {counted})" for _, counted in riders)
    return (
        f"{current}, appended AS ({insert}), {', '.join(ctes)} "
        f"SELECT {EVENT_COLUMNS}{counts} FROM appended"
    )


class InlineProjector(Protocol):
    @property
    def event_types(self) -> frozenset[str]: ...

    def handle(self, event: RecordedEvent) -> None: ...

    def rider(self, stream_type: str, stream_id: str, event: NewEvent) -> Rider | None:
        """Return the projection of ``event`` as a rider on its append, or None to handle it."""
        ...


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _loads(value: Any) -> Any:
    # Django's psycopg backend hands jsonb over as text so JSONField can decode it itself.
    return json.loads(value) if isinstance(value, str | bytes) else value


def record_from_row(row: Sequence[Any]) -> RecordedEvent:
    return RecordedEvent(
        position=row[0],
        transaction_id=row[1],
        stream_type=row[2],
        stream_id=row[3],
        version=row[4],
        event_id=row[5] if isinstance(row[5], UUID) else UUID(str(row[5])),
        event_type=row[6],
        schema_version=row[7],
        data=_loads(row[8]),
        metadata=_loads(row[9]),
        recorded_at=row[10],
    )


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
        riders: Sequence[Rider] = (),
    ) -> AppendResult:
        """Store ``events`` at the end of the stream, if it is at ``expected_version``.

        ``riders`` are writes that run in the same statement, only when the events are stored
        (see :class:`Rider`). Inline projectors that can write their rows as riders do so.
        """
        if not events:
            raise ValueError("append needs at least one event")
        if expected_version < 0:
            raise ValueError("expected_version cannot be negative")
        projection = self._inline_riders(stream_type, stream_id, events)
        all_riders = [*(projection or ()), *riders]
        params: dict[str, Any] = {
            "stream_type": stream_type,
            "stream_id": stream_id,
            "expected": expected_version,
        }
        for offset, event in enumerate(events):
            params[f"e{offset}_id"] = str(event.event_id)
            params[f"e{offset}_version"] = expected_version + offset + 1
            params[f"e{offset}_type"] = event.event_type
            params[f"e{offset}_schema"] = event.schema_version
            params[f"e{offset}_data"] = _json(dict(event.data))
            params[f"e{offset}_meta"] = _json(dict(event.metadata))
        for index, rider in enumerate(all_riders):
            params.update((f"r{index}_{name}", value) for name, value in rider.params.items())
        sql = _append_sql(len(events), tuple((r.sql, r.counted) for r in all_riders))
        # A batch, or an event that inline projectors follow outside the statement, needs a
        # transaction around its statements. One event whose followers all ride in the
        # statement is atomic by itself: outside a caller's transaction it commits on its own
        # (as durably), which saves the BEGIN and COMMIT round trips.
        alone = len(events) == 1 and projection is not None
        with nullcontext() if alone else self.transaction():
            # Prepared after a few runs (infrastructure.db): its text is fixed per batch size and
            # riders. It took the 1-writer append from 0.30 to 0.47 of the raw ceiling
            # (docs/benchmarks.md).
            with server_binding_cursor() as cursor:
                cursor.execute(sql, params)
                rows = cursor.fetchall()
            if len(rows) == len(events):
                ordered = sorted(rows, key=lambda r: r[4])
                recorded = tuple(record_from_row(r) for r in ordered)
                for index, rider in enumerate(all_riders):
                    if rider.written is not None:
                        rider.written(recorded, ordered[0][_EVENT_COLUMN_COUNT + index])
                if projection is None:
                    self._project_inline(recorded)
                return AppendResult(
                    stream_type, stream_id, recorded[0].version, recorded[-1].version, recorded
                )
            if rows:
                # Part of the batch collided (a race or a partly re-sent batch). Raising rolls
                # back the rows that did go in: a batch is all or nothing.
                raise self._conflict_or_duplicate(stream_type, stream_id, expected_version)
            duplicate = self._stored_duplicate(stream_type, stream_id, events)
            if duplicate is not None:
                return duplicate
            raise self._conflict_or_duplicate(stream_type, stream_id, expected_version)

    def _inline_riders(
        self, stream_type: str, stream_id: str, events: Sequence[NewEvent]
    ) -> list[Rider] | None:
        """Return the inline projectors' riders for the events (none when none follow them).

        None when any of them must handle the recorded events after the append instead: a
        batch (it runs in a transaction anyway), or a projector with no rider for the event.
        """
        if self._inline_projectors is None:
            return []
        following = [
            p
            for p in self._inline_projectors()
            if any(e.event_type in p.event_types for e in events)
        ]
        if not following:
            return []
        if len(events) != 1:
            return None
        riders = [p.rider(stream_type, stream_id, events[0]) for p in following]
        return None if None in riders else [r for r in riders if r is not None]

    def _stored_duplicate(
        self, stream_type: str, stream_id: str, events: Sequence[NewEvent]
    ) -> AppendResult | None:
        """Return the stored batch when every event of it is already stored in this stream."""
        ids = [str(e.event_id) for e in events]
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {EVENT_COLUMNS} FROM eventstore_event WHERE event_id = ANY(%s::uuid[]) "
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

    def _project_inline(self, recorded: Sequence[RecordedEvent]) -> None:
        if self._inline_projectors is None:
            return
        for projector in self._inline_projectors():
            for event in recorded:
                if event.event_type in projector.event_types:
                    projector.handle(event)

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
            f"SELECT {EVENT_COLUMNS} FROM eventstore_event "
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
            "SELECT version, event_type, schema_version, data FROM eventstore_event "
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

    def stream_version(self, *, stream_type: str, stream_id: str) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(max(version), 0) FROM eventstore_event "
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
            f"SELECT {EVENT_COLUMNS} FROM eventstore_event "
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

    def count_after(self, *, after: LogPosition, event_types: Collection[str] | None = None) -> int:
        """Count stored events after ``after`` (committed or not yet readable): a lag figure."""
        sql = "SELECT count(*) FROM eventstore_event WHERE (transaction_id, position) > (%s, %s)"
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
        return StoredSnapshot(stream_type, stream_id, int(row[0]), schema_version, _loads(row[1]))

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
                    _json(snapshot.state),
                ],
            )
