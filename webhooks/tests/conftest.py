from webhooks.tests.receiver import receiver_fixture as receiver
from webhooks.tests.receiver import serve

__all__ = ["other_receiver", "receiver"]

import pytest


@pytest.fixture
def other_receiver():
    yield from serve()
