"""The base of event-sourced aggregates.

An aggregate's state changes only by applying events: a command method checks the
invariants, then records a new event, which is applied at once and kept as pending until
the repository stores it. Loading replays stored events through the same ``apply``.

Plain Python: no Django import.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from eventstore.registry import DomainEvent


class Aggregate:
    """Hold an aggregate's id, version and the events recorded since it was loaded.

    Subclasses set ``stream_type``, implement ``apply``, and may ask for a snapshot every
    ``snapshot_every`` events by implementing ``snapshot_state`` and ``from_snapshot``.
    Raise ``snapshot_schema`` whenever the snapshot's shape changes: snapshots written under
    another schema are ignored and the stream is replayed instead.
    """

    stream_type: ClassVar[str] = ""
    snapshot_every: ClassVar[int | None] = None
    snapshot_schema: ClassVar[int] = 1

    def __init__(self, aggregate_id: str) -> None:
        self.id = aggregate_id
        self.version = 0
        self._pending: list[DomainEvent] = []

    def apply(self, event: DomainEvent) -> None:
        """Change the state for one event. Must not fail for an event already stored."""
        raise NotImplementedError

    def _record(self, event: DomainEvent) -> None:
        """Apply a new event and keep it to be stored."""
        self.apply(event)
        self.version += 1
        self._pending.append(event)

    def replay(self, event: DomainEvent) -> None:
        """Apply an event read from the store."""
        self.apply(event)
        self.version += 1

    @property
    def pending_events(self) -> tuple[DomainEvent, ...]:
        return tuple(self._pending)

    @property
    def stored_version(self) -> int:
        """Return the version the store holds: what a save expects to find."""
        return self.version - len(self._pending)

    def mark_saved(self) -> None:
        self._pending.clear()

    def snapshot_state(self) -> dict[str, Any]:
        """Return the state as JSON data for a snapshot."""
        raise NotImplementedError(f"{type(self).__name__} does not take snapshots")

    @classmethod
    def from_snapshot(cls, aggregate_id: str, version: int, state: dict[str, Any]) -> Self:
        """Rebuild an aggregate from a snapshot's state."""
        raise NotImplementedError(f"{cls.__name__} does not take snapshots")
