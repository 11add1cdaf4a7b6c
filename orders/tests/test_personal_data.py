"""Personal data on orders: the contact, sealed at rest, shown to those who may, and erased.

Plain text is looked for in every row of every table (each row as text), after real orders:
what "appears nowhere in PostgreSQL" means here.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock
from uuid import UUID, uuid4

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections
from rest_framework.test import APIClient

import orders.services
import privacy.keyring
from eventstore.models import StoredEvent
from eventstore.postgres import PostgresEventStore
from lab.worker import delete_queue
from orders.models import IdempotencyRecord, OrderSummary
from orders.projections import ORDER_EVENTS
from orders.services import OrderLineRequest, order_place
from payments.models import Payment, PaymentStatus
from privacy import kek
from privacy.models import CustomerKey, Erasure
from privacy.services import erase_keys
from sagas.models import Saga
from sagas.tests.harness import drive
from tests.factories import api_client, make_product, make_user
from tests.support.worker import wait_for

URL = "/api/orders/"

ADDRESS = {
    "line1": "Rua das Zinnias 17",
    "line2": "3 Esquerdo Traseiras",
    "city": "Porto Velhinho",
    "postal_code": "4050-262",
    "country": "PT",
}
CONTACT: dict[str, Any] = {
    "email": "ana.quixotic@example.com",
    "name": "Ana Quixotic-Lima",
    "phone": "+351 912 345 678",
    "shipping_address": ADDRESS,
}
# Every personal text of CONTACT (the country, a two-letter code, would match anything).
PLAIN_TEXTS = [
    "ana.quixotic@example.com",
    "Quixotic",
    "912 345 678",
    "Zinnias",
    "Esquerdo Traseiras",
    "Porto Velhinho",
    "4050-262",
]


def order_body(customer_id: str = "c-42", **overrides: Any) -> dict[str, Any]:
    body = {
        "customer_id": customer_id,
        "items": [{"sku": "SKU-A", "quantity": 2}],
        "payment_token": "tok_visa",
        "contact": CONTACT,
    }
    body.update(overrides)
    return body


def tables_holding(text: str) -> list[str]:
    """Name the tables with a row whose text (every column of it) contains ``text``."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [name for (name,) in cursor.fetchall()]
        found = []
        for table in tables:
            quoted = connection.ops.quote_name(table)
            cursor.execute(
                f"SELECT count(*) FROM {quoted} AS r WHERE r::text ILIKE %s",
                [f"%{text}%"],
            )
            if cursor.fetchone()[0]:
                found.append(table)
    return found


def plain_text_in_database() -> dict[str, list[str]]:
    return {text: tables for text in PLAIN_TEXTS if (tables := tables_holding(text))}


@pytest.fixture
def committed(settings: Any) -> Iterator[None]:
    """Commit for real, sending step messages to a queue no worker reads (deleted after)."""
    queue = f"personal-data-{uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    settings.SAGA_QUEUE_ROUTES = {}
    yield
    delete_queue(queue)


def wait_until_the_log_shows_every_order_event() -> None:
    """Wait (bounded) until the log's readers see every stored order event (a rebuild reads
    only transactions older than every running one)."""
    stored = StoredEvent.objects.filter(stream_type="order").count()
    wait_for(
        lambda: (
            len(PostgresEventStore().read_all(limit=stored + 1, event_types=ORDER_EVENTS)) == stored
        ),
        timeout=120,
        message=f"the log to show all {stored} order events",
    )


@pytest.fixture
def products() -> None:
    make_product("SKU-A", price="4.50", stock=100, name="Mug")


@pytest.fixture
def client() -> APIClient:
    return api_client(make_user())


@pytest.fixture
def eraser() -> APIClient:
    return api_client(make_user(staff=True, perms=("privacy.erase_customer",)))


def erase(client: APIClient, customer_id: str, reason: Any = "asked by the customer") -> Any:
    return client.post(f"/api/customers/{customer_id}/erase/", {"reason": reason}, format="json")


# --- the contact on an order --------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("contact", "field"),
    [
        ({**CONTACT, "email": "not-an-email"}, "email"),
        ({**CONTACT, "name": ""}, "name"),
        ({**CONTACT, "name": "x" * 201}, "name"),
        ({**CONTACT, "phone": "\x00"}, "phone"),
        ({k: v for k, v in CONTACT.items() if k != "email"}, "email"),
        ({**CONTACT, "shipping_address": {**ADDRESS, "country": "XX"}}, None),
        ({**CONTACT, "shipping_address": {**ADDRESS, "country": "pt"}}, None),
        ({**CONTACT, "shipping_address": {**ADDRESS, "city": ""}}, None),
        ({**CONTACT, "age": 40}, "non_field_errors"),
        ("ana@example.com", "non_field_errors"),
    ],
)
def test_a_bad_contact_is_a_400_naming_the_field(client, products, contact, field) -> None:
    response = client.post(URL, order_body(contact=contact), format="json")

    assert response.status_code == 400, response.content
    errors = response.json()["contact"]
    if field is None:  # a field of the shipping address
        assert list(errors) == ["shipping_address"]
    else:
        assert field in errors
    assert not OrderSummary.objects.exists()


@pytest.mark.django_db
def test_the_contact_is_shown_to_who_may_see_the_order_and_stored_only_sealed(
    client, products, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    without_phone = {k: v for k, v in CONTACT.items() if k != "phone"}
    placed = client.post(URL, order_body(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    bare = client.post(URL, order_body(contact=None), format="json").json()
    other = client.post(URL, order_body("c-7", contact=without_phone), format="json").json()

    assert placed.status_code == 202, placed.content
    body = placed.json()
    assert (body["contact"], body["personal_data_erased"]) == (CONTACT, False)
    assert (bare["contact"], bare["personal_data_erased"]) == (None, False)
    assert other["contact"] == without_phone
    assert client.get(f"{URL}{body['id']}/").json()["contact"] == CONTACT
    assert client.get(f"{URL}{body['id']}/?version=1").json()["contact"] == CONTACT
    listed = {o["id"]: o["contact"] for o in client.get(URL).json()["results"]}
    assert listed == {body["id"]: CONTACT, bare["id"]: None, other["id"]: without_phone}
    events = client.get(f"{URL}{body['id']}/events/").json()["results"]
    assert events[0]["type"] == "OrderCreated"
    assert events[0]["data"]["contact"] == CONTACT
    # A replay of the idempotent request shows the contact too, though its record keeps none.
    replay = client.post(URL, order_body(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert replay.json() == body
    assert IdempotencyRecord.objects.get(key="k-1").response_body["contact"] is None
    # Others do not see the order at all.
    stranger = api_client(make_user())
    assert stranger.get(f"{URL}{body['id']}/").status_code == 404

    stored = StoredEvent.objects.get(stream_id=body["id"], version=1).data
    assert set(stored["contact"]) == {"key", "ct"}
    assert stored["customer_key"] == stored["contact"]["key"]
    saga = Saga.objects.get(pk=body["saga"]["id"])
    assert saga.context["contact"] == stored["contact"]
    assert plain_text_in_database() == {}
    assert not [t for t in PLAIN_TEXTS if t in caplog.text]


@pytest.mark.django_db
def test_a_data_key_is_unwrapped_only_to_seal_a_contact(client, products) -> None:
    # An order without a contact takes the customer's key (its id goes in the event, its
    # lock orders the placement with an erasure) but has nothing to seal under it.
    real_unwrap = privacy.keyring.unwrap
    with mock.patch("privacy.keyring.unwrap", side_effect=real_unwrap) as unwrap:
        first = client.post(URL, order_body(contact=None), format="json")
        bare = client.post(URL, order_body(contact=None), format="json")
        assert unwrap.call_count == 0
        sealed = client.post(URL, order_body(), format="json")
        assert unwrap.call_count == 1

    assert [r.status_code for r in (first, bare, sealed)] == [202, 202, 202]
    keys = {
        StoredEvent.objects.get(stream_id=r.json()["id"], version=1).data["customer_key"]
        for r in (first, bare, sealed)
    }
    assert keys == {str(CustomerKey.objects.get(customer_id="c-42").id)}
    assert sealed.json()["contact"] == CONTACT


@pytest.mark.django_db
def test_the_admin_shows_an_orders_contact_to_staff(products) -> None:
    client = api_client(make_user())
    body = client.post(URL, order_body(), format="json").json()
    staff = make_user(superuser=True)
    admin = APIClient()
    admin.force_login(staff)

    page = admin.get(f"/admin/orders/ordersummary/{body['id']}/change/")

    assert page.status_code == 200
    assert "ana.quixotic@example.com" in page.content.decode()


# --- erasure ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_erasure_through_the_api_end_to_end(client, eraser, products, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    first = client.post(URL, order_body(), format="json").json()
    bare = client.post(URL, order_body(contact=None), format="json").json()
    kept = client.post(URL, order_body("c-other"), format="json").json()
    for placed in (first, bare, kept):
        assert drive(UUID(placed["saga"]["id"])).status == "COMPLETED"
    cancelled = client.post(URL, order_body(), format="json").json()
    assert client.post(f"{URL}{cancelled['id']}/cancel/").status_code == 202
    drive(UUID(cancelled["saga"]["id"]))
    before = {o["id"]: client.get(f"{URL}{o['id']}/").json() for o in (first, bare, cancelled)}
    events_before = {
        oid: list(StoredEvent.objects.filter(stream_id=oid).order_by("version").values())
        for oid in before
    }

    response = erase(eraser, "c-42", "GDPR request 1234")

    assert response.status_code == 200, response.content
    answer = response.json()
    assert set(answer) == {"customer_id", "orders", "erased_at"}
    assert (answer["customer_id"], answer["orders"]) == ("c-42", 3)
    # Idempotent: the same answer, nothing recorded again.
    assert erase(eraser, "c-42", "again").json() == answer
    record = Erasure.objects.get()
    assert (record.customer_id, record.reason, record.orders) == ("c-42", "GDPR request 1234", 3)
    assert record.actor.startswith("user:") and record.erased_at.isoformat() is not None
    assert CustomerKey.objects.filter(customer_id="c-42", wrapped_key__isnull=False).count() == 0

    for oid, was in before.items():
        now = client.get(f"{URL}{oid}/").json()
        assert (now["contact"], now["personal_data_erased"]) == (None, True)
        unchanged = ("status", "items", "total", "currency", "version", "cancellation_reason")
        assert {k: now[k] for k in unchanged} == {k: was[k] for k in unchanged}
        events = client.get(f"{URL}{oid}/events/").json()["results"]
        assert [(e["version"], e["type"]) for e in events] == [
            (e["version"], e["event_type"]) for e in events_before[oid]
        ]
        assert events[0]["data"]["contact"] is None
        # The stored events themselves are untouched: still there, byte for byte.
        assert (
            list(StoredEvent.objects.filter(stream_id=oid).order_by("version").values())
            == events_before[oid]
        )
        as_of = client.get(f"{URL}{oid}/?version=1").json()
        assert (as_of["contact"], as_of["personal_data_erased"]) == (None, True)
    assert Payment.objects.get(order_id=first["id"]).status == PaymentStatus.CHARGED
    other = client.get(f"{URL}{kept['id']}/").json()
    assert (other["contact"], other["personal_data_erased"]) == (CONTACT, False)
    # The other customer's contact is still stored (sealed); c-42's can no longer be read.
    assert plain_text_in_database() == {}
    assert not [t for t in PLAIN_TEXTS if t in caplog.text]

    # Replays, rebuilds and the verifier work on the erased streams.
    OrderSummary.objects.filter(customer_id="c-42").delete()
    wait_until_the_log_shows_every_order_event()
    call_command("rebuild_projections", "orders")
    call_command("verify_event_store")
    for oid, was in before.items():
        now = client.get(f"{URL}{oid}/").json()
        assert (now["contact"], now["personal_data_erased"], now["status"]) == (
            None,
            True,
            was["status"],
        )

    # An order placed afterwards starts a new key, readable until the next erasure.
    after = client.post(URL, order_body(), format="json").json()
    assert (after["contact"], after["personal_data_erased"]) == (CONTACT, False)
    assert client.get(f"{URL}{after['id']}/").json()["contact"] == CONTACT
    assert CustomerKey.objects.filter(customer_id="c-42").count() == 2
    second = erase(eraser, "c-42", "asked again").json()
    assert second["orders"] == 4 and second["erased_at"] > answer["erased_at"]
    assert client.get(f"{URL}{after['id']}/").json()["contact"] is None


@pytest.mark.django_db
def test_erasure_needs_staff_with_the_permission_and_a_reason(client, products) -> None:
    placed = client.post(URL, order_body(), format="json").json()
    staff_without = api_client(make_user(staff=True))
    eraser = api_client(make_user(staff=True, perms=("privacy.erase_customer",)))

    assert erase(client, "c-42").status_code == 403
    assert erase(staff_without, "c-42").status_code == 403
    assert erase(APIClient(), "c-42").status_code == 401
    for reason in ("", "   ", 42, None):
        response = erase(eraser, "c-42", reason)
        assert response.status_code == 400, response.content
        assert "reason" in response.json()
    assert erase(eraser, "x" * 65).status_code == 404
    assert not Erasure.objects.exists()
    assert client.get(f"{URL}{placed['id']}/").json()["contact"] == CONTACT


@pytest.mark.django_db
def test_the_command_erases_a_customer(client, products, capsys) -> None:
    placed = client.post(URL, order_body(), format="json").json()

    call_command("erase_customer", "c-42", "--reason", "support ticket 9")

    assert "customer c-42 erased" in capsys.readouterr().out
    assert client.get(f"{URL}{placed['id']}/").json()["personal_data_erased"] is True
    assert Erasure.objects.get().reason == "support ticket 9"


@pytest.mark.django_db
def test_the_admin_action_erases_after_a_confirmation_with_a_reason(client, products) -> None:
    placed = client.post(URL, order_body(), format="json").json()
    staff = make_user(staff=True, perms=("orders.view_ordersummary", "privacy.erase_customer"))
    admin = APIClient()
    admin.force_login(staff)
    changelist = "/admin/orders/ordersummary/"
    selection = {"action": "erase_customers", "_selected_action": [placed["id"]]}

    asked = admin.post(changelist, selection)
    assert asked.status_code == 200
    assert "Yes, erase their personal data" in asked.content.decode()
    assert not Erasure.objects.exists()
    no_reason = admin.post(changelist, {**selection, "post": "yes", "reason": " "})
    assert "An erasure needs a reason." in no_reason.content.decode()
    assert not Erasure.objects.exists()

    done = admin.post(changelist, {**selection, "post": "yes", "reason": "by phone"})

    assert done.status_code == 302
    assert Erasure.objects.get().actor == f"user:{staff.pk}"
    assert client.get(f"{URL}{placed['id']}/").json()["contact"] is None
    # Without the permission the action is not offered, and a forged post is refused.
    viewer = APIClient()
    viewer.force_login(make_user(staff=True, perms=("orders.view_ordersummary",)))
    assert viewer.post(changelist, selection).status_code == 403


# --- erasure racing a placement: real concurrent transactions -------------------------------


def place(customer_id: str = "c-race") -> UUID:
    return order_place(
        customer_id=customer_id,
        lines=[OrderLineRequest("SKU-A", 1)],
        payment_token="tok_visa",
        actor="user:test",
        contact=CONTACT,
    ).order_id


def waiting_on_a_lock(table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query ILIKE %s AND pid <> pg_backend_pid()",
            [f"%{table}%"],
        )
        return bool(cursor.fetchone()[0])


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    event = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        event.wait(0.02)
    raise AssertionError("timed out")


@contextmanager
def in_thread(work: Callable[[], Any]) -> Iterator[dict[str, Any]]:
    """Run ``work`` on a thread (its own database connection); its result lands in the dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield outcome
    finally:
        thread.join(30)
    if "error" in outcome:
        raise outcome["error"]


def shown(order_id: UUID) -> tuple[Any, bool]:
    from orders.personal_data import personal_views

    view = personal_views([OrderSummary.objects.get(id=order_id)])[str(order_id)]
    return view.contact, view.personal_data_erased


@contextmanager
def placing_paused_once_sealed() -> Iterator[tuple[dict[str, Any], threading.Event]]:
    """Place an order for c-race on a thread (``place``), paused once its contact is sealed:
    its transaction open, holding the customer's key (made or share-locked), until the
    caller sets the event yielded with the placement's outcome.

    The caller sets it, not this helper on leaving: an erasure the caller runs meanwhile
    may have to be waiting on the placement's lock, inside the caller's block, when it does.
    """
    sealed, go = threading.Event(), threading.Event()
    real_seal = orders.services.seal_for_customer

    def seal_then_wait(customer_id: str, contact: Any) -> Any:
        result = real_seal(customer_id, contact)
        sealed.set()
        assert go.wait(10)
        return result

    with mock.patch.object(orders.services, "seal_for_customer", seal_then_wait):
        with in_thread(place) as placing:
            assert sealed.wait(10)
            yield placing, go


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_a_placement_holding_the_key_when_erasure_comes_is_erased_with_the_rest(
    products,
) -> None:
    earlier = place()  # the customer's key exists: the placement key-share-locks it
    with placing_paused_once_sealed() as (placing, go):
        with in_thread(
            lambda: orders.services.customer_erase(
                customer_id="c-race", reason="race", actor="user:test"
            )
        ) as erasing:
            # The erasure waits for the placement's key-share lock on the customer's key.
            until(lambda: waiting_on_a_lock("privacy_customer_key"))
            go.set()

    order_id = placing["result"]
    assert erasing["result"].orders == 2
    assert shown(order_id) == shown(earlier) == (None, True)
    assert not CustomerKey.objects.filter(customer_id="c-race", erased_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_a_placement_arriving_during_an_erasure_keeps_its_data_under_a_new_key(products) -> None:
    earlier = place()
    old_key = CustomerKey.objects.get(customer_id="c-race").pk
    locked, go = threading.Event(), threading.Event()

    def count_then_wait(customer_id: str) -> int:
        n = OrderSummary.objects.filter(customer_id=customer_id).count()
        locked.set()
        assert go.wait(10)
        return n

    with in_thread(
        lambda: erase_keys(
            customer_id="c-race", reason="race", actor="user:test", count_orders=count_then_wait
        )
    ) as erasing:
        assert locked.wait(10)
        with in_thread(place) as placing:
            # The placement waits for the erasure's lock on the key it would have used.
            until(lambda: waiting_on_a_lock("privacy_customer_key"))
            go.set()

    assert erasing["result"].orders == 1
    assert shown(earlier) == (None, True)
    later = placing["result"]
    assert shown(later) == (CONTACT, False)
    new_key = CustomerKey.objects.get(customer_id="c-race", erased_at__isnull=True)
    assert new_key.pk != old_key
    assert OrderSummary.objects.get(id=later).customer_key == str(new_key.pk)


# --- the key-encryption key ----------------------------------------------------------------


@pytest.mark.django_db
def test_rotating_the_key_encryption_key_rewraps_every_key_and_keeps_data_readable(
    client, products, settings, capsys
) -> None:
    placed = client.post(URL, order_body(), format="json").json()
    old = settings.PERSONAL_DATA_KEY
    new = kek.new_key()
    settings.PERSONAL_DATA_KEY = new
    # Without the old key the data keys cannot be read, and the command says which is missing.
    with pytest.raises(CommandError, match="not configured"):
        call_command("rotate_personal_data_key")
    settings.PERSONAL_DATA_PREVIOUS_KEYS = [old]

    call_command("rotate_personal_data_key")

    assert "re-wrapped 1 key(s)" in capsys.readouterr().out
    key = CustomerKey.objects.get(customer_id="c-42")
    assert key.kek_id == kek.key_id(kek.parse_key(new))
    settings.PERSONAL_DATA_PREVIOUS_KEYS = []  # the old key retired: the new one suffices
    assert client.get(f"{URL}{placed['id']}/").json()["contact"] == CONTACT


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_a_placement_making_the_first_key_during_an_erasure_keeps_its_data(products) -> None:
    with placing_paused_once_sealed() as (placing, go):
        # The key the placement made is not committed: the erasure has none to destroy.
        done = orders.services.customer_erase(
            customer_id="c-race", reason="race", actor="user:test"
        )
        go.set()

    assert done.orders == 0
    assert shown(placing["result"]) == (CONTACT, False)
    assert CustomerKey.objects.filter(customer_id="c-race", erased_at__isnull=True).count() == 1


def test_production_refuses_to_start_without_the_key_encryption_key() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "BACKOFFICE_TESTING", "PERSONAL_DATA_KEY"}
    }
    env["SECRET_KEY"] = "x" * 50
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"

    missing = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    malformed = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        env={**env, "PERSONAL_DATA_KEY": "too-short"},
        capture_output=True,
        text=True,
        check=False,
    )

    assert missing.returncode != 0
    assert "PERSONAL_DATA_KEY must be set" in missing.stderr
    assert malformed.returncode != 0
    assert "URL-safe base64" in malformed.stderr


@pytest.mark.django_db
def test_webhook_deliveries_carry_no_contact(client, eraser, products) -> None:
    from orders.webhooks import order_payload

    placed = client.post(URL, order_body(), format="json").json()
    created = PostgresEventStore().read_stream(stream_type="order", stream_id=placed["id"])[0]

    before = order_payload(created)["order"]
    erase(eraser, "c-42")
    after = order_payload(created)["order"]

    assert (before["contact"], before["personal_data_erased"]) == (None, False)
    assert (after["contact"], after["personal_data_erased"]) == (None, True)
