"""Webhooks through a killed worker and a restarted Redis: every event is delivered at least once.

The lab's own web, worker, beat, PostgreSQL and Redis run the back office; a real receiver on
127.0.0.1 in the test process takes the deliveries. Orders are placed before, between and
after the faults; afterwards every order event in the log must have reached the receiver
(a 200 answered), and no event of an order was sent before the earlier ones had been taken.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator

import pytest

from lab.servers import Lab, LabClient
from tests.support.worker import wait_for
from webhooks.tests.receiver import Receiver, serve

pytestmark = [pytest.mark.worker, pytest.mark.slow]

ORDER_EVENTS = ["OrderCreated", "OrderConfirmed", "OrderCancelled"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve()


def _place(client: LabClient, count: int) -> list[str]:
    return [client.place([("FLT-1", 1)], "tok_visa")[0] for _ in range(count)]


def _accepted(receiver: Receiver) -> set[str]:
    with receiver.lock:
        return {r.headers["webhook-id"] for r in receiver.received if r.status == 200}


def test_webhooks_survive_a_killed_worker_and_a_restarted_redis(
    lab: Lab, receiver: Receiver
) -> None:
    client = lab.client()
    registered = client.post(
        "/api/webhooks/",
        {
            "url": receiver.url,
            "event_types": ["order.created", "order.confirmed", "order.cancelled"],
        },
    )
    assert registered.status_code == 201, registered.text
    endpoint_id = registered.json()["id"]
    try:
        orders = _place(client, 6)
        wait_for(lambda: _accepted(receiver), timeout=60, message="a first delivery")
        lab.kill_worker()  # whatever it held (a send, a relay batch) is lost with it
        orders += _place(client, 4)
        lab.worker.start()
        # Without persistence every queued message goes: only beat's next passes bring them.
        lab.restart_redis(persistent=False, down_for=1.5)
        orders += _place(client, 4)
        lab.wait_settled(timeout=180)

        events = lab.sql(
            "SELECT event_id::text, stream_id, version FROM eventstore_event "
            "WHERE stream_id = ANY(%s) AND event_type = ANY(%s)",
            [orders, ORDER_EVENTS],
        )
        expected = {event_id: (stream_id, version) for event_id, stream_id, version in events}
        assert {stream_id for stream_id, _ in expected.values()} == set(orders)

        wait_for(
            lambda: _accepted(receiver) >= expected.keys(),
            # A send lost with the worker is taken over once its lease (60 s) runs out.
            timeout=240,
            interval=0.5,
            message=lambda: f"{len(expected.keys() - _accepted(receiver))} events undelivered",
        )
        with receiver.lock:
            received = list(receiver.received)
        # In order per order: each event's first acceptance after its predecessors'.
        first_accepted: dict[str, list[int]] = defaultdict(list)
        seen: set[str] = set()
        for request in received:
            event_id = request.headers["webhook-id"]
            if request.status != 200 or event_id in seen or event_id not in expected:
                continue
            seen.add(event_id)
            stream_id, version = expected[event_id]
            assert json.loads(request.body)["data"]["order"]["id"] == stream_id
            first_accepted[stream_id].append(version)
        for stream_id, versions in first_accepted.items():
            assert versions == sorted(versions), (stream_id, versions)
    finally:
        client.session.delete(f"{lab.base_url}/api/webhooks/{endpoint_id}/", timeout=30)
