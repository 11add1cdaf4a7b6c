"""An event store in memory, for unit tests of aggregates and handlers without a database.

It keeps the same contract as the PostgreSQL store (``EventStoreContract`` runs against both),
including all-or-nothing batches inside ``transaction()`` and inline projectors run with each
append (a projector that raises takes the append with it). Its transactions are its own: a
database transaction around it that rolls back leaves its events in place, so a service run
on it in a test should be one whose failures raise before the append (or not rely on both
rolling back together).
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from eventstore.errors import ConcurrencyError, DuplicateEventError
from eventstore.records import (
    LOG_START,
    AppendResult,
    LogPosition,
    NewEvent,
    RecordedEvent,
    StoredSnapshot,
)
from eventstore.serialization import json_round_trip
from eventstore.store import InlineProjector


class InMemoryEventStore:
    """Keep streams in dictionaries; one lock stands in for the database's guarantees."""

    def __init__(
        self, *, inline_projectors: Callable[[], Iterable[InlineProjector]] | None = None
    ) -> None:
        self._inline_projectors = inline_projectors
        self._lock = threading.RLock()
        self._streams: dict[tuple[str, str], list[RecordedEvent]] = {}
        self._log: list[RecordedEvent] = []
        self._by_id: dict[object, RecordedEvent] = {}
        self._snapshots: dict[tuple[str, str], list[StoredSnapshot]] = {}
        self._positions = itertools.count(1)
        self._depth = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            outermost = self._depth == 0
            saved = self._save_state() if outermost else None
            self._depth += 1
            try:
                yield
            except BaseException:
                if saved is not None:
                    self._restore_state(saved)
                raise
            finally:
                self._depth -= 1

    def _save_state(self) -> tuple[object, ...]:
        return (
            {k: list(v) for k, v in self._streams.items()},
            list(self._log),
            dict(self._by_id),
            {k: list(v) for k, v in self._snapshots.items()},
        )

    def _restore_state(self, saved: tuple[object, ...]) -> None:
        streams, log, by_id, snapshots = saved
        self._streams = streams  # type: ignore[assignment]
        self._log = log  # type: ignore[assignment]
        self._by_id = by_id  # type: ignore[assignment]
        self._snapshots = snapshots  # type: ignore[assignment]

    def append(
        self,
        *,
        stream_type: str,
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
    ) -> AppendResult:
        if not events:
            raise ValueError("append needs at least one event")
        with self._lock:
            stream = self._streams.setdefault((stream_type, stream_id), [])
            known = [self._by_id.get(e.event_id) for e in events]
            if all(k is not None for k in known):
                stored = tuple(k for k in known if k is not None)
                if any((r.stream_type, r.stream_id) != (stream_type, stream_id) for r in stored):
                    raise DuplicateEventError("event ids already stored in another stream")
                return AppendResult(
                    stream_type, stream_id, stored[0].version, stored[-1].version, stored, True
                )
            if any(k is not None for k in known):
                raise DuplicateEventError("batch mixes stored and new events")
            actual = len(stream)
            if actual != expected_version:
                raise ConcurrencyError(
                    stream_type=stream_type,
                    stream_id=stream_id,
                    expected=expected_version,
                    actual=actual,
                )
            now = datetime.now(UTC)
            recorded = []
            for offset, new in enumerate(events, start=1):
                position = next(self._positions)
                # Round-trip through JSON so callers see exactly what a database would keep.
                record = RecordedEvent(
                    position=position,
                    transaction_id=position,
                    stream_type=stream_type,
                    stream_id=stream_id,
                    version=expected_version + offset,
                    event_id=new.event_id,
                    event_type=new.event_type,
                    schema_version=new.schema_version,
                    data=json_round_trip(dict(new.data)),
                    metadata=json_round_trip(dict(new.metadata)),
                    recorded_at=now,
                )
                recorded.append(record)
            with self.transaction():
                stream.extend(recorded)
                self._log.extend(recorded)
                self._by_id.update({r.event_id: r for r in recorded})
                for projector in self._inline_projectors() if self._inline_projectors else ():
                    for event in recorded:
                        if event.event_type in projector.event_types:
                            projector.handle(event)
            return AppendResult(
                stream_type,
                stream_id,
                recorded[0].version,
                recorded[-1].version,
                tuple(recorded),
            )

    def read_stream(
        self,
        *,
        stream_type: str,
        stream_id: str,
        after_version: int = 0,
        to_version: int | None = None,
    ) -> list[RecordedEvent]:
        with self._lock:
            stream = self._streams.get((stream_type, stream_id), [])
            return [
                copy.deepcopy(r)
                for r in stream
                if r.version > after_version and (to_version is None or r.version <= to_version)
            ]

    def stream_version(self, *, stream_type: str, stream_id: str) -> int:
        with self._lock:
            return len(self._streams.get((stream_type, stream_id), []))

    def read_all(
        self,
        *,
        after: LogPosition = LOG_START,
        limit: int = 1000,
        event_types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        with self._lock:
            selected = [
                r
                for r in self._log
                if r.log_position > after and (event_types is None or r.event_type in event_types)
            ]
            return [copy.deepcopy(r) for r in selected[:limit]]

    def latest_snapshot(
        self,
        *,
        stream_type: str,
        stream_id: str,
        schema_version: int,
        max_version: int | None = None,
    ) -> StoredSnapshot | None:
        with self._lock:
            usable = [
                s
                for s in self._snapshots.get((stream_type, stream_id), [])
                if s.schema_version == schema_version
                and (max_version is None or s.version <= max_version)
            ]
            return max(usable, key=lambda s: s.version) if usable else None

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        with self._lock:
            stored = self._snapshots.setdefault((snapshot.stream_type, snapshot.stream_id), [])
            if not any(
                s.version == snapshot.version and s.schema_version == snapshot.schema_version
                for s in stored
            ):
                stored.append(snapshot)
