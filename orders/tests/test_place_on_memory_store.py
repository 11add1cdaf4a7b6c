"""Placing an order, and its whole saga, with the order's events in the in-memory store.

The services name no store: they write through ``eventstore.factory.event_store()``, so the
same ``order_place`` runs on either. Sagas, stock, payments and the read model stay in
PostgreSQL; only the event stream moves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest

from eventstore.factory import memory_event_store
from eventstore.models import StoredEvent
from orders.models import OrderSummary
from orders.services import OrderAlreadyPlaced
from orders.tests.test_services import place
from sagas.models import Saga
from sagas.tests.harness import drive

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def memory_store(settings: Any) -> Iterator[None]:
    settings.EVENTSTORE_BACKEND = "memory"
    memory_event_store.cache_clear()
    yield
    memory_event_store.cache_clear()


def order_events(order_id: object) -> list[str]:
    stream = memory_event_store().read_stream(stream_type="order", stream_id=str(order_id))
    return [event.event_type for event in stream]


def test_the_order_is_created_in_the_memory_store_not_the_event_table() -> None:
    placed = place()

    assert order_events(placed.order_id) == ["OrderCreated"]
    assert not StoredEvent.objects.filter(stream_id=str(placed.order_id)).exists()
    # The inline projection ran with the in-memory append: the 202's row is the stored row.
    assert placed.order == OrderSummary.objects.get(id=placed.order_id)
    assert (placed.order.status, placed.order.version) == ("PENDING", 1)


def test_an_id_already_placed_is_refused_by_the_memory_store_too() -> None:
    order_id = uuid4()
    place(order_id=order_id)

    with pytest.raises(OrderAlreadyPlaced):
        place(order_id=order_id)

    assert order_events(order_id) == ["OrderCreated"]
    assert Saga.objects.filter(subject=f"order:{order_id}").count() == 1


def test_the_placing_saga_runs_to_confirmation_on_the_memory_store() -> None:
    placed = place()

    saga = drive(placed.saga_id)

    assert saga.status == "COMPLETED"
    assert order_events(placed.order_id) == ["OrderCreated", "OrderConfirmed"]
    assert OrderSummary.objects.get(id=placed.order_id).status == "CONFIRMED"


def test_a_declined_charge_cancels_the_order_on_the_memory_store() -> None:
    placed = place(payment_token="tok_chargeDeclined")

    saga = drive(placed.saga_id)

    assert saga.status == "COMPENSATED"
    assert order_events(placed.order_id) == ["OrderCreated", "OrderCancelled"]
    row = OrderSummary.objects.get(id=placed.order_id)
    assert (row.status, row.cancellation_reason) == ("CANCELLED", "payment_declined")
