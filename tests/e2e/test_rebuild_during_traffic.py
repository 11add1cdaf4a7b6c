"""``rebuild_projections`` on a live system: orders keep flowing through a real worker.

A store of 50,000 order events is rebuilt while a client keeps placing orders whose sagas
run on a real Celery worker (and the sweeper passes, as beat would run them): no
confirmation waits for the rebuild, so no saga times out and none is compensated, and the
rebuilt read model equals a replay of the log.
"""

from __future__ import annotations

import io
import threading
from typing import Any
from uuid import uuid4

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from eventstore.factory import postgres_event_store
from eventstore.postgres import PostgresEventStore
from eventstore.records import NewEvent
from eventstore.verify import event_store_verify
from orders.models import OrderSummary
from orders.services import OrderLineRequest, PlacedOrder, order_place
from sagas.models import Saga
from tests.factories import make_product
from tests.support.worker import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SEEDED_ORDERS = 25_000  # two events each
PER_TRANSACTION = 500
FINAL = {"COMPLETED", "COMPENSATED", "COMPENSATION_FAILED"}


def place() -> PlacedOrder:
    return order_place(
        customer_id="c-rebuild",
        lines=[OrderLineRequest("RB-1", 1)],
        payment_token="tok_visa",
        actor="user:1",
    )


def saga_status(placed: PlacedOrder) -> str:
    return Saga.objects.values_list("status", flat=True).get(pk=placed.saga_id)


def seed_confirmed_orders(template: PlacedOrder, count: int) -> None:
    """Append ``count`` confirmed orders shaped like ``template``'s, through the store."""
    events = PostgresEventStore().read_stream(stream_type="order", stream_id=str(template.order_id))
    created, confirmed = (dict(e.data) for e in events[:2])
    store = postgres_event_store()
    for start in range(0, count, PER_TRANSACTION):
        with transaction.atomic(durable=True):
            for _ in range(min(PER_TRANSACTION, count - start)):
                order_id = str(uuid4())
                store.append(
                    stream_type="order",
                    stream_id=order_id,
                    expected_version=0,
                    events=[
                        NewEvent("OrderCreated", {**created, "order_id": order_id}),
                        NewEvent("OrderConfirmed", {**confirmed, "order_id": order_id}),
                    ],
                )


def test_orders_flowing_during_a_rebuild_of_50000_events_all_complete(
    live_worker: Any, run_sweeper: Any
) -> None:
    make_product("RB-1", price="2.00", stock=1_000_000)
    template = place()
    wait_for(lambda: saga_status(template) == "COMPLETED", timeout=60, message="the first order")
    seed_confirmed_orders(template, SEEDED_ORDERS)
    # The read model drifted: rows the rebuild must rewrite.
    drifted = list(OrderSummary.objects.values_list("pk", flat=True)[:50])
    OrderSummary.objects.filter(pk__in=drifted).update(status="PENDING", version=1)

    placed: list[PlacedOrder] = []
    rebuilding = threading.Event()
    rebuilt = threading.Event()
    failures: list[BaseException] = []

    def client() -> None:
        # A client placing orders, and beat's sweeper, until the rebuild has finished.
        try:
            while not rebuilt.is_set() or len(placed) < 20:
                placed.append(place())
                if len(placed) % 10 == 0:
                    run_sweeper()
                if len(placed) == 5:
                    rebuilding.set()
        except BaseException as exc:  # surfaced below: a thread's error would pass silently
            failures.append(exc)
            rebuilding.set()
        finally:
            connection.close()

    thread = threading.Thread(target=client)
    thread.start()
    assert rebuilding.wait(timeout=60), "the client never placed its first orders"
    out = io.StringIO()
    try:
        call_command("rebuild_projections", "orders", "--batch-size", "1000", stdout=out)
    finally:
        rebuilt.set()
        thread.join(timeout=300)
    assert not failures, failures

    wait_for(
        lambda: all(saga_status(p) in FINAL for p in placed),
        timeout=180,
        message=lambda: f"{sum(saga_status(p) not in FINAL for p in placed)} sagas to settle",
    )
    statuses = [saga_status(p) for p in placed]
    assert statuses.count("COMPLETED") == len(statuses), statuses
    assert not Saga.objects.exclude(status="COMPLETED").exists()
    text = out.getvalue()
    assert "orders: 50002/" in text or "orders: rebuilt from" in text
    summary = text.splitlines()[-1]
    assert "rows written" in summary and "0 removed" in summary, summary
    assert OrderSummary.objects.filter(pk__in=drifted, status="CONFIRMED", version=2).count() == 50
    report = event_store_verify()
    assert report.ok, report.problems[:10]
