"""The contract every event store keeps (PostgreSQL in production, memory in unit tests).

``eventstore.tests.contract.EventStoreContract`` is the test class any implementation must
pass, the way Django's session backends share one test mixin.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from eventstore.records import (
    LOG_START,
    AppendResult,
    LogPosition,
    NewEvent,
    RecordedEvent,
    StoredSnapshot,
)


class InlineProjector(Protocol):
    """Update a read model in the transaction of every append of the events it follows."""

    @property
    def event_types(self) -> frozenset[str]: ...

    def handle(self, event: RecordedEvent) -> None: ...


class EventStore(Protocol):
    def append(
        self,
        *,
        stream_type: str,
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
    ) -> AppendResult:
        """Append a batch atomically if the stream is at ``expected_version``.

        Raise ``ConcurrencyError`` otherwise. A batch whose events are all already stored
        (same ids, same stream) is a no-op returning them with ``duplicate=True``.
        """
        ...

    def read_stream(
        self,
        *,
        stream_type: str,
        stream_id: str,
        after_version: int = 0,
        to_version: int | None = None,
    ) -> list[RecordedEvent]:
        """Return a stream's events after ``after_version`` up to ``to_version``, in order."""
        ...

    def stream_version(self, *, stream_type: str, stream_id: str) -> int:
        """Return the stream's current version (0 for a stream with no events)."""
        ...

    def read_all(
        self,
        *,
        after: LogPosition = LOG_START,
        limit: int = 1000,
        event_types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        """Return committed events after ``after`` in log order, never skipping a late commit."""
        ...

    def latest_snapshot(
        self,
        *,
        stream_type: str,
        stream_id: str,
        schema_version: int,
        max_version: int | None = None,
    ) -> StoredSnapshot | None:
        """Return the newest snapshot of that schema at or below ``max_version``."""
        ...

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        """Store a snapshot (a repeat of the same version is a no-op)."""
        ...

    def transaction(self) -> AbstractContextManager[object]:
        """Return a context in which appends and snapshots commit or roll back together."""
        ...
