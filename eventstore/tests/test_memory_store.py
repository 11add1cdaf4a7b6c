"""The in-memory store passes the same contract as the PostgreSQL one, and keeps its own word.

The tests after the contract pin what only this store says or does the way it does: its
refusals' words, what a result carries, that readers get copies, that a rolled-back
transaction leaves nothing behind. No database.
"""

from uuid import uuid4

import pytest

from eventstore.errors import DuplicateEventError
from eventstore.memory import InMemoryEventStore
from eventstore.records import LOG_START, LogPosition, NewEvent, StoredSnapshot
from eventstore.tests.contract import EventStoreContract, StoreFollowing, new


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self) -> InMemoryEventStore:
        return InMemoryEventStore()

    @pytest.fixture
    def store_following(self) -> StoreFollowing:
        return lambda projectors: InMemoryEventStore(inline_projectors=projectors)


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


def test_an_empty_batch_is_refused_by_name(store: InMemoryEventStore) -> None:
    with pytest.raises(ValueError, match=r"^append needs at least one event$"):
        store.append(stream_type="acct", stream_id="a", expected_version=0, events=[])

    assert store.stream_version(stream_type="acct", stream_id="a") == 0


def test_an_append_returns_the_stream_and_every_event_it_recorded(
    store: InMemoryEventStore,
) -> None:
    batch = [new(n=1), new(n=2), new(n=3)]

    result = store.append(stream_type="acct", stream_id="a", expected_version=0, events=batch)

    assert (result.stream_type, result.stream_id) == ("acct", "a")
    assert (result.from_version, result.to_version, result.duplicate) == (1, 3, False)
    assert result.events == tuple(store.read_stream(stream_type="acct", stream_id="a"))


def test_each_recorded_event_carries_its_stream_and_schema_version(
    store: InMemoryEventStore,
) -> None:
    event = NewEvent(event_type="Deposited", data={"cents": 5}, schema_version=3)

    store.append(stream_type="acct", stream_id="a", expected_version=0, events=[event])

    (read,) = store.read_stream(stream_type="acct", stream_id="a")
    assert (read.stream_type, read.stream_id, read.version) == ("acct", "a", 1)
    assert (read.event_type, read.schema_version, read.data) == ("Deposited", 3, {"cents": 5})


def test_a_fresh_store_numbers_its_log_from_one(store: InMemoryEventStore) -> None:
    store.append(stream_type="acct", stream_id="a", expected_version=0, events=[new(), new()])

    # One event per transaction here: the transaction id is the position.
    assert [e.log_position for e in store.read_all()] == [LogPosition(1, 1), LogPosition(2, 2)]


def test_a_stored_batch_appended_again_returns_what_was_stored(
    store: InMemoryEventStore,
) -> None:
    store.append(stream_type="acct", stream_id="a", expected_version=0, events=[new()])
    batch = [new(n=1), new(n=2), new(n=3)]
    first = store.append(stream_type="acct", stream_id="a", expected_version=1, events=batch)

    again = store.append(stream_type="acct", stream_id="a", expected_version=1, events=batch)

    assert (again.stream_type, again.stream_id) == ("acct", "a")
    assert (again.from_version, again.to_version, again.duplicate) == (2, 4, True)
    assert again.events == first.events


def test_event_ids_stored_in_another_stream_are_refused_by_name(
    store: InMemoryEventStore,
) -> None:
    batch = [new(), new()]
    store.append(stream_type="acct", stream_id="a", expected_version=0, events=batch)

    with pytest.raises(DuplicateEventError, match=r"^event ids already stored in another stream$"):
        store.append(stream_type="acct", stream_id="b", expected_version=0, events=batch)

    assert store.stream_version(stream_type="acct", stream_id="b") == 0


def test_a_batch_mixing_stored_and_new_events_is_refused_by_name(
    store: InMemoryEventStore,
) -> None:
    stored = new()
    store.append(stream_type="acct", stream_id="a", expected_version=0, events=[stored])

    with pytest.raises(DuplicateEventError, match=r"^batch mixes stored and new events$"):
        store.append(stream_type="acct", stream_id="a", expected_version=1, events=[stored, new()])


def test_a_stream_never_written_reads_as_empty(store: InMemoryEventStore) -> None:
    assert store.read_stream(stream_type="acct", stream_id="nobody") == []
    assert store.stream_version(stream_type="acct", stream_id="nobody") == 0
    assert store.latest_snapshot(stream_type="acct", stream_id="nobody", schema_version=1) is None


def test_readers_get_copies_the_store_does_not_share(store: InMemoryEventStore) -> None:
    store.append(stream_type="acct", stream_id="a", expected_version=0, events=[new(items=[1, 2])])

    store.read_stream(stream_type="acct", stream_id="a")[0].data["items"].append(3)
    store.read_all()[0].data["items"].append(4)

    assert store.read_stream(stream_type="acct", stream_id="a")[0].data == {"items": [1, 2]}
    assert store.read_all()[0].data == {"items": [1, 2]}


def test_read_all_returns_a_thousand_events_unless_asked_otherwise(
    store: InMemoryEventStore,
) -> None:
    store.append(
        stream_type="acct",
        stream_id="a",
        expected_version=0,
        events=[new() for _ in range(1001)],
    )

    assert [e.version for e in store.read_all()] == list(range(1, 1001))
    assert len(store.read_all(limit=1001)) == 1001


def test_a_rolled_back_transaction_leaves_no_event_id_or_snapshot_behind(
    store: InMemoryEventStore,
) -> None:
    batch = [new(), new()]
    with pytest.raises(RuntimeError), store.transaction():
        store.append(stream_type="acct", stream_id="a", expected_version=0, events=batch)
        store.save_snapshot(StoredSnapshot("acct", "a", 2, 1, {"n": 2}))
        raise RuntimeError("the unit of work failed")

    assert store.read_all(after=LOG_START) == []
    assert store.latest_snapshot(stream_type="acct", stream_id="a", schema_version=1) is None
    # The ids were forgotten too: the same batch is new again, not a duplicate.
    again = store.append(stream_type="acct", stream_id="a", expected_version=0, events=batch)
    assert (again.duplicate, again.to_version) == (False, 2)


def test_a_rolled_back_transaction_restores_streams_and_snapshots_it_found(
    store: InMemoryEventStore,
) -> None:
    store.append(stream_type="acct", stream_id="a", expected_version=0, events=[new()])
    store.save_snapshot(StoredSnapshot("acct", "a", 1, 1, {"n": 1}))

    with pytest.raises(RuntimeError), store.transaction():
        store.append(stream_type="acct", stream_id="a", expected_version=1, events=[new()])
        store.save_snapshot(StoredSnapshot("acct", "a", 2, 1, {"n": 2}))
        raise RuntimeError("the unit of work failed")

    assert [e.version for e in store.read_stream(stream_type="acct", stream_id="a")] == [1]
    kept = store.latest_snapshot(stream_type="acct", stream_id="a", schema_version=1)
    assert kept is not None and kept.state == {"n": 1}


def test_a_transaction_inside_another_commits_or_rolls_back_with_the_outer_one(
    store: InMemoryEventStore,
) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        with store.transaction():
            store.append(stream_type="acct", stream_id="a", expected_version=0, events=[new()])
        raise RuntimeError("the outer unit of work failed")

    assert store.stream_version(stream_type="acct", stream_id="a") == 0
    with store.transaction(), store.transaction():
        store.append(stream_type="acct", stream_id="a", expected_version=0, events=[new()])
    assert store.stream_version(stream_type="acct", stream_id="a") == 1


def test_a_snapshot_at_its_maximum_version_is_usable(store: InMemoryEventStore) -> None:
    for version in (5, 10):
        store.save_snapshot(StoredSnapshot("acct", "a", version, 1, {"v": version}))

    at_ten = store.latest_snapshot(
        stream_type="acct", stream_id="a", schema_version=1, max_version=10
    )

    assert at_ten is not None and at_ten.state == {"v": 10}


def test_snapshots_at_one_version_under_two_schemas_are_both_kept(
    store: InMemoryEventStore,
) -> None:
    store.save_snapshot(StoredSnapshot("acct", "a", 10, 1, {"schema": 1}))
    store.save_snapshot(StoredSnapshot("acct", "a", 10, 2, {"schema": 2}))

    for schema in (1, 2):
        found = store.latest_snapshot(stream_type="acct", stream_id="a", schema_version=schema)
        assert found is not None and found.state == {"schema": schema}


def test_snapshots_belong_to_their_own_stream(store: InMemoryEventStore) -> None:
    sid = str(uuid4())
    store.save_snapshot(StoredSnapshot("acct", sid, 5, 1, {"v": 5}))

    assert store.latest_snapshot(stream_type="acct", stream_id="other", schema_version=1) is None
    assert store.latest_snapshot(stream_type="order", stream_id=sid, schema_version=1) is None
