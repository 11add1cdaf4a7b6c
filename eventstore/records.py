"""The value types that cross the event store's boundary.

Plain Python with no Django import, so domain code and the in-memory store use them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4


@dataclass(frozen=True)
class EventMetadata:
    """Say who caused an event and within which flow.

    ``correlation_id`` ties together everything one request or saga did; ``causation_id``
    names the message or step that caused this event; ``actor`` is who acted ("user:7",
    "saga:<id>", "system").
    """

    correlation_id: str | None = None
    causation_id: str | None = None
    actor: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {
            key: value
            for key, value in (
                ("correlation_id", self.correlation_id),
                ("causation_id", self.causation_id),
                ("actor", self.actor),
            )
            if value is not None
        }


@dataclass(frozen=True)
class NewEvent:
    """An event about to be appended: its type, schema version and JSON data."""

    event_type: str
    data: Mapping[str, Any]
    schema_version: int = 1
    metadata: Mapping[str, Any] = field(default_factory=dict)
    event_id: UUID = field(default_factory=uuid4)


@dataclass(frozen=True)
class RecordedEvent:
    """An event as stored: its place in its stream and in the global log."""

    position: int
    transaction_id: int
    stream_type: str
    stream_id: str
    version: int
    event_id: UUID
    event_type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime

    @property
    def log_position(self) -> LogPosition:
        return LogPosition(self.transaction_id, self.position)


@dataclass(frozen=True, order=True)
class LogPosition:
    """A point in the global log, ordered by committing transaction, then position.

    Positions come from a sequence, so a transaction that commits late can hold a smaller
    position than events already visible. Readers therefore walk the log in (transaction id,
    position) order and only up to the oldest transaction still running; see
    ``PostgresEventStore.read_all``.
    """

    transaction_id: int = 0
    position: int = 0


LOG_START = LogPosition(0, 0)


@dataclass(frozen=True)
class AppendResult:
    """What an append wrote: the stream's versions, or that the batch was already stored."""

    stream_type: str
    stream_id: str
    from_version: int
    to_version: int
    events: tuple[RecordedEvent, ...]
    duplicate: bool = False


@dataclass(frozen=True)
class StoredSnapshot:
    """An aggregate's state at a version, written by the repository every N events."""

    stream_type: str
    stream_id: str
    version: int
    schema_version: int
    state: dict[str, Any]
