"""Acceptance, black-box: an endpoint registered over the API receives an order's events,
signed, retried after a failure, in order, with a real Celery worker doing the relaying and
the sending (the test process only plays beat, queueing the relay and the due sends).
"""

from __future__ import annotations

import json

import pytest
import requests
from knox.models import AuthToken
from standardwebhooks.webhooks import Webhook

from tests.factories import make_product, make_user
from tests.support.worker import wait_for
from webhooks.tasks import dispatch_due, relay
from webhooks.tests.receiver import Receiver

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_an_api_registered_endpoint_receives_signed_order_events_in_order(
    live_server, live_worker, receiver: Receiver, settings
) -> None:
    make_product("WH-E2E", stock=10)
    staff = make_user(staff=True, perms=("webhooks.manage_webhooks",))
    http = requests.Session()
    http.headers["Authorization"] = f"Token {AuthToken.objects.create(user=staff)[1]}"
    base = live_server.url
    registered = http.post(
        f"{base}/api/webhooks/",
        json={"url": receiver.url, "event_types": ["order.created", "order.confirmed"]},
        timeout=30,
    )
    assert registered.status_code == 201, registered.text
    secret = registered.json()["secret"]
    receiver.answers = [503]  # the first try fails

    placed = http.post(
        f"{base}/api/orders/",
        json={
            "customer_id": "c-e2e",
            "items": [{"sku": "WH-E2E", "quantity": 1}],
            "payment_token": "tok_visa",
        },
        timeout=30,
    )
    assert placed.status_code == 202, placed.text

    def both_delivered() -> bool:
        relay.delay()
        dispatch_due.delay()
        types = [json.loads(r.body)["type"] for r in receiver.received]
        return types[-2:] == ["order.created", "order.confirmed"] and len(types) == 3

    wait_for(both_delivered, timeout=90, interval=0.5, message="both events delivered")
    first, retried, _confirmed = receiver.received
    assert first.headers["webhook-id"] == retried.headers["webhook-id"]
    for request in receiver.received:
        Webhook(secret).verify(request.body, request.headers)
    endpoint_id = registered.json()["id"]
    log = http.get(f"{base}/api/webhooks/{endpoint_id}/deliveries/", timeout=30).json()
    attempts = {d["event_type"]: d["attempts"] for d in log["results"]}
    assert attempts == {"order.created": 2, "order.confirmed": 1}
