"""The contract every event store must pass, run against each implementation.

Subclasses provide a ``store`` fixture, and ``store_following``: a function that builds the
same store with inline projectors; see test_postgres_store.py and test_memory_store.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from uuid import uuid4

import pytest

from eventstore.errors import ConcurrencyError, DuplicateEventError
from eventstore.records import LOG_START, EventMetadata, NewEvent, RecordedEvent, StoredSnapshot
from eventstore.store import EventStore, InlineProjector
from eventstore.tests.horizon import eventually


def new(event_type: str = "Happened", **data: object) -> NewEvent:
    meta = EventMetadata(correlation_id="corr-1", causation_id="cause-1", actor="user:1")
    return NewEvent(event_type=event_type, data=data or {"n": 1}, metadata=meta.as_dict())


def stream() -> str:
    return str(uuid4())


@dataclass
class Recorder:
    """An inline projector that keeps what it was handed (or refuses it, when ``fail``)."""

    event_types: frozenset[str]
    fail: bool = False
    seen: list[RecordedEvent] = field(default_factory=list)

    def handle(self, event: RecordedEvent) -> None:
        if self.fail:
            raise RuntimeError("the read model refused the event")
        self.seen.append(event)


StoreFollowing = Callable[[Callable[[], Iterable[InlineProjector]]], EventStore]


class EventStoreContract:
    """Tests any EventStore must pass."""

    def test_inline_projectors_get_each_appended_event_they_follow(
        self, store_following: StoreFollowing
    ) -> None:
        opened = Recorder(frozenset({"Opened"}))
        every = Recorder(frozenset({"Opened", "Deposited"}))
        store = store_following(lambda: [opened, every])
        sid = stream()

        result = store.append(
            stream_type="acct",
            stream_id=sid,
            expected_version=0,
            events=[new("Opened"), new("Deposited")],
        )

        assert opened.seen == [result.events[0]]
        assert every.seen == list(result.events)
        assert [e.version for e in every.seen] == [1, 2]

    def test_a_failing_inline_projector_takes_the_append_with_it(
        self, store_following: StoreFollowing
    ) -> None:
        store = store_following(lambda: [Recorder(frozenset({"Opened"}), fail=True)])
        sid = stream()

        with pytest.raises(RuntimeError, match="refused"):
            store.append(
                stream_type="acct", stream_id=sid, expected_version=0, events=[new("Opened")]
            )

        assert store.stream_version(stream_type="acct", stream_id=sid) == 0
        assert store.read_stream(stream_type="acct", stream_id=sid) == []

    def test_append_to_new_stream_and_read_back(self, store: EventStore) -> None:
        sid = stream()
        batch = [new("Opened", owner="ann"), new("Deposited", amount="10.00")]
        result = store.append(stream_type="acct", stream_id=sid, expected_version=0, events=batch)

        assert (result.stream_type, result.stream_id) == ("acct", sid)
        assert (result.from_version, result.to_version, result.duplicate) == (1, 2, False)
        read = store.read_stream(stream_type="acct", stream_id=sid)
        assert [e.version for e in read] == [1, 2]
        assert [e.event_type for e in read] == ["Opened", "Deposited"]
        assert [e.data for e in read] == [{"owner": "ann"}, {"amount": "10.00"}]
        assert [e.event_id for e in read] == [b.event_id for b in batch]
        assert read[0].metadata == {
            "correlation_id": "corr-1",
            "causation_id": "cause-1",
            "actor": "user:1",
        }
        assert read[0].position < read[1].position
        assert read[0].recorded_at.tzinfo is not None
        assert store.stream_version(stream_type="acct", stream_id=sid) == 2

    def test_append_at_the_current_version_extends_the_stream(self, store: EventStore) -> None:
        sid = stream()
        store.append(stream_type="acct", stream_id=sid, expected_version=0, events=[new()])
        store.append(stream_type="acct", stream_id=sid, expected_version=1, events=[new(), new()])

        assert [e.version for e in store.read_stream(stream_type="acct", stream_id=sid)] == [
            1,
            2,
            3,
        ]

    def test_stale_expected_version_is_a_conflict_naming_stream_and_versions(
        self, store: EventStore
    ) -> None:
        sid = stream()
        store.append(stream_type="acct", stream_id=sid, expected_version=0, events=[new(), new()])

        with pytest.raises(ConcurrencyError) as caught:
            store.append(stream_type="acct", stream_id=sid, expected_version=1, events=[new()])

        err = caught.value
        assert (err.stream_type, err.stream_id, err.expected, err.actual) == ("acct", sid, 1, 2)
        assert (
            sid in str(err) and "expected version 1" in str(err) and "actual version 2" in str(err)
        )
        assert store.stream_version(stream_type="acct", stream_id=sid) == 2

    def test_expected_version_ahead_of_the_stream_is_a_conflict_not_a_gap(
        self, store: EventStore
    ) -> None:
        sid = stream()
        store.append(stream_type="acct", stream_id=sid, expected_version=0, events=[new()])

        with pytest.raises(ConcurrencyError) as caught:
            store.append(stream_type="acct", stream_id=sid, expected_version=5, events=[new()])

        assert caught.value.actual == 1
        assert [e.version for e in store.read_stream(stream_type="acct", stream_id=sid)] == [1]

    def test_new_stream_expected_at_version_zero_only(self, store: EventStore) -> None:
        sid = stream()
        with pytest.raises(ConcurrencyError):
            store.append(stream_type="acct", stream_id=sid, expected_version=1, events=[new()])
        assert store.stream_version(stream_type="acct", stream_id=sid) == 0

    def test_streams_of_different_types_are_separate(self, store: EventStore) -> None:
        sid = stream()
        store.append(stream_type="acct", stream_id=sid, expected_version=0, events=[new()])
        store.append(stream_type="order", stream_id=sid, expected_version=0, events=[new()])

        assert store.stream_version(stream_type="acct", stream_id=sid) == 1
        assert store.stream_version(stream_type="order", stream_id=sid) == 1

    def test_reappending_a_stored_batch_is_a_no_op(self, store: EventStore) -> None:
        sid = stream()
        batch = [new(), new(), new()]
        first = store.append(stream_type="acct", stream_id=sid, expected_version=0, events=batch)
        store.append(stream_type="acct", stream_id=sid, expected_version=3, events=[new()])

        again = store.append(stream_type="acct", stream_id=sid, expected_version=0, events=batch)

        assert again.duplicate is True
        assert (again.stream_type, again.stream_id, again.from_version, again.to_version) == (
            "acct",
            sid,
            1,
            3,
        )
        assert [e.position for e in again.events] == [e.position for e in first.events]
        assert store.stream_version(stream_type="acct", stream_id=sid) == 4

    def test_batch_mixing_stored_and_new_events_is_refused_whole(self, store: EventStore) -> None:
        sid = stream()
        stored = new()
        store.append(stream_type="acct", stream_id=sid, expected_version=0, events=[stored])

        with pytest.raises((DuplicateEventError, ConcurrencyError)):
            store.append(
                stream_type="acct", stream_id=sid, expected_version=1, events=[stored, new()]
            )

        assert store.stream_version(stream_type="acct", stream_id=sid) == 1

    def test_a_conflicting_batch_writes_nothing(self, store: EventStore) -> None:
        sid = stream()
        store.append(stream_type="acct", stream_id=sid, expected_version=0, events=[new()])
        store.append(stream_type="acct", stream_id=sid, expected_version=1, events=[new()])

        with pytest.raises(ConcurrencyError):
            store.append(
                stream_type="acct", stream_id=sid, expected_version=1, events=[new(), new(), new()]
            )

        assert [e.version for e in store.read_stream(stream_type="acct", stream_id=sid)] == [1, 2]

    def test_transaction_rolls_back_every_append_in_it(self, store: EventStore) -> None:
        first, second = stream(), stream()

        with pytest.raises(RuntimeError), store.transaction():
            store.append(stream_type="acct", stream_id=first, expected_version=0, events=[new()])
            store.append(stream_type="acct", stream_id=second, expected_version=0, events=[new()])
            raise RuntimeError("the unit of work failed")

        assert store.stream_version(stream_type="acct", stream_id=first) == 0
        assert store.stream_version(stream_type="acct", stream_id=second) == 0

    def test_read_stream_range(self, store: EventStore) -> None:
        sid = stream()
        store.append(
            stream_type="acct",
            stream_id=sid,
            expected_version=0,
            events=[new(n=i) for i in range(5)],
        )

        part = store.read_stream(stream_type="acct", stream_id=sid, after_version=1, to_version=3)

        assert [e.version for e in part] == [2, 3]
        assert [e.data["n"] for e in part] == [1, 2]

    def test_read_all_walks_the_log_in_order_from_a_checkpoint(self, store: EventStore) -> None:
        a, b = stream(), stream()
        store.append(stream_type="acct", stream_id=a, expected_version=0, events=[new("X")])
        store.append(stream_type="acct", stream_id=b, expected_version=0, events=[new("Y")])
        store.append(stream_type="acct", stream_id=a, expected_version=1, events=[new("Z")])

        # A store's log may show a commit only once every older transaction has ended.
        everything = eventually(
            lambda: [e for e in store.read_all(after=LOG_START) if e.stream_id in (a, b)],
            lambda events: len(events) == 3,
        )
        assert [(e.stream_id, e.event_type) for e in everything] == [(a, "X"), (b, "Y"), (a, "Z")]
        assert [e.log_position for e in everything] == sorted(e.log_position for e in everything)

        rest = [
            e for e in store.read_all(after=everything[0].log_position) if e.stream_id in (a, b)
        ]
        assert [e.event_type for e in rest] == ["Y", "Z"]

        only_z = [
            e for e in store.read_all(after=LOG_START, event_types={"Z"}) if e.stream_id in (a, b)
        ]
        assert [e.event_type for e in only_z] == ["Z"]

    def test_read_all_pages_with_a_limit(self, store: EventStore) -> None:
        sid = stream()
        store.append(
            stream_type="page",
            stream_id=sid,
            expected_version=0,
            events=[new("P") for _ in range(7)],
        )

        def walk() -> list[RecordedEvent]:
            seen: list[RecordedEvent] = []
            position = LOG_START
            while True:
                page = store.read_all(after=position, limit=3, event_types={"P"})
                if not page:
                    return seen
                seen.extend(e for e in page if e.stream_id == sid)
                position = page[-1].log_position

        seen = eventually(walk, lambda events: len(events) == 7)
        assert [e.version for e in seen] == list(range(1, 8))

    def test_snapshots_latest_usable_by_schema_and_version(self, store: EventStore) -> None:
        sid = stream()
        for version in (5, 10):
            store.save_snapshot(StoredSnapshot("acct", sid, version, 1, {"v": version}))
        store.save_snapshot(StoredSnapshot("acct", sid, 15, 2, {"v": 15}))
        store.save_snapshot(StoredSnapshot("acct", sid, 10, 1, {"v": "repeat ignored"}))

        latest = store.latest_snapshot(stream_type="acct", stream_id=sid, schema_version=1)
        assert latest == StoredSnapshot("acct", sid, 10, 1, {"v": 10})
        below = store.latest_snapshot(
            stream_type="acct", stream_id=sid, schema_version=1, max_version=7
        )
        assert below == StoredSnapshot("acct", sid, 5, 1, {"v": 5})
        assert store.latest_snapshot(stream_type="acct", stream_id=sid, schema_version=3) is None
