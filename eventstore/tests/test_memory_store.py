"""The in-memory store passes the same contract as the PostgreSQL one."""

import pytest

from eventstore.memory import InMemoryEventStore
from eventstore.records import Rider
from eventstore.tests.contract import EventStoreContract, new


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self) -> InMemoryEventStore:
        return InMemoryEventStore()


def test_the_memory_store_refuses_riders_and_stores_nothing() -> None:
    store = InMemoryEventStore()
    rider = Rider(sql="x AS (SELECT 1)", params={}, counted="x")
    with pytest.raises(NotImplementedError, match="riders"):
        store.append(
            stream_type="a", stream_id="s", expected_version=0, events=[new()], riders=[rider]
        )
    assert store.stream_version(stream_type="a", stream_id="s") == 0
