"""A receiver that is down while orders flow, then back: nothing is lost, each order in order.

A real Celery worker places the orders' sagas, relays the log and sends; the test process only
plays beat (queueing the relay and the due sends) and a real receiver on 127.0.0.1 answers 503
until it is brought back, after which it answers 200.
"""

from __future__ import annotations

import json
from collections import defaultdict
from uuid import UUID

import pytest

from eventstore.models import StoredEvent
from orders.models import OrderSummary
from orders.services import OrderLineRequest, order_place
from tests.factories import make_product
from tests.support.worker import wait_for
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services import endpoint_create
from webhooks.tasks import dispatch_due, relay
from webhooks.tests.receiver import Receiver

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DOWN_ORDERS = 4
UP_ORDERS = 3
#: Failed answers seen before the receiver comes back: every delivery first of its order has
#: been refused, and the endpoint stays well below WEBHOOK_DISABLE_AFTER_FAILURES.
FAILURES_BEFORE_BACK = 2 * DOWN_ORDERS


def _place(n: int) -> list[UUID]:
    return [
        order_place(
            customer_id=f"c-down-{i}",
            lines=[OrderLineRequest("WH-DOWN", 1)],
            payment_token="tok_visa",
            actor="user:1",
        ).order_id
        for i in range(n)
    ]


def _beat() -> None:
    relay.delay()
    dispatch_due.delay()


def _all_confirmed(order_ids: list[UUID]) -> bool:
    _beat()
    statuses = OrderSummary.objects.filter(id__in=order_ids).values_list("status", flat=True)
    return len(statuses) == len(order_ids) and set(statuses) == {"CONFIRMED"}


def test_a_receiver_down_while_orders_flow_gets_every_event_in_order_once_back(
    live_worker, receiver: Receiver
) -> None:
    make_product("WH-DOWN", stock=100)
    endpoint = endpoint_create(
        url=receiver.url, event_types=["order.created", "order.confirmed", "order.cancelled"]
    ).endpoint
    receiver.default_status = 503  # down

    down = _place(DOWN_ORDERS)

    def refused_while_down() -> bool:
        _beat()
        with receiver.lock:
            failures = sum(1 for r in receiver.received if r.status == 503)
        return failures >= FAILURES_BEFORE_BACK

    wait_for(lambda: _all_confirmed(down), timeout=120, interval=0.3, message="orders confirmed")
    wait_for(refused_while_down, timeout=120, interval=0.3, message="the receiver refusing")
    with receiver.lock:
        receiver.default_status = 200  # back
    up = _place(UP_ORDERS)
    orders = down + up
    wait_for(lambda: _all_confirmed(orders), timeout=120, interval=0.3, message="all confirmed")

    streams = [str(o) for o in orders]
    expected = {
        str(event_id): (stream_id, version)
        for event_id, stream_id, version in StoredEvent.objects.filter(
            stream_id__in=streams, event_type__in=["OrderCreated", "OrderConfirmed"]
        ).values_list("event_id", "stream_id", "version")
    }
    assert len(expected) == 2 * len(orders)

    def every_event_accepted() -> bool:
        _beat()
        with receiver.lock:
            accepted = {r.headers["webhook-id"] for r in receiver.received if r.status == 200}
        return accepted >= expected.keys()

    wait_for(every_event_accepted, timeout=180, interval=0.5, message="every event delivered")

    with receiver.lock:
        received = list(receiver.received)
    assert any(r.status == 503 for r in received)  # the receiver really was down
    # Nothing unknown, nothing accepted twice (a retry follows a refusal, never a success).
    accepted_ids = [r.headers["webhook-id"] for r in received if r.status == 200]
    assert sorted(accepted_ids) == sorted(expected)
    # In order per order: no event of an order is sent before the earlier ones were accepted.
    per_order: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in received:
        stream_id, version = expected[r.headers["webhook-id"]]
        assert json.loads(r.body)["data"]["order"]["id"] == stream_id
        per_order[stream_id].append((version, r.status))
    for stream_id, attempts in per_order.items():
        versions = [v for v, _ in attempts]
        assert versions == sorted(versions), (stream_id, attempts)
        accepted_versions = [v for v, status in attempts if status == 200]
        assert accepted_versions == sorted(set(versions)), (stream_id, attempts)
    assert set(
        WebhookDelivery.objects.filter(endpoint=endpoint).values_list("status", flat=True)
    ) == {DeliveryStatus.SUCCEEDED}
