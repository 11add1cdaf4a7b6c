"""Webhook deliveries end to end in this process, to a real receiver on 127.0.0.1.

Orders are placed and their sagas driven here (sagas.tests.harness); the relay runs its real
catch-up over the committed log; each delivery is POSTed over a real socket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from datetime import datetime, timedelta
from io import StringIO
from typing import Any
from uuid import UUID

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from eventstore.projections import (
    NotRebuildable,
    projection_catch_up,
    projection_rebuild,
    projection_statuses,
)
from orders.services import OrderLineRequest, order_place
from sagas.tests.harness import drive, failed_compensation_saga
from tests.factories import make_product
from tests.support.worker import wait_for
from webhooks.delivery import (
    LEASE,
    QUEUED,
    Answer,
    Claimed,
    _lease_renew,
    deliveries_claim,
    deliveries_dispatch_due,
    deliveries_send,
    delivery_claim,
    delivery_record,
    delivery_send,
    retry_delay,
    send_batches,
)
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.relay import RELAY_NAME
from webhooks.services import endpoint_create, endpoint_reenable
from webhooks.tests.receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _sends_by_hand(settings: Any) -> None:
    # These tests play the worker's part: they send by hand what the relay wrote, so the
    # relay does not hold its deliveries for sends queued to a worker that is not there.
    settings.WEBHOOK_SEND_ON_RELAY = False


ORDER_TYPES = ["order.created", "order.confirmed", "order.cancelled"]


def place(token: str = "tok_visa") -> UUID:
    if not _has("WH-A"):
        make_product("WH-A", stock=100)
    placed = order_place(
        customer_id="c-wh",
        lines=[OrderLineRequest("WH-A", 1)],
        payment_token=token,
        actor="user:1",
    )
    drive(placed.saga_id)
    return placed.order_id


def _has(sku: str) -> bool:
    from inventory.models import Product

    return Product.objects.filter(sku=sku).exists()


def relay() -> None:
    """Run the relay until it has read every committed event.

    The log is read only up to the oldest transaction still running on the server, so a
    pass may stop short while another transaction is open: poll, bounded.
    """

    def caught_up() -> bool:
        projection_catch_up(name=RELAY_NAME)
        (status,) = [s for s in projection_statuses() if s.name == RELAY_NAME]
        return status.lag == 0

    wait_for(caught_up, message="the relay to read every committed event")


def send_all() -> None:
    for delivery in WebhookDelivery.objects.order_by("stream_version", "id"):
        delivery_send(delivery_id=delivery.id)


def by_hand_signature(secret: str, headers: dict[str, str], body: bytes) -> str:
    """The Standard Webhooks signature computed from the spec, not the library."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def test_an_order_reaches_the_endpoint_signed_in_order(receiver: Receiver) -> None:
    created = endpoint_create(url=receiver.url, event_types=ORDER_TYPES)
    order_id = place()
    relay()
    send_all()

    bodies = [json.loads(r.body) for r in receiver.received]
    assert [b["type"] for b in bodies] == ["order.created", "order.confirmed"]
    assert {b["data"]["order"]["id"] for b in bodies} == {str(order_id)}
    assert [b["data"]["order"]["status"] for b in bodies] == ["PENDING", "CONFIRMED"]
    for request in receiver.received:
        # The package's verifier and the spec by hand agree with what was sent.
        Webhook(created.secret).verify(request.body, request.headers)
        assert request.headers["webhook-signature"] == by_hand_signature(
            created.secret, request.headers, request.body
        )
        assert request.headers["webhook-id"] == json.loads(request.body)["id"]
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"SUCCEEDED"}


def test_the_secret_is_stored_encrypted(receiver: Receiver) -> None:
    created = endpoint_create(url=receiver.url, event_types=ORDER_TYPES)
    stored = WebhookEndpoint.objects.get(id=created.endpoint.id).secret_encrypted
    assert created.secret.removeprefix("whsec_") not in stored
    assert created.secret not in stored


def test_events_before_the_endpoint_and_rolled_back_ones_get_no_delivery(
    receiver: Receiver,
) -> None:
    place()
    endpoint_create(url=receiver.url, event_types=ORDER_TYPES)
    relay()
    assert not WebhookDelivery.objects.exists()


def test_the_relay_writes_each_delivery_once(receiver: Receiver) -> None:
    endpoint_create(url=receiver.url, event_types=["order.confirmed"])
    place()
    relay()
    relay()
    assert WebhookDelivery.objects.count() == 1
    assert WebhookDelivery.objects.get().event_type == "order.confirmed"


def test_rebuild_projections_leaves_the_relay_alone(receiver: Receiver) -> None:
    endpoint_create(url=receiver.url, event_types=ORDER_TYPES)
    place()
    relay()
    send_all()
    # One delivery lost (as a purge would): a replay of the log must not offer it again.
    WebhookDelivery.objects.filter(event_type="order.created").delete()
    before = list(WebhookDelivery.objects.values_list("id", "status", "attempts"))
    sent = len(receiver.received)

    out = StringIO()
    call_command("rebuild_projections", stdout=out)  # every projector, as an operator would
    assert f"{RELAY_NAME}: skipped, not rebuildable" in out.getvalue()
    assert "orders: rebuilt" in out.getvalue()
    with pytest.raises(CommandError, match="not rebuildable"):
        call_command("rebuild_projections", RELAY_NAME, stdout=StringIO())
    with pytest.raises(NotRebuildable):
        projection_rebuild(name=RELAY_NAME)
    relay()
    send_all()

    assert list(WebhookDelivery.objects.values_list("id", "status", "attempts")) == before
    assert len(receiver.received) == sent


@override_settings(WEBHOOK_RETRY_BASE_SECONDS=5)
def test_a_failure_is_retried_later_with_the_same_webhook_id(receiver: Receiver) -> None:
    endpoint_create(url=receiver.url, event_types=["order.confirmed"])
    place()
    relay()
    receiver.answers = [500]
    delivery = WebhookDelivery.objects.get()
    now = timezone.now()

    assert delivery_send(delivery_id=delivery.id, now=now) == DeliveryStatus.RETRYING
    delivery.refresh_from_db()
    assert delivery.attempts == 1
    assert delivery.response_status == 500
    assert len(delivery.response_body) == 1024  # only the start of the answer is kept
    assert timedelta(seconds=4) <= delivery.next_attempt_at - now <= timedelta(seconds=6)
    # Not due yet: nothing is sent.
    assert delivery_send(delivery_id=delivery.id, now=now + timedelta(seconds=1)) is None

    later = delivery.next_attempt_at
    assert delivery_send(delivery_id=delivery.id, now=later) == DeliveryStatus.SUCCEEDED
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert delivery.delivered_at is not None
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert ids == [str(delivery.event_id)] * 2


def test_the_retry_schedule_doubles_with_jitter_up_to_an_hour() -> None:
    assert retry_delay(1, base=5, rand=0.5) == 5
    assert retry_delay(2, base=5, rand=0.5) == 10
    assert 4 <= retry_delay(1, base=5, rand=0.0) <= retry_delay(1, base=5, rand=0.99) <= 6
    assert retry_delay(30, base=5, rand=0.99) == 3600


@override_settings(WEBHOOK_RETRY_WINDOW_SECONDS=60)
def test_after_the_retry_window_the_delivery_fails(receiver: Receiver) -> None:
    endpoint_create(url=receiver.url, event_types=["order.confirmed"])
    place()
    relay()
    receiver.answers = [500, 500]
    delivery = WebhookDelivery.objects.get()
    assert delivery_send(delivery_id=delivery.id) == DeliveryStatus.RETRYING
    delivery.refresh_from_db()
    after = delivery.retry_window_start + timedelta(seconds=61)
    assert delivery_send(delivery_id=delivery.id, now=after) == DeliveryStatus.FAILED


def test_a_later_event_of_the_order_waits_for_the_earlier_one(receiver: Receiver) -> None:
    endpoint_create(url=receiver.url, event_types=ORDER_TYPES)
    place()
    relay()
    created, confirmed = WebhookDelivery.objects.order_by("stream_version")
    receiver.answers = [500]
    now = timezone.now()
    assert delivery_send(delivery_id=created.id, now=now) == DeliveryStatus.RETRYING
    # The confirmation is due, but its order's creation has not been delivered yet.
    assert delivery_send(delivery_id=confirmed.id, now=now + timedelta(hours=2)) is None
    assert delivery_send(delivery_id=created.id, now=now + timedelta(hours=2)) == "SUCCEEDED"
    # Sent right after the creation, by the same send.
    confirmed.refresh_from_db()
    assert confirmed.status == DeliveryStatus.SUCCEEDED
    types = [json.loads(r.body)["type"] for r in receiver.received]
    assert types == ["order.created", "order.created", "order.confirmed"]


@override_settings(WEBHOOK_DISABLE_AFTER_FAILURES=2, WEBHOOK_RETRY_BASE_SECONDS=0)
def test_an_endpoint_that_keeps_failing_is_disabled_and_can_be_re_enabled(
    receiver: Receiver,
) -> None:
    endpoint = endpoint_create(url=receiver.url, event_types=["order.confirmed"]).endpoint
    place()
    relay()
    receiver.answers = [500, 500]
    delivery = WebhookDelivery.objects.get()
    delivery_send(delivery_id=delivery.id)
    delivery_send(delivery_id=delivery.id)
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert "2 consecutive failed attempts" in endpoint.disabled_reason
    # Disabled: nothing is sent.
    assert delivery_send(delivery_id=delivery.id) is None

    endpoint_reenable(endpoint_id=endpoint.id)
    assert delivery_send(delivery_id=delivery.id) == DeliveryStatus.SUCCEEDED
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.consecutive_failures == 0


def test_a_redirect_is_not_followed(receiver: Receiver, other_receiver: Receiver) -> None:
    endpoint_create(url=receiver.url, event_types=["order.confirmed"])
    place()
    relay()
    receiver.redirect_to = other_receiver.url
    delivery = WebhookDelivery.objects.get()
    assert delivery_send(delivery_id=delivery.id) == DeliveryStatus.RETRYING
    delivery.refresh_from_db()
    assert delivery.response_status == 302
    assert "redirects are not followed" in delivery.last_error
    assert other_receiver.received == []


def test_a_target_turned_private_is_refused_at_send_time(receiver: Receiver) -> None:
    endpoint_create(url=receiver.url, event_types=["order.confirmed"])
    place()
    relay()
    delivery = WebhookDelivery.objects.get()
    with override_settings(WEBHOOK_ALLOW_PRIVATE_TARGETS=False):
        assert delivery_send(delivery_id=delivery.id) == DeliveryStatus.RETRYING
    delivery.refresh_from_db()
    assert "refused" in delivery.last_error
    assert receiver.received == []


def test_a_failed_compensation_is_delivered_as_saga_compensation_failed(
    receiver: Receiver,
) -> None:
    created = endpoint_create(url=receiver.url, event_types=["saga.compensation_failed"])
    saga_id = failed_compensation_saga()
    relay()
    send_all()
    (request,) = receiver.received
    body = Webhook(created.secret).verify(request.body, request.headers)
    assert body["type"] == "saga.compensation_failed"
    assert body["data"]["saga"]["id"] == str(saga_id)
    assert body["data"]["saga"]["status"] == "COMPENSATION_FAILED"


def test_two_senders_claiming_one_delivery_at_once_send_it_once(receiver: Receiver) -> None:
    endpoint_create(url=receiver.url, event_types=["order.created"])
    place()
    relay()
    delivery = WebhookDelivery.objects.get()
    now = timezone.now()
    claims: dict[str, Claimed | None] = {}
    first_claimed, release = threading.Event(), threading.Event()

    def first() -> None:
        try:
            with transaction.atomic():
                claims["first"] = delivery_claim(delivery_id=delivery.id, now=now)
                first_claimed.set()
                release.wait(30)  # hold the claim uncommitted while the second one runs
        finally:
            connection.close()

    def second() -> None:
        try:
            claims["second"] = delivery_claim(delivery_id=delivery.id, now=now)
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_claimed.wait(30)
    threads[1].start()

    def second_waits_for_the_first() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
            return cursor.fetchone() is not None

    wait_for(second_waits_for_the_first, message="the second claim to wait on the row")
    release.set()
    for thread in threads:
        thread.join(30)
    assert claims["first"] is not None
    assert claims["second"] is None
    delivery.refresh_from_db()
    assert delivery.attempts == 1


def test_a_due_delivery_is_queued_once_until_its_send_runs(receiver: Receiver) -> None:
    endpoint_create(url=receiver.url, event_types=["order.created"])
    place()
    relay()
    delivery = WebhookDelivery.objects.get()
    queued: list[tuple[list[int], datetime]] = []
    now = timezone.now()

    def queue(delivery_ids: list[int], held: datetime) -> None:
        queued.append((delivery_ids, held))

    assert deliveries_dispatch_due(now=now, send=queue) == [delivery.id]
    # The passes that follow while its send waits in the queue do not queue it again.
    assert deliveries_dispatch_due(now=now + timedelta(seconds=1), send=queue) == []
    ((_, held),) = queued
    # Another send (a stale message) may not take it; the queued one may, at once.
    assert delivery_send(delivery_id=delivery.id, now=now + timedelta(seconds=1)) is None
    assert delivery_send(delivery_id=delivery.id, queued=held) == DeliveryStatus.SUCCEEDED
    assert len(receiver.received) == 1


def test_a_queued_send_that_never_runs_is_queued_again_after_its_hold(
    receiver: Receiver,
) -> None:
    endpoint_create(url=receiver.url, event_types=["order.created"])
    place()
    relay()
    delivery = WebhookDelivery.objects.get()
    now = timezone.now()
    lost: list[datetime] = []
    assert deliveries_dispatch_due(now=now, send=lambda _ids, held: lost.append(held)) == [
        delivery.id
    ]
    # Its message was lost (a broker restart): once the hold runs out it is queued again.
    later = now + QUEUED + timedelta(seconds=1)
    again: list[datetime] = []
    assert deliveries_dispatch_due(now=later, send=lambda _ids, held: again.append(held)) == [
        delivery.id
    ]
    # The lost message, were it found after all, no longer holds the delivery.
    assert delivery_claim(delivery_id=delivery.id, now=later, queued=lost[0]) is None
    assert delivery_send(delivery_id=delivery.id, now=later, queued=again[0]) == "SUCCEEDED"


def test_due_deliveries_are_sent_in_batches_per_endpoint() -> None:
    rows = [(n, 1) for n in range(1, 101)] + [(101, 2), (102, 2)]
    batches = send_batches(rows)
    # Endpoint 1's hundred in batches of twenty at most; endpoint 2's apart.
    assert [len(b) for b in batches] == [20, 20, 20, 20, 20, 1, 1]
    assert sorted(i for b in batches for i in b) == list(range(1, 103))
    assert [101] in batches and [102] in batches
    # A short backlog is still shared among several tasks.
    assert [len(b) for b in send_batches([(n, 1) for n in range(8)])] == [2, 2, 2, 2]


def _queued_sends() -> list[dict[str, Any]]:
    """Take the send messages off their queue (this session's: no worker consumes it here)."""
    from config.celery import app

    name = app.amqp.router.route({}, "webhooks.send_deliveries")["queue"].name
    found: list[dict[str, Any]] = []
    with app.connection_for_read() as conn, conn.SimpleQueue(name) as queue:
        while True:
            try:
                message = queue.get(block=False)
            except queue.Empty:
                return found
            message.ack()
            if message.headers.get("task") == "webhooks.send_deliveries":
                found.append(message.decode()[1])


def test_the_relay_queues_the_sends_it_can_at_once_and_holds_them(
    receiver: Receiver, settings: Any
) -> None:
    settings.WEBHOOK_SEND_ON_RELAY = True
    endpoint_create(url=receiver.url, event_types=ORDER_TYPES)
    place()
    _queued_sends()
    relay()
    created = WebhookDelivery.objects.get(event_type="order.created")
    confirmed = WebhookDelivery.objects.get(event_type="order.confirmed")
    # The first event of the order is held and its send queued; the next waits behind it.
    (sent,) = _queued_sends()
    assert sent["delivery_ids"] == [created.id]
    assert created.lease_until is not None
    assert datetime.fromisoformat(sent["queued"]) == created.lease_until
    assert confirmed.lease_until is None
    # Queued once: the dispatch's pass does not queue it again.
    assert deliveries_dispatch_due(send=lambda ids, held: pytest.fail("queued twice")) == []
    # The queued send delivers it, then the event that waited for it.
    assert deliveries_send(delivery_ids=[created.id], queued=created.lease_until) == {
        created.id: DeliveryStatus.SUCCEEDED,
        confirmed.id: DeliveryStatus.SUCCEEDED,
    }
    assert [json.loads(r.body)["type"] for r in receiver.received] == [
        "order.created",
        "order.confirmed",
    ]


def test_a_batch_is_claimed_at_once_each_delivery_once_first_of_its_order(
    receiver: Receiver,
) -> None:
    endpoint = endpoint_create(url=receiver.url, event_types=ORDER_TYPES).endpoint
    place()
    place()
    relay()
    rows = list(WebhookDelivery.objects.order_by("stream_version", "id"))
    firsts = [d.id for d in rows if d.event_type == "order.created"]
    later = [d.id for d in rows if d.event_type == "order.confirmed"]
    now = timezone.now()
    claimed = deliveries_claim(delivery_ids=[*later, *reversed(firsts)], now=now)
    # The confirmations wait for their orders' creations; the rest come in the order asked.
    assert [c.delivery.id for c in claimed] == list(reversed(firsts))
    assert {c.delivery.endpoint.url for c in claimed} == {endpoint.url}
    assert {c.lease_until for c in claimed} == {now + LEASE}
    assert [d.attempts for d in WebhookDelivery.objects.filter(id__in=firsts)] == [1, 1]
    # Claimed already: a second claim takes none of them.
    assert deliveries_claim(delivery_ids=firsts, now=now) == []


def test_a_batch_renews_its_lease_and_drops_what_was_taken_over(receiver: Receiver) -> None:
    endpoint_create(url=receiver.url, event_types=["order.created"])
    place()
    place()
    relay()
    ids = list(WebhookDelivery.objects.order_by("id").values_list("id", flat=True))
    now = timezone.now()
    claims = deliveries_claim(delivery_ids=ids, now=now)
    # The second one's lease ran out and another sender took it over.
    WebhookDelivery.objects.filter(id=ids[1]).update(lease_until=now + 2 * LEASE)
    later = now + LEASE / 2
    (kept,) = _lease_renew(claims, now=later)
    assert kept.delivery.id == ids[0]
    assert kept.lease_until == later + LEASE
    assert WebhookDelivery.objects.get(id=ids[0]).lease_until == later + LEASE


def test_a_batch_to_one_endpoint_goes_over_one_connection(receiver: Receiver) -> None:
    receiver.keep_alive = True
    endpoint_create(url=receiver.url, event_types=["order.created"])
    for _ in range(3):
        place()
    relay()
    ids = list(WebhookDelivery.objects.order_by("id").values_list("id", flat=True))
    statuses = deliveries_send(delivery_ids=ids)
    assert set(statuses.values()) == {DeliveryStatus.SUCCEEDED}
    assert len(receiver.received) == 3
    assert len({r.peer for r in receiver.received}) == 1


@override_settings(WEBHOOK_RETRY_BASE_SECONDS=0)
def test_a_success_is_recorded_and_clears_the_endpoints_failures(receiver: Receiver) -> None:
    endpoint = endpoint_create(url=receiver.url, event_types=["order.confirmed"]).endpoint
    place()
    relay()
    delivery = WebhookDelivery.objects.get()
    receiver.answers = [500]
    assert delivery_send(delivery_id=delivery.id) == DeliveryStatus.RETRYING
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 1
    assert delivery_send(delivery_id=delivery.id) == DeliveryStatus.SUCCEEDED
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 0
    delivery.refresh_from_db()
    assert (delivery.status, delivery.response_status, delivery.response_body) == (
        DeliveryStatus.SUCCEEDED,
        200,
        "ok",
    )
    assert delivery.last_error == "" and delivery.lease_until is None
    assert delivery.delivered_at is not None and delivery.attempts == 2


def test_a_success_after_the_delivery_was_taken_over_leaves_the_other_outcome(
    receiver: Receiver,
) -> None:
    endpoint = endpoint_create(url=receiver.url, event_types=["order.confirmed"]).endpoint
    place()
    relay()
    delivery = WebhookDelivery.objects.get()
    now = timezone.now()
    claim = delivery_claim(delivery_id=delivery.id, now=now)
    assert claim is not None
    WebhookEndpoint.objects.filter(id=endpoint.id).update(consecutive_failures=3)
    # Its lease ran out and another sender holds it now.
    WebhookDelivery.objects.filter(id=delivery.id).update(lease_until=now + 2 * LEASE)
    assert delivery_record(claim, Answer(200, "ok", ""), now=now) == DeliveryStatus.PENDING
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.delivered_at is None
    assert WebhookEndpoint.objects.get(id=endpoint.id).consecutive_failures == 3
