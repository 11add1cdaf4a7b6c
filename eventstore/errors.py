"""Errors raised by the event store and its repository."""

from __future__ import annotations


class EventStoreError(Exception):
    """Base class of every event-store error."""


class ConcurrencyError(EventStoreError):
    """Refuse an append whose expected version is not the stream's current version."""

    def __init__(self, *, stream_type: str, stream_id: str, expected: int, actual: int) -> None:
        self.stream_type = stream_type
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"concurrency conflict on stream {stream_type}/{stream_id}: "
            f"expected version {expected}, actual version {actual}"
        )


class DuplicateEventError(EventStoreError):
    """Refuse a batch that mixes events already stored with new ones, or reuses an id elsewhere."""


class StreamNotFound(EventStoreError):
    """Say that a stream has no events."""

    def __init__(self, *, stream_type: str, stream_id: str) -> None:
        self.stream_type = stream_type
        self.stream_id = stream_id
        super().__init__(f"stream {stream_type}/{stream_id} has no events")


class VersionNotFound(EventStoreError):
    """Say that a stream has no event at the version asked for."""

    def __init__(self, *, stream_type: str, stream_id: str, version: int, current: int) -> None:
        self.stream_type = stream_type
        self.stream_id = stream_id
        self.version = version
        self.current = current
        super().__init__(
            f"stream {stream_type}/{stream_id} has versions 1..{current}, not {version}"
        )


class UnknownEventType(EventStoreError):
    """Say that no event class is registered under a stored event's type."""


class UpcastError(EventStoreError):
    """Say that a stored event cannot be brought to its current schema."""
