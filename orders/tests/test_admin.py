"""The order pages of the admin: list, history, state as of a version, cancel, and their cost."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from eventstore.models import StoredEvent
from orders.models import OrderSummary
from orders.services import order_request_cancellation
from sagas.models import Saga
from sagas.tests.harness import drive
from tests.admin.support import confirmed_order, place, queries_for, staff_client

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:orders_ordersummary_changelist")


def change_url(order_id) -> str:
    return reverse("admin:orders_ordersummary_change", args=[order_id])


def cancel_url(order_id) -> str:
    return reverse("admin:orders_ordersummary_cancel", args=[order_id])


def test_changelist_filters_by_status_and_date_and_searches_id_and_customer() -> None:
    client, _ = staff_client()
    confirmed = confirmed_order(customer="alice-1")
    pending = place(customer="bob-2").order_id

    by_status = client.get(CHANGELIST, {"status__exact": "CONFIRMED"}).content.decode()
    by_id = client.get(CHANGELIST, {"q": str(pending)}).content.decode()
    by_customer = client.get(CHANGELIST, {"q": "alice"}).content.decode()
    created = OrderSummary.objects.get(pk=pending).created_at
    day = {
        "created_at__gte": created.strftime("%Y-%m-%d 00:00:00+00:00"),
        "created_at__lt": "2999-01-01 00:00:00+00:00",
    }
    by_date = client.get(CHANGELIST, day).content.decode()
    old = client.get(
        CHANGELIST,
        {
            "created_at__gte": "2000-01-01 00:00:00+00:00",
            "created_at__lt": "2000-01-02 00:00:00+00:00",
        },
    ).content.decode()

    assert str(confirmed) in by_status and str(pending) not in by_status
    saga = Saga.objects.get(subject=f"order:{confirmed}")
    assert reverse("admin:sagas_saga_change", args=[saga.pk]) in by_status
    assert "backoffice-status-COMPLETED" in by_status  # its newest saga's status
    assert str(pending) in by_id and str(confirmed) not in by_id
    assert str(confirmed) in by_customer and str(pending) not in by_customer
    assert str(confirmed) in by_date and str(pending) in by_date
    assert str(confirmed) not in old


def test_order_page_shows_data_sagas_event_timeline_and_state_as_of_a_version() -> None:
    client, _ = staff_client()
    order_id = confirmed_order(customer="c-77")
    saga = Saga.objects.get(subject=f"order:{order_id}")

    page = client.get(change_url(order_id))
    html = page.content.decode()

    assert page.status_code == 200
    assert "c-77" in html and "CONFIRMED" in html
    assert reverse("admin:sagas_saga_change", args=[saga.pk]) in html
    assert "Event timeline" in html and "OrderCreated" in html and "OrderConfirmed" in html
    assert "user:test" in html  # the actor of OrderCreated (no such user: shown as is)
    assert "&quot;customer_id&quot;: &quot;c-77&quot;" in html  # readable JSON data

    as_of = client.get(change_url(order_id), {"version": "1"}).content.decode()
    assert 'id="as-of-state"' in as_of
    state = as_of[as_of.index('id="as-of-state"') :]
    assert "PENDING" in state.split("</table>")[0]
    out_of_range = client.get(change_url(order_id), {"version": "9"}).content.decode()
    assert "This order has versions 1 to 2." in out_of_range


def test_orders_cannot_be_added_changed_or_deleted() -> None:
    client, _ = staff_client("orders.cancel_order")
    order_id = confirmed_order()

    assert client.get(reverse("admin:orders_ordersummary_add")).status_code == 403
    assert client.post(change_url(order_id), {"status": "CANCELLED"}).status_code == 403
    delete = reverse("admin:orders_ordersummary_delete", args=[order_id])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert 'name="_save"' not in client.get(change_url(order_id)).content.decode()
    assert OrderSummary.objects.get(pk=order_id).status == "CONFIRMED"


def test_staff_with_the_permission_cancel_a_confirmed_order_after_confirming() -> None:
    client, user = staff_client("orders.cancel_order")
    order_id = confirmed_order()

    assert cancel_url(order_id) in client.get(change_url(order_id)).content.decode()
    confirm = client.get(cancel_url(order_id))
    assert confirm.status_code == 200 and "Yes, cancel the order" in confirm.content.decode()
    assert not Saga.objects.filter(saga_type="cancel_order").exists()

    done = client.post(cancel_url(order_id), {"post": "yes"}, follow=True)

    assert done.redirect_chain[0][0] == change_url(order_id)
    cancel_saga = Saga.objects.get(saga_type="cancel_order")
    assert cancel_saga.actor == f"user:{user.pk}"
    assert any(str(cancel_saga.pk) in str(m) for m in get_messages(done.wsgi_request))
    assert drive(cancel_saga.pk).status == "COMPLETED"
    order = OrderSummary.objects.get(pk=order_id)
    assert (order.status, order.cancellation_reason) == ("CANCELLED", "cancelled_by_staff")
    timeline = client.get(change_url(order_id)).content.decode().split('id="event-timeline"')[1]
    assert "OrderCancelled" in timeline and user.username in timeline
    assert f"user:{user.pk}" not in timeline
    # A cancelled order offers no cancel button, and a forged cancel is refused with a message.
    assert cancel_url(order_id) not in client.get(change_url(order_id)).content.decode()
    again = client.post(cancel_url(order_id), {"post": "yes"}, follow=True)
    assert any("not cancelled" in str(m) for m in get_messages(again.wsgi_request))
    assert Saga.objects.filter(saga_type="cancel_order").count() == 1


def test_bulk_cancel_asks_for_confirmation_and_reports_each_order() -> None:
    client, user = staff_client("orders.cancel_order")
    confirmed, pending, cancelled = confirmed_order(), place(), place()
    order_request_cancellation(order_id=cancelled.order_id, actor="user:0", acting_as_staff=True)
    assert drive(cancelled.saga_id).status == "COMPENSATED"
    ids = [str(confirmed), str(pending.order_id), str(cancelled.order_id)]

    assert 'value="cancel_orders"' in client.get(CHANGELIST).content.decode()
    ask = client.post(CHANGELIST, {"action": "cancel_orders", "_selected_action": ids, "index": 0})
    assert ask.status_code == 200
    html = ask.content.decode()
    assert "Yes, cancel the orders" in html and "1 of the selected orders will be refused" in html
    assert not Saga.objects.filter(saga_type="cancel_order").exists()

    done = client.post(
        CHANGELIST, {"action": "cancel_orders", "_selected_action": ids, "post": "yes"}, follow=True
    )

    notes = [str(m) for m in get_messages(done.wsgi_request)]
    assert len([m for m in notes if "requested" in m]) == 2
    assert any(str(cancelled.order_id) in m and "not cancelled" in m for m in notes)
    subjects = set(Saga.objects.filter(saga_type="cancel_order").values_list("subject", flat=True))
    assert subjects == {f"order:{confirmed}"}
    stopped = Saga.objects.get(pk=pending.saga_id)
    assert (stopped.stop_code, stopped.stop_actor) == ("cancelled_by_staff", f"user:{user.pk}")


def test_a_pending_order_is_cancelled_from_the_admin_by_stopping_its_placing_saga() -> None:
    client, _ = staff_client("orders.cancel_order")
    placed = place()
    order_id = placed.order_id

    assert cancel_url(order_id) in client.get(change_url(order_id)).content.decode()
    confirm = client.get(cancel_url(order_id)).content.decode()
    assert "Yes, cancel the order" in confirm and "stops at its next step" in confirm
    done = client.post(cancel_url(order_id), {"post": "yes"}, follow=True)

    assert any(str(placed.saga_id) in str(m) for m in get_messages(done.wsgi_request))
    assert not Saga.objects.filter(saga_type="cancel_order").exists()
    assert drive(placed.saga_id).status == "COMPENSATED"
    order = OrderSummary.objects.get(pk=order_id)
    assert (order.status, order.cancellation_reason) == ("CANCELLED", "cancelled_by_staff")


def test_staff_without_the_cancel_permission_see_no_button_and_get_403() -> None:
    client, _ = staff_client()
    order_id = confirmed_order()

    assert cancel_url(order_id) not in client.get(change_url(order_id)).content.decode()
    assert client.get(cancel_url(order_id)).status_code == 403
    assert client.post(cancel_url(order_id), {"post": "yes"}).status_code == 403
    assert 'value="cancel_orders"' not in client.get(CHANGELIST).content.decode()
    forged = {"action": "cancel_orders", "_selected_action": [str(order_id)], "post": "yes"}
    assert client.post(CHANGELIST, forged).status_code == 403
    assert not Saga.objects.filter(saga_type="cancel_order").exists()


def test_cancel_needs_a_csrf_token() -> None:
    client, _ = staff_client("orders.cancel_order", enforce_csrf=True)
    order_id = confirmed_order()

    assert client.post(cancel_url(order_id), {"post": "yes"}).status_code == 403
    bulk = {"action": "cancel_orders", "_selected_action": [str(order_id)], "post": "yes"}
    assert client.post(CHANGELIST, bulk).status_code == 403
    assert not Saga.objects.filter(saga_type="cancel_order").exists()


@pytest.mark.internals
def test_changelist_queries_do_not_grow_with_rows() -> None:
    client, _ = staff_client()
    for _ in range(3):
        place()
    queries_for(client, CHANGELIST)
    few = queries_for(client, CHANGELIST)
    for _ in range(27):
        place()
    many = queries_for(client, CHANGELIST)

    print(f"\norder changelist: {few} queries with 3 rows, {many} with 30")
    assert OrderSummary.objects.count() == 30
    assert few == many


@pytest.mark.internals
def test_order_page_queries_do_not_grow_with_events_and_sagas() -> None:
    client, user = staff_client("orders.cancel_order")
    small = place(actor=f"user:{user.pk}").order_id
    big = confirmed_order()
    client.post(cancel_url(big), {"post": "yes"})
    drive(Saga.objects.get(saga_type="cancel_order").pk)
    queries_for(client, change_url(small))

    few = queries_for(client, change_url(small))
    many = queries_for(client, change_url(big))

    events = (
        StoredEvent.objects.filter(stream_id=str(small)).count(),
        StoredEvent.objects.filter(stream_id=str(big)).count(),
    )
    print(f"\norder page: {few} queries with {events[0]} event, {many} with {events[1]}")
    assert events == (1, 3) and Saga.objects.filter(subject=f"order:{big}").count() == 2
    assert few == many
