"""The orders API: validation, representation, authorization, idempotency keys.

These tests need no worker: they check what the API does before and around the saga (the
saga's own flow is covered end to end in tests/e2e).
"""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
import requests
from rest_framework.test import APIClient

import orders.api
from eventstore.models import StoredEvent
from eventstore.postgres import PostgresEventStore
from infrastructure.api.idempotency import IdempotencyKeys, request_id
from orders.domain import MAX_ORDER_TOTAL
from orders.models import IdempotencyRecord, OrderSummary
from orders.projections import COMPARED_FIELDS, OrderProjector, row_from_stream
from payments.models import (
    Payment,
    PaymentStatus,
    Refund,
    SimulatedCharge,
    SimulatedRefund,
)
from payments.simulated import open_card
from payments.tokens import token_fingerprint
from sagas.models import Saga
from sagas.tests.harness import drive
from tests.factories import api_client, make_product, make_user

pytestmark = pytest.mark.django_db

URL = "/api/orders/"


@pytest.fixture
def client_user():
    return make_user()


@pytest.fixture
def client(client_user) -> APIClient:
    return api_client(client_user)


@pytest.fixture
def products():
    return [
        make_product("SKU-A", price="4.50", stock=10, name="Mug"),
        make_product("SKU-B", price="1.25", stock=10, name="Tea"),
    ]


def order_body(**overrides):
    body = {
        "customer_id": "c-42",
        "items": [{"sku": "SKU-A", "quantity": 2}, {"sku": "SKU-B", "quantity": 3}],
        "payment_token": "tok_visa",
    }
    body.update(overrides)
    return body


def post(client: APIClient, body, **extra):
    return client.post(URL, body, format="json", **extra)


def nothing_created() -> bool:
    return (
        not OrderSummary.objects.exists()
        and not Saga.objects.exists()
        and not StoredEvent.objects.exists()
    )


# --- placing an order ---------------------------------------------------------------------


def test_post_places_an_order_priced_from_the_catalogue(client, client_user, products) -> None:
    response = post(client, order_body())

    assert response.status_code == 202, response.content
    body = response.json()
    assert response["Location"].endswith(f"/api/orders/{body['id']}/")
    assert body["status"] == "PENDING"
    assert body["cancellation_reason"] is None
    assert body["customer_id"] == "c-42"
    assert body["items"] == [
        {"sku": "SKU-A", "name": "Mug", "quantity": 2, "unit_price": "4.50", "line_total": "9.00"},
        {"sku": "SKU-B", "name": "Tea", "quantity": 3, "unit_price": "1.25", "line_total": "3.75"},
    ]
    assert (body["total"], body["currency"], body["version"]) == ("12.75", "EUR", 1)
    assert body["saga"]["type"] == "place_order"
    assert body["saga"]["status"] == "RUNNING"
    assert body["sagas"] == [body["saga"]]
    event = StoredEvent.objects.get(stream_id=body["id"])
    assert event.event_type == "OrderCreated"
    assert event.metadata["actor"] == f"user:{client_user.pk}"


def test_the_202_body_is_what_a_get_of_the_order_returns(client, products) -> None:
    # The POST builds its saga summary from the saga it started instead of reading it back;
    # with no worker running, a GET must show exactly the same order.
    posted = post(client, order_body())

    got = client.get(posted["Location"])

    assert got.status_code == 200
    assert posted.json() == got.json()


@pytest.mark.django_db(transaction=True)
def test_a_post_commits_the_order_its_row_and_its_saga(client, products) -> None:
    posted = post(client, order_body())

    assert posted.status_code == 202, posted.content
    order_id = posted.json()["id"]
    events = PostgresEventStore().read_stream(stream_type="order", stream_id=order_id)
    row = OrderSummary.objects.filter(id=order_id).values(*COMPARED_FIELDS).get()
    # The row written with the event is the row a replay of its stream gives.
    assert row == {f: row_from_stream(events)[f] for f in COMPARED_FIELDS}
    saga = Saga.objects.get(subject=f"order:{order_id}")
    assert (saga.saga_type, saga.status, saga.current_step) == (
        "place_order",
        "RUNNING",
        "reserve_inventory",
    )


def test_a_replayed_creation_leaves_the_stored_row_alone(products) -> None:
    api_client(make_user()).post(URL, order_body(), format="json")
    event = StoredEvent.objects.get(event_type="OrderCreated")
    OrderSummary.objects.filter(id=event.stream_id).update(customer_id="edited")
    (recorded,) = PostgresEventStore().read_stream(stream_type="order", stream_id=event.stream_id)
    OrderProjector().handle(recorded)
    assert OrderSummary.objects.get(id=event.stream_id).customer_id == "edited"


def test_get_after_post_shows_the_order_at_once(client, products) -> None:
    order_id = post(client, order_body()).json()["id"]

    response = client.get(f"{URL}{order_id}/")

    assert response.status_code == 200
    assert response.json()["id"] == order_id
    assert client.get(URL).json()["count"] == 1


@pytest.mark.parametrize(
    "field",
    [{"status": "CONFIRMED"}, {"total": "0.01"}, {"currency": "USD"}, {"id": str(uuid4())}],
)
def test_client_sent_server_owned_fields_are_refused(client, products, field) -> None:
    response = post(client, order_body(**field))

    assert response.status_code == 400
    message = json.dumps(response.json())
    assert next(iter(field)) in message
    assert "never from the request" in message
    assert nothing_created()


def test_client_sent_prices_in_lines_are_refused(client, products) -> None:
    body = order_body(items=[{"sku": "SKU-A", "quantity": 1, "unit_price": "0.01"}])
    response = post(client, body)
    assert response.status_code == 400
    assert "unit_price" in json.dumps(response.json())
    assert nothing_created()


@pytest.mark.parametrize(
    ("quantity", "fragment"),
    [
        ("2", "JSON integer"),
        (2.0, "JSON integer"),
        (2.5, "JSON integer"),
        (True, "JSON integer"),
        (None, "null"),
        (0, "greater than or equal to 1"),
        (1001, "less than or equal to 1000"),
    ],
)
def test_quantities_are_json_integers_from_1_to_1000(client, products, quantity, fragment) -> None:
    response = post(client, order_body(items=[{"sku": "SKU-A", "quantity": quantity}]))

    assert response.status_code == 400
    assert fragment in json.dumps(response.json())
    assert "items" in response.json()
    assert nothing_created()


def test_missing_quantity_is_a_field_error(client, products) -> None:
    response = post(client, order_body(items=[{"sku": "SKU-A"}]))
    assert response.status_code == 400
    assert response.json()["items"]["0"]["quantity"] == ["This field is required."]


@pytest.mark.parametrize("count_", [0, 101])
def test_an_order_has_1_to_100_lines(client, count_) -> None:
    for n in range(max(count_, 1)):
        make_product(f"L-{n}")
    items = [{"sku": f"L-{n}", "quantity": 1} for n in range(count_)]
    response = post(client, order_body(items=items))
    assert response.status_code == 400
    assert "items" in response.json()
    assert nothing_created()


def test_a_100_line_order_is_accepted(client) -> None:
    for n in range(100):
        make_product(f"L-{n}", price="1.00")
    items = [{"sku": f"L-{n}", "quantity": 1} for n in range(100)]
    response = post(client, order_body(items=items))
    assert response.status_code == 202
    assert response.json()["total"] == "100.00"


def test_duplicate_skus_are_refused(client, products) -> None:
    items = [{"sku": "SKU-A", "quantity": 1}, {"sku": "SKU-A", "quantity": 2}]
    response = post(client, order_body(items=items))
    assert response.status_code == 400
    assert "repeated: SKU-A" in json.dumps(response.json())
    assert nothing_created()


def test_unknown_skus_are_refused_and_nothing_is_written(client, products) -> None:
    items = [{"sku": "SKU-A", "quantity": 1}, {"sku": "NOPE", "quantity": 1}]
    response = post(client, order_body(items=items))
    assert response.status_code == 400
    assert "Unknown SKU: NOPE" in json.dumps(response.json())
    assert nothing_created()


# --- the most an order may cost ------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "total"),
    [
        # A cent over: every column would hold it but a payment's, so the charge could never
        # be recorded.
        ([("MAX", 1), ("CENT", 1)], "10000000000.00"),
        # Far over: more digits than the read model's total holds.
        ([("MAX", 1000)], "9999999999990.00"),
    ],
)
def test_an_order_over_the_maximum_total_is_a_400_on_items_and_nothing_is_written(
    client, items, total
) -> None:
    make_product("MAX", price=str(MAX_ORDER_TOTAL), stock=1000)
    make_product("CENT", price="0.01", stock=10)

    lines = [{"sku": sku, "quantity": quantity} for sku, quantity in items]
    response = post(client, order_body(items=lines))

    assert response.status_code == 400, response.content
    assert response.json() == {
        "items": [
            f"The order's total, {total}, is over the maximum of {MAX_ORDER_TOTAL} per order."
        ]
    }
    assert nothing_created()


def test_an_order_of_exactly_the_maximum_total_is_placed_charged_and_confirmed(client) -> None:
    make_product("MAX", price=str(MAX_ORDER_TOTAL), stock=1)

    response = post(client, order_body(items=[{"sku": "MAX", "quantity": 1}]))

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["total"] == str(MAX_ORDER_TOTAL)
    assert drive(UUID(body["saga"]["id"])).status == "COMPLETED"
    payment = Payment.objects.get(order_id=body["id"])
    assert (payment.status, payment.amount) == (PaymentStatus.CHARGED, MAX_ORDER_TOTAL)
    assert client.get(f"{URL}{body['id']}/").json()["status"] == "CONFIRMED"


@pytest.mark.parametrize(
    "field",
    [
        OrderSummary._meta.get_field("total"),
        Payment._meta.get_field("amount"),
        Refund._meta.get_field("amount"),
        SimulatedCharge._meta.get_field("amount"),
        SimulatedRefund._meta.get_field("amount"),
    ],
    ids=str,
)
def test_every_column_holding_an_orders_money_holds_the_maximum_total(field) -> None:
    assert field.decimal_places == 2
    assert len(str(int(MAX_ORDER_TOTAL))) <= field.max_digits - field.decimal_places


@pytest.mark.parametrize("customer_id", ["", "x" * 65, "bad\x00id", "tab\tid", 42, None, ["c"]])
def test_customer_id_is_1_to_64_printable_characters(client, products, customer_id) -> None:
    response = post(client, order_body(customer_id=customer_id))
    assert response.status_code == 400
    assert "customer_id" in response.json()
    assert nothing_created()


def test_a_64_character_customer_id_is_accepted(client, products) -> None:
    assert post(client, order_body(customer_id="c" * 64)).status_code == 202


@pytest.mark.parametrize("missing", ["customer_id", "items", "payment_token"])
def test_required_fields(client, products, missing) -> None:
    body = order_body()
    del body[missing]
    response = post(client, body)
    assert response.status_code == 400
    assert response.json()[missing] == ["This field is required."]


def test_malformed_json_is_a_clear_400(client, products) -> None:
    response = client.post(
        URL, data='{"customer_id": "c", "items": [', content_type="application/json"
    )
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert "JSON parse error" in response.json()["detail"]
    assert nothing_created()


@pytest.mark.parametrize("payload", ["[]", '"order"', "42", "null", "NaN"])
def test_a_body_that_is_not_an_object_is_a_400(client, products, payload) -> None:
    response = client.post(URL, data=payload, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert nothing_created()


def test_bodies_over_1_mb_get_413(client, products) -> None:
    huge = json.dumps(order_body(customer_id="c", padding="x" * (1024 * 1024)))
    response = client.post(URL, data=huge, content_type="application/json")
    assert response.status_code == 413
    assert "larger than the limit" in response.json()["detail"]
    assert nothing_created()


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("customer_id=c&payment_token=tok_visa", "application/x-www-form-urlencoded"),
        ('{"customer_id": "c"}', "text/plain"),
        ("<order/>", "application/xml"),
    ],
)
def test_wrong_content_types_get_415(client, products, data, content_type) -> None:
    response = client.post(URL, data=data, content_type=content_type)
    assert response.status_code == 415
    assert "Unsupported media type" in response.json()["detail"]
    assert nothing_created()


# --- reading orders -----------------------------------------------------------------------


def test_unknown_and_malformed_ids_are_404_json(client) -> None:
    for path in (f"{URL}{uuid4()}/", f"{URL}not-a-uuid/", f"{URL}{uuid4()}/events/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "No order with this id."}
    response = client.post(f"{URL}{uuid4()}/cancel/", {}, format="json")
    assert response.status_code == 404


def test_unknown_api_urls_are_json_404s(client) -> None:
    response = client.get("/api/no-such-thing/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_list_filters_and_paginates(client, products) -> None:
    ids = [post(client, order_body(customer_id=f"c-{n % 2}")).json()["id"] for n in range(5)]

    page = client.get(URL, {"page_size": 2}).json()
    assert set(page) == {"count", "next", "previous", "results"}
    assert page["count"] == 5 and len(page["results"]) == 2 and page["previous"] is None
    assert "page=2" in page["next"]
    assert [o["id"] for o in page["results"]] == ids[::-1][:2]  # newest first

    only_c1 = client.get(URL, {"customer_id": "c-1"}).json()
    assert only_c1["count"] == 2
    assert {o["customer_id"] for o in only_c1["results"]} == {"c-1"}
    assert client.get(URL, {"status": "PENDING"}).json()["count"] == 5
    assert client.get(URL, {"status": "CONFIRMED"}).json()["count"] == 0
    bad = client.get(URL, {"status": "SHIPPED"})
    assert bad.status_code == 400 and "status" in bad.json()


def test_page_size_is_capped_at_500(client) -> None:
    OrderSummary.objects.bulk_create([_read_model_row(n) for n in range(501)])
    staff = make_user(staff=True, perms=("orders.view_ordersummary",))
    body = api_client(staff).get(URL, {"page_size": 1000}).json()
    assert body["count"] == 501 and len(body["results"]) == 500


def _read_model_row(position: int) -> OrderSummary:
    from django.utils import timezone

    now = timezone.now()
    return OrderSummary(
        id=uuid4(),
        customer_id="bulk",
        status="PENDING",
        items=[],
        total=Decimal("1.00"),
        currency="EUR",
        version=1,
        created_position=position,
        created_at=now,
        updated_at=now,
    )


def test_version_parameter_replays_the_order(client, products) -> None:
    order_id = post(client, order_body()).json()["id"]

    first = client.get(f"{URL}{order_id}/", {"version": 1})
    assert first.status_code == 200
    assert (first.json()["version"], first.json()["status"]) == (1, "PENDING")
    assert client.get(f"{URL}{order_id}/", {"version": 2}).status_code == 404
    assert client.get(f"{URL}{order_id}/", {"version": 0}).status_code == 400
    assert client.get(f"{URL}{order_id}/", {"version": -1}).status_code == 400
    bad = client.get(f"{URL}{order_id}/", {"version": "one"})
    assert bad.status_code == 400 and bad.json() == {
        "version": ["Must be a whole number from 1, of at most 18 digits."]
    }


def test_events_endpoint_lists_the_stream(client, products) -> None:
    order_id = post(client, order_body(), HTTP_X_CORRELATION_ID="trace-123").json()["id"]

    body = client.get(f"{URL}{order_id}/events/").json()

    assert body["count"] == 1
    (event,) = body["results"]
    assert set(event) == {"position", "version", "type", "data", "metadata", "recorded_at"}
    assert (event["version"], event["type"]) == (1, "OrderCreated")
    assert event["data"]["total"] == "12.75"
    assert event["metadata"]["correlation_id"] == "trace-123"


def test_cancelling_a_pending_order_stops_its_placing_saga(client, products) -> None:
    placed = post(client, order_body()).json()
    response = client.post(f"{URL}{placed['id']}/cancel/", {}, format="json")

    assert response.status_code == 202, response.content
    # No step was running: the placing saga compensates at once, nothing else starts.
    assert response.json()["saga"] == {
        "id": placed["saga"]["id"],
        "type": "place_order",
        "status": "COMPENSATING",
    }
    assert Saga.objects.filter(saga_type="cancel_order").count() == 0


def confirmed_order(client: APIClient) -> str:
    body = post(client, order_body()).json()
    assert drive(UUID(body["saga"]["id"])).status == "COMPLETED"
    return str(body["id"])


def cancellation_reason(client: APIClient, order_id: str) -> str:
    response = client.post(f"{URL}{order_id}/cancel/", {}, format="json")
    assert response.status_code == 202, response.content
    cancel = Saga.objects.get(subject=f"order:{order_id}", saga_type="cancel_order")
    return str(cancel.context["reason"])


def test_a_client_cancelling_their_order_cancels_it_as_the_client(client, products) -> None:
    assert cancellation_reason(client, confirmed_order(client)) == "cancelled_by_client"


def test_staff_cancelling_someone_elses_order_cancel_it_as_staff(client, products) -> None:
    staff = api_client(
        make_user(staff=True, perms=("orders.cancel_order", "orders.view_ordersummary"))
    )
    assert cancellation_reason(staff, confirmed_order(client)) == "cancelled_by_staff"


def test_staff_cancelling_their_own_order_cancel_it_as_its_client(products) -> None:
    staff = api_client(
        make_user(staff=True, perms=("orders.cancel_order", "orders.view_ordersummary"))
    )
    assert cancellation_reason(staff, confirmed_order(staff)) == "cancelled_by_client"


# --- who sees what ----------------------------------------------------------------------------


def test_anonymous_clients_are_refused_but_health_schema_and_docs_are_open(db) -> None:
    anonymous = APIClient()
    assert anonymous.get(URL).status_code == 401
    assert anonymous.post(URL, order_body(), format="json").status_code == 401
    assert anonymous.get("/api/sagas/").status_code == 401
    assert anonymous.get("/api/products/").status_code == 401
    assert anonymous.get("/api/schema/").status_code == 200
    assert anonymous.get("/api/docs/").status_code == 200
    assert anonymous.get("/api/health/").status_code == 200


def test_clients_see_only_their_own_orders(products) -> None:
    alice, bob = make_user(), make_user()
    alice_order = post(api_client(alice), order_body()).json()["id"]
    post(api_client(bob), order_body())

    as_bob = api_client(bob)
    assert as_bob.get(URL).json()["count"] == 1
    assert as_bob.get(f"{URL}{alice_order}/").status_code == 404
    assert as_bob.get(f"{URL}{alice_order}/events/").status_code == 404
    assert as_bob.get(f"{URL}{alice_order}/", {"version": 1}).status_code == 404
    assert as_bob.post(f"{URL}{alice_order}/cancel/", {}, format="json").status_code == 404


def test_staff_need_the_view_permission_to_see_every_order(products) -> None:
    post(api_client(make_user()), order_body())
    post(api_client(make_user()), order_body())

    assert api_client(make_user(staff=True)).get(URL).json()["count"] == 0
    viewer = make_user(staff=True, perms=("orders.view_ordersummary",))
    assert api_client(viewer).get(URL).json()["count"] == 2
    assert api_client(make_user(superuser=True)).get(URL).json()["count"] == 2


def test_session_authentication_enforces_csrf(client_user, products) -> None:
    session = APIClient(enforce_csrf_checks=True)
    session.force_login(client_user)
    assert session.get(URL).status_code == 200
    response = session.post(URL, order_body(), format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert nothing_created()


def test_token_authentication_rejects_a_bad_token(db) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get(URL)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}


# --- idempotency keys -------------------------------------------------------------------------


def test_same_key_and_body_replays_the_first_response(client, products) -> None:
    first = post(client, order_body(), HTTP_IDEMPOTENCY_KEY="k-1")
    again = post(client, order_body(), HTTP_IDEMPOTENCY_KEY="k-1")

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true"
    assert OrderSummary.objects.count() == 1 and Saga.objects.count() == 1


def test_same_key_with_another_body_is_a_422(client, products) -> None:
    post(client, order_body(), HTTP_IDEMPOTENCY_KEY="k-2")
    response = post(client, order_body(customer_id="someone-else"), HTTP_IDEMPOTENCY_KEY="k-2")
    assert response.status_code == 422
    assert "different request" in response.json()["detail"]
    assert OrderSummary.objects.count() == 1


def test_keys_belong_to_their_user(products) -> None:
    alice, bob = make_user(), make_user()
    post(api_client(alice), order_body(), HTTP_IDEMPOTENCY_KEY="shared")
    response = post(api_client(bob), order_body(), HTTP_IDEMPOTENCY_KEY="shared")
    assert response.status_code == 202
    assert OrderSummary.objects.count() == 2


def test_a_rejected_request_stores_no_key(client, products) -> None:
    bad = post(
        client, order_body(items=[{"sku": "NOPE", "quantity": 1}]), HTTP_IDEMPOTENCY_KEY="k-3"
    )
    assert bad.status_code == 400
    assert not IdempotencyRecord.objects.exists()
    good = post(client, order_body(), HTTP_IDEMPOTENCY_KEY="k-4")
    assert good.status_code == 202


@pytest.mark.parametrize("key", ["", "x" * 256, "ключ"])
def test_malformed_keys_are_a_400(client, products, key) -> None:
    response = post(client, order_body(), HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]
    assert nothing_created()


def token_session(user) -> requests.Session:
    from knox.models import AuthToken

    session = requests.Session()
    session.headers["Authorization"] = f"Token {AuthToken.objects.create(user=user)[1]}"
    return session


@pytest.mark.django_db(transaction=True)
def test_a_key_still_in_flight_gets_409(live_server, client_user, monkeypatch) -> None:
    make_product("SKU-A", price="4.50")
    make_product("SKU-B", price="1.25")
    inside, release = threading.Event(), threading.Event()
    place = orders.api.order_place

    def held_inside_the_service(**kwargs):
        inside.set()
        assert release.wait(timeout=30)
        return place(**kwargs)

    # The first request stops inside the service, holding its key, until the test lets go.
    monkeypatch.setattr(orders.api, "order_place", held_inside_the_service)
    url, headers = live_server.url + URL, {"Idempotency-Key": "k-5"}
    first: dict[str, requests.Response] = {}
    # Made here: the thread below must open no database connection of its own.
    first_session = token_session(client_user)

    def send_first() -> None:
        first["response"] = first_session.post(url, json=order_body(), headers=headers, timeout=60)

    thread = threading.Thread(target=send_first)
    thread.start()
    try:
        assert inside.wait(timeout=30)
        second = token_session(client_user).post(
            url, json=order_body(), headers=headers, timeout=60
        )
    finally:
        release.set()
        thread.join(timeout=60)

    assert second.status_code == 409, second.text
    assert "still in flight" in second.json()["detail"]
    assert first["response"].status_code == 202, first["response"].text
    again = token_session(client_user).post(url, json=order_body(), headers=headers, timeout=60)
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (202, "true")
    assert again.json() == first["response"].json()
    assert OrderSummary.objects.count() == 1 and Saga.objects.count() == 1


def lose_the_first_answer(monkeypatch) -> None:
    """Make the first request die after its order committed, before its answer is stored."""
    store = IdempotencyKeys._store
    calls = []

    def crash_once(self, record, response):
        calls.append(response)
        if len(calls) == 1:
            raise ConnectionError("the web process died here")
        return store(self, record, response)

    monkeypatch.setattr(IdempotencyKeys, "_store", crash_once)


def test_a_retry_after_a_lost_answer_gets_the_order_already_placed(
    client, products, monkeypatch
) -> None:
    lose_the_first_answer(monkeypatch)
    lost = post(client, order_body(), HTTP_IDEMPOTENCY_KEY="k-6")
    assert lost.status_code == 500

    retry = post(client, order_body(), HTTP_IDEMPOTENCY_KEY="k-6")

    assert retry.status_code == 202, retry.content
    assert OrderSummary.objects.count() == 1 and Saga.objects.count() == 1
    assert retry.json() == client.get(retry["Location"]).json()
    replay = post(client, order_body(), HTTP_IDEMPOTENCY_KEY="k-6")
    assert replay.json() == retry.json() and replay["Idempotent-Replayed"] == "true"


def test_after_a_lost_answer_the_key_still_refuses_another_body(
    client, products, monkeypatch
) -> None:
    lose_the_first_answer(monkeypatch)
    assert post(client, order_body(), HTTP_IDEMPOTENCY_KEY="k-7").status_code == 500

    other = post(client, order_body(customer_id="c-other"), HTTP_IDEMPOTENCY_KEY="k-7")

    assert other.status_code == 422
    assert not OrderSummary.objects.filter(customer_id="c-other").exists()


def test_the_order_id_of_a_keyed_request_is_the_same_on_every_retry(client_user) -> None:
    first = request_id(user_id=client_user.pk, key="k-8")
    assert first == request_id(user_id=client_user.pk, key="k-8")
    assert first != request_id(user_id=client_user.pk, key="k-9")
    assert first != request_id(user_id=client_user.pk + 1, key="k-8")


# --- the payment token ----------------------------------------------------------------------


def test_the_token_goes_to_the_gateway_and_the_saga_keeps_only_its_reference(
    client, products
) -> None:
    response = post(client, order_body(payment_token="tok_visa"))

    assert response.status_code == 202
    context = Saga.objects.get().context
    assert "payment_token" not in context
    assert "tok_visa" not in str(context)
    # The gateway's own reference: the card it names is the token's, by fingerprint.
    assert open_card(context["payment_method"]).fingerprint == token_fingerprint("tok_visa")


def test_a_gateway_that_cannot_take_the_token_is_a_503_and_nothing_is_placed(
    client, products, settings
) -> None:
    settings.PAYMENT_GATEWAY = "payments.tests.gateways.VaultTimeoutGateway"

    response = post(client, order_body(), HTTP_IDEMPOTENCY_KEY="k-503")

    assert response.status_code == 503
    assert "payment gateway" in response.json()["detail"]
    assert not OrderSummary.objects.exists() and not Saga.objects.exists()
    # The key is free again: the same request succeeds once the gateway is back.
    settings.PAYMENT_GATEWAY = "payments.simulated.SimulatedGateway"
    assert post(client, order_body(), HTTP_IDEMPOTENCY_KEY="k-503").status_code == 202
