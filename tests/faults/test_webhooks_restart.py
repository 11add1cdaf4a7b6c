"""Webhooks through restarts and several workers: every event delivered, in order per order.

The lab's own web, worker, beat, PostgreSQL and Redis run the back office; a real receiver on
127.0.0.1 in the test process takes the deliveries. Orders are placed before, between and
after the faults (or while they happen); afterwards every order event in the log must have
reached the receiver (a 200 answered), signed, each copy of a delivery carrying the event's id
as its ``webhook-id`` (the only duplicates the Standard Webhooks spec allows), and no event of
an order was sent before the earlier ones had been taken.
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from lab.servers import Lab, LabClient, LabProcess
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


def _register(client: LabClient, receiver: Receiver) -> tuple[str, str]:
    registered = client.post(
        "/api/webhooks/",
        {
            "url": receiver.url,
            "event_types": ["order.created", "order.confirmed", "order.cancelled"],
        },
    )
    assert registered.status_code == 201, registered.text
    return registered.json()["id"], registered.json()["secret"]


def _assert_each_event_delivered_in_order(
    lab: Lab, receiver: Receiver, orders: list[str], secret: str
) -> dict[str, int]:
    """Wait until every order event reached the receiver; check signatures, ids and order.

    Return how many times each event was sent with a 200 answer (more than once only as a
    re-send of the same delivery, which the checks above make sure of).
    """
    events = lab.sql(
        "SELECT event_id::text, stream_id, version FROM eventstore_event "
        "WHERE stream_id = ANY(%s) AND event_type = ANY(%s)",
        [orders, ORDER_EVENTS],
    )
    expected = {event_id: (stream_id, version) for event_id, stream_id, version in events}
    assert {stream_id for stream_id, _ in expected.values()} == set(orders)

    wait_for(
        lambda: _accepted(receiver) >= expected.keys(),
        # A send lost with a worker (or its outcome with the database) is taken over once
        # its lease (60 s) runs out.
        timeout=240,
        interval=0.5,
        message=lambda: f"{len(expected.keys() - _accepted(receiver))} events undelivered",
    )
    with receiver.lock:
        received = list(receiver.received)
    verifier = Webhook(secret)
    first_accepted: dict[str, list[int]] = defaultdict(list)
    copies: dict[str, int] = defaultdict(int)
    for request in received:
        event_id = request.headers["webhook-id"]
        if event_id not in expected:
            continue
        # Every copy is signed, and is the same event under the same webhook-id.
        payload: Any = verifier.verify(request.body, request.headers)
        assert payload["id"] == event_id
        stream_id, version = expected[event_id]
        assert payload["data"]["order"]["id"] == stream_id
        if request.status != 200:
            continue
        copies[event_id] += 1
        if copies[event_id] == 1:
            first_accepted[stream_id].append(version)
    # In order per order: each event's first acceptance after its predecessors'.
    for stream_id, versions in first_accepted.items():
        assert versions == sorted(versions), (stream_id, versions)
    return copies


class _Placer:
    """Place orders one after another in a thread until stopped, through any outage."""

    def __init__(self, client: LabClient, tokens: tuple[str, ...] = ("tok_visa",)) -> None:
        self.client, self.tokens = client, tokens
        self.orders: list[str] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            try:
                # place() retries with its Idempotency-Key until the server answers.
                order, _ = self.client.place([("FLT-1", 1)], self.tokens[n % len(self.tokens)])
            except BaseException as exc:  # reported by stop(), not lost in the thread
                self.errors.append(exc)
                return
            self.orders.append(order)
            n += 1

    def __enter__(self) -> _Placer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def placed_at_least(self, count: int) -> None:
        wait_for(
            lambda: len(self.orders) >= count or bool(self.errors),
            timeout=120,
            message=f"{count} orders placed",
        )
        assert not self.errors, self.errors


def test_webhooks_survive_a_killed_worker_and_a_restarted_redis(
    lab: Lab, receiver: Receiver
) -> None:
    client = lab.client()
    endpoint_id, secret = _register(client, receiver)
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

        _assert_each_event_delivered_in_order(lab, receiver, orders, secret)
    finally:
        client.session.delete(f"{lab.base_url}/api/webhooks/{endpoint_id}/", timeout=30)


def test_webhooks_survive_a_killed_web_server_and_a_crashed_postgresql(
    lab: Lab, receiver: Receiver
) -> None:
    client = lab.client()
    endpoint_id, secret = _register(client, receiver)
    try:
        with _Placer(lab.client()) as placer:
            placer.placed_at_least(4)
            wait_for(lambda: _accepted(receiver), timeout=60, message="a first delivery")
            # Mid-stream: the placer's request in flight is cut off and retried with its key.
            lab.web.kill()
            lab.web.start()
            placer.placed_at_least(len(placer.orders) + 3)
            # The lab's private PostgreSQL, crashed (no checkpoint) under web and worker.
            lab.restart_postgres(down_for=2.0)
            placer.placed_at_least(len(placer.orders) + 3)
        assert not placer.errors, placer.errors
        lab.wait_settled(timeout=180)
        _assert_each_event_delivered_in_order(lab, receiver, placer.orders, secret)
    finally:
        client.session.delete(f"{lab.base_url}/api/webhooks/{endpoint_id}/", timeout=30)


def test_webhooks_keep_order_per_order_with_two_worker_processes(
    lab: Lab, receiver: Receiver
) -> None:
    # A second worker beside the lab's (prefork, concurrency 2 each): four pool processes
    # take the relay, the dispatch and the sends, and a slow receiver widens every race.
    command = [
        f"--hostname=lab-second-{uuid.uuid4().hex[:6]}@%h"
        if part.startswith("--hostname=")
        else part
        for part in lab.worker.command
    ]
    second = LabProcess(
        "worker-2", command, lab.worker.env, lab.root / "worker-2.log", ready_text=" ready."
    )
    receiver.delay = 0.05
    # The first sends fail: those orders' later events are due before their first is taken
    # (retried some seconds later), so only the per-order gate keeps them in order.
    receiver.answers = [503] * 12
    client = lab.client()
    endpoint_id, secret = _register(client, receiver)
    second.start()
    try:
        placers = [
            _Placer(lab.client(), ("tok_visa", "tok_chargeDeclined")),
            _Placer(lab.client(), ("tok_chargeDeclined", "tok_visa")),
        ]
        for placer in placers:
            placer.__enter__()
        try:
            for placer in placers:
                placer.placed_at_least(8)
        finally:
            for placer in placers:
                placer.__exit__()
        orders = [order for placer in placers for order in placer.orders]
        lab.wait_settled(timeout=180)
        copies = _assert_each_event_delivered_in_order(lab, receiver, orders, secret)
        with receiver.lock:
            overlapping = list(receiver.overlapping)
        # No event was sent twice at once, nor two events of one order at once.
        assert overlapping == []
        # Nothing was lost or restarted here, so no delivery had to be sent twice.
        assert {event: n for event, n in copies.items() if n > 1} == {}
        statuses = {
            s
            for (s,) in lab.sql(
                "SELECT status FROM orders_order WHERE id::text = ANY(%s)", [orders]
            )
        }
        assert statuses == {"CONFIRMED", "CANCELLED"}
    finally:
        second.stop()
        client.session.delete(f"{lab.base_url}/api/webhooks/{endpoint_id}/", timeout=30)
