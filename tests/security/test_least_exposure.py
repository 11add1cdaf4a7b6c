"""Least exposure: each answer shows what its reader's permissions cover, and no more.

- A saga's context (what its steps carry) only to staff who may view sagas: an operator with
  the retry or skip permission alone gets the saga's state, not its context.
- The actors in an order's events are usernames, not internal user ids.
"""

from __future__ import annotations

import html as html_lib
import re

import pytest
from django.urls import reverse

from orders.tests.test_api import order_body
from sagas.tests.harness import failed_compensation_saga
from tests.admin.support import staff_client
from tests.factories import api_client, make_product, make_user

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("perms", "path", "body"),
    [
        (("sagas.retry_saga",), "retry", {}),
        (("sagas.skip_compensation",), "skip", {"reason": "settled by hand"}),
    ],
)
def test_an_operator_without_view_permission_gets_no_saga_context(perms, path, body) -> None:
    saga_id = failed_compensation_saga()
    operator = api_client(make_user(staff=True, perms=perms))

    response = operator.post(f"/api/sagas/{saga_id}/{path}/", body, format="json")

    assert response.status_code == 202
    assert "context" not in response.json()
    assert response.json()["id"] == str(saga_id)


def test_an_operator_who_may_view_sagas_gets_the_context() -> None:
    saga_id = failed_compensation_saga()
    operator = api_client(make_user(staff=True, perms=("sagas.retry_saga", "sagas.view_saga")))

    response = operator.post(f"/api/sagas/{saga_id}/retry/", {}, format="json")

    assert response.status_code == 202
    assert response.json()["context"]["fail_at"] == "d"


def test_the_admin_shows_no_saga_page_to_an_operator_who_may_not_view_sagas() -> None:
    saga_id = failed_compensation_saga()
    client, _ = staff_client()
    client.force_login(make_user(staff=True, perms=("sagas.retry_saga",)))

    page = client.get(reverse("admin:sagas_saga_change", args=[saga_id]))

    assert page.status_code in (302, 403)
    assert "fail_at" not in page.content.decode()


def test_the_api_shows_the_actors_of_an_orders_events_by_username() -> None:
    make_product("SKU-A", price="4.50")
    make_product("SKU-B", price="1.25")
    staff = make_user(staff=True, perms=("orders.view_ordersummary",))
    client = api_client(staff)
    order_id = client.post("/api/orders/", order_body(), format="json").json()["id"]

    events = client.get(f"/api/orders/{order_id}/events/").json()["results"]

    assert [e["metadata"]["actor"] for e in events] == [staff.username]
    assert f"user:{staff.pk}" not in str(events)


def test_the_admin_order_timeline_shows_actors_by_username() -> None:
    make_product("SKU-A", price="4.50")
    make_product("SKU-B", price="1.25")
    client, staff = staff_client()
    placer = api_client(staff)
    order_id = placer.post("/api/orders/", order_body(), format="json").json()["id"]

    page = client.get(reverse("admin:orders_ordersummary_change", args=[order_id]))

    timeline = page.content.decode().split("Event timeline", 1)[1]
    assert page.status_code == 200
    assert staff.username in timeline
    assert f"user:{staff.pk}" not in timeline


# --- correlation ids chosen by clients -------------------------------------------------------
#
# X-Correlation-ID is the client's own trace id, kept as sent so it matches the client's logs.
# Two clients can send the same one (by chance, or to splice their orders into another's story):
# the admin's "sharing this correlation id" links are scoped to the actor who placed the order,
# so they never list another client's events or sagas.


def test_the_same_correlation_id_from_two_clients_is_never_linked_across_them() -> None:
    make_product("SKU-A", price="4.50")
    make_product("SKU-B", price="1.25")
    alice, mallory = make_user(), make_user()
    ids = {}
    for user in (alice, mallory):
        response = api_client(user).post(
            "/api/orders/", order_body(), format="json", HTTP_X_CORRELATION_ID="trace-42"
        )
        assert response.status_code == 202
        ids[user.pk] = response.json()["id"]
    staff, _ = staff_client()

    page = staff.get(reverse("admin:orders_ordersummary_change", args=[ids[alice.pk]]))
    links = {
        label: html_lib.unescape(href)
        for href, label in re.findall(
            r'<a href="([^"]*correlation_id=[^"]*)">([^<]+)</a>', page.content.decode()
        )
    }
    assert {"events", "sagas"} <= set(links)
    events_page = staff.get(links["events"]).content.decode()
    sagas_page = staff.get(links["sagas"]).content.decode()

    assert ids[alice.pk] in events_page and ids[mallory.pk] not in events_page
    assert ids[alice.pk] in sagas_page and ids[mallory.pk] not in sagas_page
