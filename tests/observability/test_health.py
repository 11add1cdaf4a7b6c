"""/api/health/ reports when workers and beat were last seen, and never fails on them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from infrastructure import heartbeats
from lab.worker import delete_queue
from orders.models import OrderSummary
from sagas.tasks import sweep_sagas
from tests.factories import api_client, make_product, make_user
from tests.support.worker import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def never_seen() -> Iterator[None]:
    """Start from workers and beat never seen (this process's throttle forgotten too)."""
    keys = [f"heartbeat:{kind}" for kind in heartbeats.KINDS]
    cache.delete_many(keys)
    heartbeats._last_written.clear()
    yield
    cache.delete_many(keys)
    heartbeats._last_written.clear()


def _health(client: Client) -> dict[str, Any]:
    response = client.get("/api/health/")
    assert response.status_code == 200, response.content
    return dict(response.json())


def test_never_seen_is_null_and_still_healthy(client: Client) -> None:
    body = _health(client)
    assert body["status"] == "ok"
    assert body["workers"] is None
    assert body["beat"] is None


def test_beat_is_seen_when_the_sweep_is_sent(client: Client) -> None:
    # Sent where no worker reads it: only the sending is beat's sign of life.
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    sweep_sagas.apply_async(queue=queue)
    delete_queue(queue)
    body = _health(client)
    assert isinstance(body["beat"], float)
    assert 0 <= body["beat"] < 60
    assert body["workers"] is None


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_is_seen_when_it_runs_steps(client: Client, live_worker: Any) -> None:
    make_product(sku="HB-1", stock=100)
    customer = api_client(make_user())

    def place_and_look() -> bool:
        # The session's worker marks itself seen at most every few seconds, and the fixture
        # forgot its last mark: orders keep it working until it marks itself again.
        response = customer.post(
            "/api/orders/",
            {
                "customer_id": "c-1",
                "items": [{"sku": "HB-1", "quantity": 1}],
                "payment_token": "tok_visa",
            },
            format="json",
        )
        assert response.status_code == 202
        wait_for(
            lambda: OrderSummary.objects.filter(
                id=response.json()["id"], status="CONFIRMED"
            ).exists(),
            message="the order confirmed",
        )
        return _health(client)["workers"] is not None

    wait_for(place_and_look, timeout=60, interval=0.5, message="the worker seen in /api/health/")
    workers = _health(client)["workers"]
    assert isinstance(workers, float)
    assert 0 <= workers < 60
