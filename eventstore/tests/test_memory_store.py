"""The in-memory store passes the same contract as the PostgreSQL one."""

import pytest

from eventstore.memory import InMemoryEventStore
from eventstore.tests.contract import EventStoreContract


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self) -> InMemoryEventStore:
        return InMemoryEventStore()
