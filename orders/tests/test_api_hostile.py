"""Hostile input to the API: every DESIGN.md validation rule test_api.py does not already
cover, and the query, path and body shapes schemathesis found answered wrongly (a 500, or a
malformed value silently accepted). All refusals are 4xx JSON and write nothing.
"""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from eventstore.models import StoredEvent
from orders.tests.test_api import nothing_created, order_body, post
from sagas.models import Saga
from tests.factories import api_client, make_product, make_user

pytestmark = pytest.mark.django_db

URL = "/api/orders/"


@pytest.fixture
def client() -> APIClient:
    return api_client(make_user())


@pytest.fixture
def products():
    return [make_product("SKU-A", price="4.50"), make_product("SKU-B", price="1.25")]


@pytest.fixture
def order_id(client, products) -> str:
    response = post(client, order_body())
    assert response.status_code == 202
    return str(response.json()["id"])


@pytest.fixture
def operator() -> APIClient:
    return api_client(make_user(superuser=True))


# --- the order body --------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", 42, None, "t" * 101, "tok\x00visa", ["tok_visa"]])
def test_payment_token_is_a_printable_string_of_1_to_100(client, products, token) -> None:
    response = post(client, order_body(payment_token=token))
    assert response.status_code == 400
    assert "payment_token" in response.json()
    assert nothing_created()


@pytest.mark.parametrize("items", [{"sku": "SKU-A", "quantity": 1}, "SKU-A", 42, None, True])
def test_items_must_be_a_list(client, products, items) -> None:
    response = post(client, order_body(items=items))
    assert response.status_code == 400
    assert "items" in response.json()
    assert nothing_created()


@pytest.mark.parametrize("line", ["SKU-A", 42, None, ["SKU-A", 1]])
def test_each_line_must_be_an_object(client, products, line) -> None:
    response = post(client, order_body(items=[line]))
    assert response.status_code == 400
    assert "items" in response.json()
    assert nothing_created()


@pytest.mark.parametrize("sku", [42, "", "SKU\x00A", "S" * 65, None])
def test_sku_is_a_printable_string_of_at_most_64(client, products, sku) -> None:
    response = post(client, order_body(items=[{"sku": sku, "quantity": 1}]))
    assert response.status_code == 400
    assert "sku" in json.dumps(response.json())
    assert nothing_created()


@pytest.mark.parametrize("quantity", [-1, 10**20, -(10**20), "1e3", [1], {"n": 1}])
def test_out_of_range_and_odd_quantities_are_400_not_500(client, products, quantity) -> None:
    response = post(client, order_body(items=[{"sku": "SKU-A", "quantity": quantity}]))
    assert response.status_code == 400
    assert "quantity" in json.dumps(response.json())
    assert nothing_created()


def test_unknown_top_level_fields_are_named_and_refused(client, products) -> None:
    response = post(client, order_body(coupon="FREE"))
    assert response.status_code == 400
    assert "coupon" in json.dumps(response.json())
    assert nothing_created()


@pytest.mark.parametrize("key", ["k\x01ey", "k\x7fey"])
def test_idempotency_keys_with_control_characters_are_a_400(client, products, key) -> None:
    response = post(client, order_body(), HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400
    assert nothing_created()


def test_an_unprintable_correlation_id_is_replaced_not_stored(client, products) -> None:
    response = post(client, order_body(), HTTP_X_CORRELATION_ID="trace\x01id")
    assert response.status_code == 202
    event = StoredEvent.objects.get(stream_id=response.json()["id"])
    assert event.metadata["correlation_id"] != "trace\x01id"


# --- query parameters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "status=",
        "status=PENDING&status=CONFIRMED",
        "status=pending",
        "customer_id=c%00x",
        "customer_id=a&customer_id=b",
        "page_size=0",
        "page_size=-1",
        "page_size=abc",
        "page_size=1.5",
        "page_size=%C2%B2",
        "page_size=1&page_size=2",
        "page=0",
        "page=abc",
        "page=last",
        "page=1&page=2",
    ],
)
def test_malformed_list_parameters_are_400(client, query) -> None:
    response = client.get(f"{URL}?{query}")
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/json")


def test_a_page_past_the_last_is_404(client, order_id) -> None:
    assert client.get(URL, {"page": 2}).status_code == 404
    assert client.get(URL, {"page": 1}).status_code == 200


@pytest.mark.parametrize("version", ["²", "--1", "1.0", "", " 1", "0x1", "1&version=1"])
def test_malformed_versions_are_400_not_500(client, order_id, version) -> None:
    response = client.get(f"{URL}{order_id}/?version={version}")
    assert response.status_code == 400, response.content
    assert "version" in response.json()


@pytest.mark.parametrize("raw_id", ["%00", "..%2F..%2Fsagas", "1 OR 1=1", "x" * 300])
def test_odd_ids_are_404(client, raw_id) -> None:
    for path in (f"{URL}{raw_id}/", f"{URL}{raw_id}/events/"):
        assert client.get(path).status_code == 404, path


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_refuses_a_null_or_non_object_body(client, order_id) -> None:
    for payload in ("null", "[]", '"x"', "42"):
        response = client.post(f"{URL}{order_id}/cancel/", payload, content_type="application/json")
        assert response.status_code == 400, payload
    assert not Saga.objects.filter(saga_type="cancel_order").exists()


def test_cancel_refuses_unknown_fields_wrong_types_and_big_bodies(client, order_id) -> None:
    cancel = f"{URL}{order_id}/cancel/"
    assert client.post(cancel, {"reason": "x"}, format="json").status_code == 400
    assert client.post(cancel, "reason=x", content_type="text/plain").status_code == 415
    huge = json.dumps({"padding": "x" * (1024 * 1024)})
    assert client.post(cancel, huge, content_type="application/json").status_code == 413
    assert not Saga.objects.filter(saga_type="cancel_order").exists()


# --- sagas ----------------------------------------------------------------------------------


@pytest.fixture
def saga_id(order_id) -> str:
    return str(Saga.objects.get().id)


@pytest.mark.parametrize(
    "payload",
    [
        "null",
        "[]",
        "{}",
        '{"reason": ""}',
        '{"reason": "   "}',
        '{"reason": 42}',
        '{"reason": null}',
        '{"reason": "a\\u0000b"}',
    ],
)
def test_skip_needs_a_non_empty_string_reason(operator, saga_id, payload) -> None:
    response = operator.post(
        f"/api/sagas/{saga_id}/skip/", payload, content_type="application/json"
    )
    assert response.status_code == 400, payload
    assert response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("payload", ["null", "[]", '{"reason": 42}', '{"reason": true}'])
def test_retry_refuses_a_malformed_body(operator, saga_id, payload) -> None:
    response = operator.post(
        f"/api/sagas/{saga_id}/retry/", payload, content_type="application/json"
    )
    assert response.status_code == 400, payload


def test_retry_and_skip_of_a_running_saga_are_409(operator, saga_id) -> None:
    assert operator.post(f"/api/sagas/{saga_id}/retry/", {}, format="json").status_code == 409
    skip = operator.post(f"/api/sagas/{saga_id}/skip/", {"reason": "by hand"}, format="json")
    assert skip.status_code == 409


@pytest.mark.parametrize("query", ["status=", "status=running", "type=a%00b", "type=a&type=b"])
def test_malformed_saga_filters_are_400(operator, query) -> None:
    assert operator.get(f"/api/sagas/?{query}").status_code == 400


@pytest.mark.parametrize("raw_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "%00"])
def test_unknown_and_malformed_saga_ids_are_404(operator, raw_id) -> None:
    assert operator.get(f"/api/sagas/{raw_id}/").status_code == 404
    assert operator.post(f"/api/sagas/{raw_id}/retry/", {}, format="json").status_code == 404
