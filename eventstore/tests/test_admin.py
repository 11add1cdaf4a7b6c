"""The event browser: read-only, links to what an event is about and to its correlation."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.urls import reverse

from eventstore.admin import distinct_values
from eventstore.models import StoredEvent
from sagas.models import Saga
from tests.admin.support import confirmed_order, place, queries_for, staff_client

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:eventstore_storedevent_changelist")


def test_events_link_to_their_order_and_to_the_saga_that_wrote_them() -> None:
    client, _ = staff_client()
    order_id = confirmed_order()
    saga = Saga.objects.get(subject=f"order:{order_id}")
    confirmed = StoredEvent.objects.get(stream_id=str(order_id), event_type="OrderConfirmed")

    listing = client.get(CHANGELIST).content.decode()
    page = client.get(reverse("admin:eventstore_storedevent_change", args=[confirmed.pk]))

    order_url = reverse("admin:orders_order_change", args=[str(order_id)])
    saga_url = reverse("admin:sagas_saga_change", args=[saga.pk])
    assert order_url in listing and saga_url in listing
    html = page.content.decode()
    assert page.status_code == 200
    assert order_url in html and saga_url in html and "confirm_order action" in html


def test_a_correlation_id_leads_to_the_events_and_sagas_sharing_it() -> None:
    client, _ = staff_client()
    first = place(customer="c-1")
    second = place(customer="c-2")
    correlation = Saga.objects.get(pk=first.saga_id).correlation_id
    event = StoredEvent.objects.get(stream_id=str(first.order_id))
    query = urlencode({"correlation_id": correlation})

    page = client.get(reverse("admin:eventstore_storedevent_change", args=[event.pk]))
    events = client.get(f"{CHANGELIST}?{query}").content.decode()
    sagas = client.get(f"{reverse('admin:sagas_saga_changelist')}?{query}").content.decode()

    html = page.content.decode()
    assert f"{CHANGELIST}?{query}" in html.replace("&amp;", "&")
    assert f"{reverse('admin:sagas_saga_changelist')}?{query}" in html.replace("&amp;", "&")
    assert str(first.order_id) in events
    assert str(second.order_id) not in events
    assert str(first.saga_id) in sagas
    other_saga = Saga.objects.exclude(pk=first.saga_id).get()
    assert str(other_saga.pk) not in sagas


def test_events_cannot_be_added_changed_or_deleted() -> None:
    client, _ = staff_client()
    event = StoredEvent.objects.get(stream_id=str(place().order_id))

    assert client.get(reverse("admin:eventstore_storedevent_add")).status_code == 403
    change = reverse("admin:eventstore_storedevent_change", args=[event.pk])
    assert client.post(change, {"event_type": "Forged"}).status_code == 403
    delete = reverse("admin:eventstore_storedevent_delete", args=[event.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert StoredEvent.objects.get(pk=event.pk).event_type == "OrderCreated"


@pytest.mark.internals
def test_event_pages_queries_do_not_grow_with_rows() -> None:
    client, _ = staff_client()
    for _ in range(3):
        place()
    first = StoredEvent.objects.order_by("position").first()
    assert first is not None
    detail = reverse("admin:eventstore_storedevent_change", args=[first.pk])
    # Warm both pages: a first view fills per-process caches (content types) the next reuses.
    queries_for(client, CHANGELIST)
    queries_for(client, detail)
    few = (queries_for(client, CHANGELIST), queries_for(client, detail))
    for _ in range(27):
        place()
    many = (queries_for(client, CHANGELIST), queries_for(client, detail))

    print(f"\nevent changelist, event page: {few} queries with 3 events, {many} with 30")
    assert StoredEvent.objects.count() == 30
    assert few == many


def test_events_are_searched_by_exact_stream_or_event_id_and_filtered_by_type() -> None:
    client, _ = staff_client()
    first, second = place(), place()
    confirmed = confirmed_order()
    event = StoredEvent.objects.get(stream_id=str(first.order_id))

    by_stream = client.get(CHANGELIST, {"q": str(first.order_id)}).content.decode()
    by_event_id = client.get(CHANGELIST, {"q": str(event.event_id)}).content.decode()
    by_type = client.get(CHANGELIST, {"event_type": "OrderConfirmed"}).content.decode()
    listing = client.get(CHANGELIST).content.decode()

    assert str(first.order_id) in by_stream and str(second.order_id) not in by_stream
    assert str(first.order_id) in by_event_id and str(second.order_id) not in by_event_id
    assert str(confirmed) in by_type and str(first.order_id) not in by_type
    # The type filters list what the log holds (found by index probes, not a scan).
    assert "?event_type=OrderConfirmed" in listing and "?stream_type=order" in listing
    assert distinct_values("event_type") == ["OrderConfirmed", "OrderCreated"]
