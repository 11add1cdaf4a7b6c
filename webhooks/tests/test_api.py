"""The webhooks API: who may use it, what it refuses (SSRF, bad bodies), what it answers."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.factories import api_client, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    return api_client(make_user(staff=True, perms=("webhooks.manage_webhooks",)))


def test_register_list_change_and_remove(staff) -> None:
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["order.confirmed"]}
    created = staff.post("/api/webhooks/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["secret"].startswith("whsec_")
    endpoint_id = created.json()["id"]
    listed = staff.get("/api/webhooks/").json()
    assert "secret" not in listed["results"][0]
    changed = staff.patch(f"/api/webhooks/{endpoint_id}/", {"is_active": False}, format="json")
    assert changed.status_code == 200 and changed.json()["is_active"] is False
    deliveries = staff.get(f"/api/webhooks/{endpoint_id}/deliveries/")
    assert deliveries.status_code == 200 and deliveries.json()["results"] == []
    assert staff.delete(f"/api/webhooks/{endpoint_id}/").status_code == 204
    assert staff.get(f"/api/webhooks/{endpoint_id}/").status_code == 404


def test_only_staff_with_the_permission() -> None:
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["order.confirmed"]}
    assert api_client().post("/api/webhooks/", body, format="json").status_code == 401
    plain_staff = api_client(make_user(staff=True))
    assert plain_staff.post("/api/webhooks/", body, format="json").status_code == 403


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://localhost:8000/hook",  # a name that resolves to loopback
        "ftp://example.com/hook",
    ],
)
@override_settings(WEBHOOK_ALLOW_PRIVATE_TARGETS=False)
def test_targets_inside_the_network_are_refused(staff, url: str) -> None:
    response = staff.post(
        "/api/webhooks/", {"url": url, "event_types": ["order.confirmed"]}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "url" in response.json()


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://127.0.0.1:9/", "event_types": ["order.shipped"]},
        {"url": "http://127.0.0.1:9/", "event_types": []},
        {"url": "http://127.0.0.1:9/", "event_types": "order.confirmed"},
        {"url": 5, "event_types": ["order.confirmed"]},
        {"url": "not a url", "event_types": ["order.confirmed"]},
        {"url": "http://127.0.0.1:9/", "event_types": ["order.confirmed"], "secret": "x"},
        {"url": "http://127.0.0.1:9/", "event_types": ["order.confirmed"], "description": 7},
        [],
    ],
)
def test_bad_bodies_are_4xx(staff, body: object) -> None:
    response = staff.post("/api/webhooks/", body, format="json")
    assert response.status_code == 400, response.content


def test_unknown_ids_are_404(staff) -> None:
    assert staff.get("/api/webhooks/abc/").status_code == 404
    assert staff.get("/api/webhooks/99999999999999999999999/").status_code == 404
    assert staff.post("/api/webhooks/1/deliveries/2/redeliver/").status_code == 404
