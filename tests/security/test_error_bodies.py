"""Error answers never show a traceback, SQL or settings: 400, 404, 405, 413, 415 and 500
(forced, in a DRF view and in a plain view), with DEBUG off and on.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from tests.factories import api_client, make_user
from tests.security.urls_boom import SECRET_LOOKING_MESSAGE

pytestmark = pytest.mark.django_db

#: What must never appear in an error body.
LEAKS = (
    "Traceback",
    'File "',
    "SELECT",
    "SECRET_KEY",
    "DATABASES",
    "psycopg",
    "django.",
    "<html",
    "<!DOCTYPE",
    "/work/",
    ".py",
)


def assert_clean_json_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    text = response.content.decode()
    body = json.loads(text)
    assert isinstance(body, dict) and body, text
    for leak in (*LEAKS, django_settings.SECRET_KEY):
        assert leak not in text, f"{leak!r} in {text}"
    return body


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request: Any, settings: Any) -> bool:
    settings.DEBUG = request.param
    return bool(request.param)


@pytest.fixture
def client() -> Any:
    return api_client(make_user())


def test_400_malformed_json(client, debug) -> None:
    response = client.post("/api/orders/", data="{", content_type="application/json")
    body = assert_clean_json_error(response, 400)
    assert "JSON parse error" in body["detail"]


def test_400_field_errors(client, debug) -> None:
    response = client.post("/api/orders/", {"items": "x"}, format="json")
    body = assert_clean_json_error(response, 400)
    assert set(body) >= {"customer_id", "items", "payment_token"}


def test_404_unknown_route_and_unknown_order(client, debug) -> None:
    assert_clean_json_error(client.get("/api/no-such-route/"), 404)
    assert_clean_json_error(client.get("/api/orders/00000000-0000-0000-0000-000000000000/"), 404)
    assert_clean_json_error(client.get("/api/sagas/not-a-uuid/"), 403)  # staff only


def test_405_wrong_method(client, debug) -> None:
    for method in ("put", "patch", "delete"):
        body = assert_clean_json_error(getattr(client, method)("/api/orders/"), 405)
        assert "not allowed" in body["detail"]


def test_413_body_over_1_mb(client, debug) -> None:
    payload = json.dumps({"customer_id": "c", "padding": "x" * (1024 * 1024)})
    response = client.post("/api/orders/", data=payload, content_type="application/json")
    assert_clean_json_error(response, 413)


def test_415_wrong_content_type(client, debug) -> None:
    response = client.post("/api/orders/", data="<order/>", content_type="application/xml")
    assert_clean_json_error(response, 415)


@pytest.mark.urls("tests.security.urls_boom")
def test_500_in_an_api_view_is_json_with_a_reference(debug, caplog) -> None:
    response = Client(raise_request_exception=False).get("/api/boom/drf/")
    body = assert_clean_json_error(response, 500)
    assert body["detail"].startswith("Internal server error (reference ")
    # The operator finds the details in the log, under the reference the client was given.
    reference = body["detail"].split("reference ")[1][:12]
    assert any(reference in r.getMessage() for r in caplog.records)
    assert SECRET_LOOKING_MESSAGE not in response.content.decode()


@pytest.mark.urls("tests.security.urls_boom")
def test_500_in_a_plain_view_under_api_is_json(debug) -> None:
    response = Client(raise_request_exception=False).get("/api/boom/plain/")
    body = assert_clean_json_error(response, 500)
    assert body["detail"].startswith("Internal server error")


def test_csrf_failure_on_a_session_post_is_json(debug) -> None:
    session = Client(enforce_csrf_checks=True)
    session.force_login(make_user())
    response = session.post("/api/orders/", data="{}", content_type="application/json")
    body = assert_clean_json_error(response, 403)
    assert "CSRF" in body["detail"]
