"""GET /metrics: who may read it, the database's gauges, the HTTP series, the workers' series."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
import requests
from django.test import Client
from django.utils import timezone

from backoffice.metrics import database_gauges
from eventstore.projections import projection_statuses
from orders.models import OrderSummary
from sagas.models import Saga
from tests.factories import api_client, make_product, make_user
from tests.observability.scrape import parse, value
from tests.support.worker import wait_for, worker_metrics_url
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


def _place(client: object, sku: str, token: str = "tok_visa") -> str:
    response = client.post(  # type: ignore[attr-defined]
        "/api/orders/",
        {"customer_id": "c-1", "items": [{"sku": sku, "quantity": 1}], "payment_token": token},
        format="json",
    )
    assert response.status_code == 202, response.content
    return str(response.json()["id"])


def _scrape(client: Client, **headers: str) -> dict[Any, float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


class TestAccess:
    def test_open_with_debug(self, settings: Any, client: Client) -> None:
        settings.DEBUG = True
        settings.METRICS_TOKEN = ""
        assert client.get("/metrics").status_code == 200

    def test_a_404_without_debug_when_no_token_is_set(self, settings: Any, client: Client) -> None:
        settings.DEBUG = False
        settings.METRICS_TOKEN = ""
        assert client.get("/metrics").status_code == 404
        assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404

    def test_a_401_without_the_token_and_200_with_it(self, settings: Any, client: Client) -> None:
        settings.DEBUG = False
        settings.METRICS_TOKEN = "s3cret-metrics"
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.json() == {"detail": wrong.json()["detail"]}
        assert (
            client.get("/metrics", headers={"Authorization": "Token s3cret-metrics"}).status_code
            == 401
        )
        right = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics"})
        assert right.status_code == 200
        assert b"backoffice_sagas" in right.content


def test_the_gauges_reflect_the_database(settings: Any, client: Client) -> None:
    settings.DEBUG = True
    make_product(sku="G-1", stock=10)
    customer = api_client(make_user())
    for _ in range(3):
        _place(customer, "G-1")
    # Set aside by hand (the worker tests drive a real one there): a saga at rest is idle.
    first = Saga.objects.order_by("created_at").first()
    assert first is not None
    Saga.objects.filter(id=first.id).update(status="COMPENSATION_FAILED", due_at=None)
    # Another past its deadline: it and the failed one need an operator.
    late = Saga.objects.exclude(id=first.id).first()
    assert late is not None
    Saga.objects.filter(id=late.id).update(finish_by=timezone.now() - timedelta(minutes=1))
    database_gauges._read_at = float("-inf")  # a fresh read, not the previous scrape's
    samples = _scrape(client)
    assert value(samples, "backoffice_sagas", saga_type="place_order", status="RUNNING") == 2
    assert (
        value(samples, "backoffice_sagas", saga_type="place_order", status="COMPENSATION_FAILED")
        == 1
    )
    assert value(samples, "backoffice_failed_compensations") == 1
    assert value(samples, "backoffice_sagas_past_deadline") == 1
    assert value(samples, "backoffice_sagas_needing_attention") == 2
    assert (
        value(samples, "backoffice_orders", status="PENDING") == OrderSummary.objects.count() == 3
    )
    assert value(samples, "backoffice_orders", status="CONFIRMED") == 0
    lags = {status.name: status.lag for status in projection_statuses()}
    assert lags
    for name, lag in lags.items():
        assert value(samples, "backoffice_projection_lag_events", projection=name) == lag


def test_the_webhook_backlog_counts_unsent_deliveries_and_ages_the_oldest(
    settings: Any, client: Client
) -> None:
    settings.DEBUG = True
    endpoint = WebhookEndpoint.objects.create(
        url="https://hooks.example.test/in", event_types=["order.confirmed"]
    )
    now = timezone.now()
    for status, age in [
        (DeliveryStatus.PENDING, timedelta(minutes=10)),
        (DeliveryStatus.RETRYING, timedelta(minutes=1)),
        (DeliveryStatus.SUCCEEDED, timedelta(hours=2)),
        (DeliveryStatus.FAILED, timedelta(hours=3)),
    ]:
        WebhookDelivery.objects.create(
            endpoint=endpoint,
            event_id=uuid4(),
            event_type="order.confirmed",
            stream_type="order",
            stream_id=str(uuid4()),
            stream_version=2,
            payload={},
            status=status,
            created_at=now - age,
        )
    database_gauges._read_at = float("-inf")  # a fresh read, not the previous scrape's

    samples = _scrape(client)

    assert value(samples, "backoffice_webhook_backlog") == 2
    oldest = value(samples, "backoffice_webhook_oldest_pending_seconds")
    assert 600 <= oldest < 600 + (timezone.now() - now).total_seconds() + 1


def test_no_webhook_backlog_is_zero_of_both(settings: Any, client: Client) -> None:
    settings.DEBUG = True
    database_gauges._read_at = float("-inf")

    samples = _scrape(client)

    assert value(samples, "backoffice_webhook_backlog") == 0
    assert value(samples, "backoffice_webhook_oldest_pending_seconds") == 0


def test_requests_are_counted_by_url_pattern_not_by_path(settings: Any, client: Client) -> None:
    settings.DEBUG = True
    make_product(sku="H-1", stock=10)
    customer = api_client(make_user())
    route = "/api/orders/<str:order_id>/"
    before = _scrape(client)
    order_ids = [_place(customer, "H-1") for _ in range(2)]
    for order_id in order_ids:
        assert customer.get(f"/api/orders/{order_id}/").status_code == 200
    assert customer.get("/no/such/page/").status_code == 404
    after = _scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("backoffice_http_requests_total", method="GET", route=route, status="200") == 2
    assert (
        moved("backoffice_http_requests_total", method="POST", route="/api/orders/", status="202")
        == 2
    )
    assert (
        moved("backoffice_http_requests_total", method="GET", route="<unmatched>", status="404")
        == 1
    )
    assert (
        moved("backoffice_http_request_duration_seconds_count", method="POST", route="/api/orders/")
        == 2
    )
    assert not any(
        order_id in labels_text for order_id in order_ids for labels_text in map(str, after)
    )


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_workers_step_counters_move_with_real_orders(live_worker: object) -> None:
    url = worker_metrics_url(live_worker)  # type: ignore[arg-type]
    # Empty until a child records something: a list holding the text is the answer.
    before = parse(wait_for(lambda: _get(url), message="the worker's metrics exporter")[0])
    make_product(sku="W-1", stock=10)
    customer = api_client(make_user())
    order_ids = [_place(customer, "W-1") for _ in range(3)] + [
        _place(customer, "W-1", token="tok_chargeDeclined")
    ]
    wait_for(
        lambda: OrderSummary.objects.filter(id__in=order_ids, status="PENDING").count() == 0,
        timeout=60,
        message="the orders to settle",
    )
    # The exporter reads the children's files when scraped: the last outcome is written
    # before the order's row changes, so its count is there by now.
    after = parse(_get(url)[0])

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    attempts = "backoffice_saga_step_attempts_total"
    common = {"saga_type": "place_order", "phase": "action"}
    assert moved(attempts, step="reserve_inventory", outcome="SUCCEEDED", **common) == 4
    assert moved(attempts, step="charge_payment", outcome="SUCCEEDED", **common) == 3
    assert moved(attempts, step="charge_payment", outcome="FAILED", **common) == 1
    assert moved(attempts, step="confirm_order", outcome="SUCCEEDED", **common) == 3
    assert (
        moved(
            attempts,
            saga_type="place_order",
            step="reserve_inventory",
            phase="compensation",
            outcome="SUCCEEDED",
        )
        == 1
    )
    assert (
        moved(
            "backoffice_saga_step_duration_seconds_count",
            saga_type="place_order",
            step="charge_payment",
            phase="action",
        )
        == 4
    )


def _get(url: str) -> list[str]:
    """Return [the exposition] (maybe empty text), or [] while the exporter does not answer."""
    try:
        response = requests.get(url, timeout=5)
    except requests.ConnectionError:
        return []
    return [response.text] if response.status_code == 200 else []
