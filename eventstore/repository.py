"""Load aggregates by replaying their streams and save their new events.

Works with any ``EventStore``; plain Python, so handlers can be tested against the in-memory
store without a database.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, Generic, TypeVar

from eventstore.aggregates import Aggregate
from eventstore.errors import ConcurrencyError, StreamNotFound, VersionNotFound
from eventstore.records import EventMetadata, NewEvent, RecordedEvent, StoredSnapshot
from eventstore.registry import EventRegistry
from eventstore.registry import events as default_registry
from eventstore.store import EventStore

A = TypeVar("A", bound=Aggregate)
R = TypeVar("R")


class Repository(Generic[A]):
    """Load and save one aggregate type through an event store."""

    def __init__(
        self,
        aggregate_type: type[A],
        *,
        store: EventStore,
        registry: EventRegistry = default_registry,
    ) -> None:
        self.aggregate_type = aggregate_type
        self.store = store
        self.registry = registry

    @property
    def stream_type(self) -> str:
        return self.aggregate_type.stream_type

    def load(self, aggregate_id: str, *, version: int | None = None) -> A:
        """Rebuild the aggregate from its stream, or as it was at ``version``.

        Starts from the newest snapshot of the current snapshot schema at or below the
        version asked for, then replays the events after it.
        """
        if version is not None and version < 1:
            raise VersionNotFound(
                stream_type=self.stream_type, stream_id=aggregate_id, version=version, current=0
            )
        aggregate: A | None = None
        after = 0
        if self.aggregate_type.snapshot_every:
            snapshot = self.store.latest_snapshot(
                stream_type=self.stream_type,
                stream_id=aggregate_id,
                schema_version=self.aggregate_type.snapshot_schema,
                max_version=version,
            )
            if snapshot is not None:
                aggregate = self.aggregate_type.from_snapshot(
                    aggregate_id, snapshot.version, snapshot.state
                )
                aggregate.version = snapshot.version
                after = snapshot.version
        if aggregate is None:
            aggregate = self.aggregate_type(aggregate_id)
        decode = self.registry.decode
        for _version, event_type, schema_version, data in self._payloads(
            aggregate_id, after, version
        ):
            aggregate.replay(decode(event_type, schema_version, data))
        if aggregate.version == 0:
            raise StreamNotFound(stream_type=self.stream_type, stream_id=aggregate_id)
        if version is not None and aggregate.version < version:
            raise VersionNotFound(
                stream_type=self.stream_type,
                stream_id=aggregate_id,
                version=version,
                current=aggregate.version,
            )
        return aggregate

    def _payloads(
        self, aggregate_id: str, after: int, to_version: int | None
    ) -> list[tuple[int, str, int, dict[str, Any]]]:
        fast = getattr(self.store, "read_stream_payloads", None)
        if fast is not None:
            payloads: list[tuple[int, str, int, dict[str, Any]]] = fast(
                stream_type=self.stream_type,
                stream_id=aggregate_id,
                after_version=after,
                to_version=to_version,
            )
            return payloads
        return [
            (e.version, e.event_type, e.schema_version, e.data)
            for e in self.store.read_stream(
                stream_type=self.stream_type,
                stream_id=aggregate_id,
                after_version=after,
                to_version=to_version,
            )
        ]

    def save(self, aggregate: A, *, metadata: EventMetadata) -> list[RecordedEvent]:
        """Append the aggregate's pending events, expecting the version it was loaded at.

        Raises ``ConcurrencyError`` when someone else saved first; the caller reloads and
        decides again (see ``execute``).
        """
        pending = aggregate.pending_events
        if not pending:
            return []
        meta = metadata.as_dict()
        new_events = []
        for event in pending:
            name, schema_version, data = self.registry.to_stored(event)
            new_events.append(
                NewEvent(event_type=name, data=data, schema_version=schema_version, metadata=meta)
            )
        expected = aggregate.stored_version
        every = self.aggregate_type.snapshot_every
        snapshot_due = (
            every is not None and every > 0 and (expected // every != aggregate.version // every)
        )
        # The append and its snapshot commit together; an append alone is the store's to make
        # atomic.
        with self.store.transaction() if snapshot_due else nullcontext():
            result = self.store.append(
                stream_type=self.stream_type,
                stream_id=aggregate.id,
                expected_version=expected,
                events=new_events,
            )
            if snapshot_due:
                self.store.save_snapshot(
                    StoredSnapshot(
                        stream_type=self.stream_type,
                        stream_id=aggregate.id,
                        version=aggregate.version,
                        schema_version=self.aggregate_type.snapshot_schema,
                        state=aggregate.snapshot_state(),
                    )
                )
        aggregate.mark_saved()
        return list(result.events)

    def execute(
        self,
        aggregate_id: str,
        command: Callable[[A], R],
        *,
        metadata: EventMetadata,
        attempts: int = 5,
    ) -> tuple[A, R, list[RecordedEvent]]:
        """Load, run ``command`` on the aggregate and save; on a conflict, all of it again.

        On a conflict, reload and run the command again: it re-decides on the fresh state, so
        a concurrent write is never lost or overwritten. Either the command still holds and
        appends after it, or it raises the domain error the new state calls for. The load
        needs no transaction around it (the save's expected version is the concurrency
        check, not a lock).
        """
        for attempt in range(1, attempts + 1):
            try:
                aggregate = self.load(aggregate_id)
                outcome = command(aggregate)
                recorded = self.save(aggregate, metadata=metadata)
            except ConcurrencyError:
                if attempt == attempts:
                    raise
                continue
            return aggregate, outcome, recorded
        raise AssertionError("unreachable")  # pragma: no cover
