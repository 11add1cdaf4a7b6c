"""Hostile input the API kit refuses for every endpoint: bodies nested deeper than any real
request, and integer query parameters longer than any real count. Each is a 400 with a JSON
body, never a 500 (a RecursionError in the parser, or Python's refusal to convert a string of
more than 4300 digits).

The per-endpoint rules (quantities, SKUs, ids, filters) are in ``orders/tests/test_api_hostile.py``.
"""

from __future__ import annotations

import json

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from infrastructure.api.parsers import MAX_JSON_DEPTH
from orders.tests.test_api import order_body
from sagas.models import Saga
from tests.factories import api_client, make_product, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator() -> APIClient:
    return api_client(make_user(superuser=True))


@pytest.fixture
def order_id(operator) -> str:
    make_product("SKU-A", price="4.50")
    make_product("SKU-B", price="1.25")
    response = operator.post("/api/orders/", order_body(), format="json")
    assert response.status_code == 202
    return str(response.json()["id"])


@pytest.fixture
def saga_id(order_id) -> str:
    return str(Saga.objects.get().id)


def _post_routes() -> set[str]:
    """Every API route whose view answers POST, as its URL pattern."""
    found: set[str] = set()

    def walk(patterns: list, prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                view = getattr(pattern.callback, "view_class", None)
                if view is not None and hasattr(view, "post"):
                    found.add(prefix + str(pattern.pattern))

    walk(get_resolver().url_patterns, "")
    return {route for route in found if route.startswith("api/")}


#: Every JSON POST endpoint, with its path parameters filled in by the fixtures.
POST_ROUTES = {
    "api/orders/": "/api/orders/",
    "api/orders/<str:order_id>/cancel/": "/api/orders/{order_id}/cancel/",
    "api/customers/<str:customer_id>/erase/": "/api/customers/c-42/erase/",
    "api/sagas/<str:saga_id>/retry/": "/api/sagas/{saga_id}/retry/",
    "api/sagas/<str:saga_id>/skip/": "/api/sagas/{saga_id}/skip/",
    "api/webhooks/": "/api/webhooks/",
}

#: POST endpoints that never read a body (nothing in it is parsed).
BODILESS_POST_ROUTES = {"api/webhooks/<str:endpoint_id>/deliveries/<str:delivery_id>/redeliver/"}


def test_every_post_endpoint_is_in_the_hostile_body_tests() -> None:
    assert _post_routes() == set(POST_ROUTES) | BODILESS_POST_ROUTES


def nested(depth: int) -> str:
    """Return a JSON body ``depth`` containers deep, objects and arrays in turn."""
    return '{"a":[' * (depth // 2) + "1" + "]}" * (depth // 2)


@pytest.mark.parametrize("route", sorted(POST_ROUTES))
@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_json_is_a_400_on_every_post(operator, order_id, saga_id, route, depth):
    path = POST_ROUTES[route].format(order_id=order_id, saga_id=saga_id)
    response = operator.post(path, nested(depth), content_type="application/json")
    assert response.status_code == 400, response.content
    assert "nested" in response.json()["detail"]


def test_nesting_up_to_the_limit_is_parsed_and_one_more_is_refused(operator, order_id) -> None:
    # A body at the limit reaches the serializer (which refuses the unknown field by name).
    cancel = f"/api/orders/{order_id}/cancel/"
    at_limit = json.dumps({"x": json.loads(nested(MAX_JSON_DEPTH - 1))})
    response = operator.post(cancel, at_limit, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Unknown field(s): x."]}
    over = json.dumps({"x": json.loads(nested(MAX_JSON_DEPTH + 1))})
    response = operator.post(cancel, over, content_type="application/json")
    assert response.status_code == 400
    assert "nested" in response.json()["detail"]


def test_a_deep_body_with_an_idempotency_key_is_a_400(operator, order_id) -> None:
    body = json.dumps({**order_body(), "contact": json.loads(nested(900))})
    response = operator.post(
        "/api/orders/", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="deep-1"
    )
    assert response.status_code == 400


HUGE = "9" * 5000


@pytest.mark.parametrize(
    "path",
    [
        f"/api/orders/?page={HUGE}",
        f"/api/orders/?page_size={HUGE}",
        f"/api/orders/?page=-{HUGE}",
        f"/api/products/?page={HUGE}",
        f"/api/sagas/?page_size={HUGE}",
        "/api/orders/{order_id}/events/?page=" + HUGE,
        "/api/orders/{order_id}/?version=" + HUGE,
    ],
)
def test_integer_parameters_thousands_of_digits_long_are_a_400(operator, order_id, path) -> None:
    response = operator.get(path.format(order_id=order_id))
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("version", ["0", "-1", "-0"])
def test_versions_start_at_1(operator, order_id, version) -> None:
    response = operator.get(f"/api/orders/{order_id}/?version={version}")
    assert response.status_code == 400
    assert response.json() == {"version": ["Versions start at 1."]}


def test_a_version_past_the_last_names_the_versions_the_order_has(operator, order_id) -> None:
    # Placed: one event (OrderCreated), so versions 1 to 1.
    response = operator.get(f"/api/orders/{order_id}/?version=2")
    assert response.status_code == 404
    assert response.json()["detail"] == f"Order {order_id} has versions 1 to 1."
    assert operator.get(f"/api/orders/{order_id}/?version=99999999999999").status_code == 404
