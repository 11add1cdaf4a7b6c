"""Erasure end to end over HTTP with a real worker: an erased order still confirms, cancels
and refunds, its events replayed by the worker's saga steps with the contact unreadable."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command

from orders.tests.test_personal_data import CONTACT, plain_text_in_database
from tests.e2e.test_order_flows import FINAL_SAGA, Http, money
from tests.factories import make_product, make_user
from tests.support.worker import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def settled(client: Http, order_id: str, status: str) -> dict[str, Any]:
    wait_for(
        lambda: (
            client.order(order_id)["status"] == status
            and client.order(order_id)["saga"]["status"] in FINAL_SAGA
        ),
        timeout=60,
        message=f"order {order_id} to be {status}",
    )
    return client.order(order_id)


def test_an_erased_customers_order_confirms_cancels_and_refunds(live_server, live_worker) -> None:
    make_product("E-PD", price="4.50", stock=10)
    client = Http(live_server.url, make_user())
    eraser = Http(live_server.url, make_user(staff=True, perms=("privacy.erase_customer",)))
    body = {
        "customer_id": "c-pd",
        "items": [{"sku": "E-PD", "quantity": 2}],
        "payment_token": "tok_visa",
        "contact": CONTACT,
    }

    placed = client.post("/api/orders/", body).json()
    assert placed["contact"] == CONTACT
    confirmed = settled(client, placed["id"], "CONFIRMED")
    assert confirmed["contact"] == CONTACT

    erased = eraser.post("/api/customers/c-pd/erase/", {"reason": "asked by mail"})

    assert erased.status_code == 200, erased.text
    assert erased.json()["orders"] == 1
    order = client.order(placed["id"])
    assert (order["contact"], order["personal_data_erased"]) == (None, True)
    # The worker's cancel saga loads the erased stream, refunds and cancels it.
    assert client.post(f"/api/orders/{placed['id']}/cancel/", {}).status_code == 202
    cancelled = settled(client, placed["id"], "CANCELLED")
    assert (cancelled["contact"], cancelled["personal_data_erased"]) == (None, True)
    assert cancelled["total"] == "9.00"
    assert money(placed["id"]) == (Decimal("9.00"), Decimal("9.00"))
    events = client.get(f"/api/orders/{placed['id']}/events/").json()["results"]
    assert [e["type"] for e in events] == ["OrderCreated", "OrderConfirmed", "OrderCancelled"]
    assert events[0]["data"]["contact"] is None
    assert plain_text_in_database() == {}
    call_command("verify_event_store")
