"""The order read side: ``?version=N`` is a replay; the order projector gates, heals, catches up.

Orders here have every event an order can have (created, confirmed, cancelled), so each
version differs from the next and from the current state: a replay that ignored ``version``,
or a projector that applied an event twice or skipped one, shows.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from django.core.management import call_command
from django.db import connection

from eventstore.models import StoredEvent
from eventstore.postgres import PostgresEventStore
from eventstore.projections import get_projector, projection_catch_up, projection_rebuild
from eventstore.records import EventMetadata, RecordedEvent
from eventstore.registry import events as registry
from eventstore.verify import event_store_verify
from lab.worker import delete_queue
from orders.domain import Order as OrderAggregate
from orders.models import OrderSummary
from orders.projections import ORDER_EVENTS, row_from_stream
from orders.services import (
    OrderLineRequest,
    PlacedOrder,
    order_confirm,
    order_place,
    order_request_cancellation,
)
from sagas.tests.harness import drive
from tests.factories import api_client, make_product, make_user
from tests.support.worker import wait_for


@pytest.fixture
def catalogue() -> None:
    make_product("RS-A", price="4.50", stock=50, name="Mug")
    make_product("RS-B", price="1.25", stock=50, name="Tea")


def place(*, confirm: bool = True, cancel: bool = False) -> PlacedOrder:
    """Place an order in this process; run its saga, then optionally cancel it (a third event)."""
    placed = order_place(
        customer_id="c-rs",
        lines=[OrderLineRequest("RS-A", 2), OrderLineRequest("RS-B", 3)],
        payment_token="tok_visa",
        actor="user:1",
    )
    if confirm:
        drive(placed.saga_id)
    if cancel:
        drive(
            order_request_cancellation(
                order_id=placed.order_id,
                actor="user:2",
                acting_as_staff=True,
            )
        )
    return placed


def stream(order_id: UUID) -> list[RecordedEvent]:
    return PostgresEventStore().read_stream(stream_type="order", stream_id=str(order_id))


def replay(events: list[RecordedEvent]) -> dict[str, Any]:
    """Replay events through the aggregate alone: what an order was after the last of them."""
    order = OrderAggregate(events[0].stream_id)
    for event in events:
        order.replay(registry.decode(event.event_type, event.schema_version, dict(event.data)))
    return {
        "status": order.status.value,
        "cancellation_reason": (
            order.cancellation_reason.value if order.cancellation_reason else None
        ),
        "total": str(order.total),
        "items": [(line.sku, line.quantity, str(line.line_total)) for line in order.lines],
        "version": order.version,
    }


def shown(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": body["status"],
        "cancellation_reason": body["cancellation_reason"],
        "total": body["total"],
        "items": [(i["sku"], i["quantity"], i["line_total"]) for i in body["items"]],
        "version": body["version"],
    }


def row(order_id: UUID) -> tuple[str, int, Decimal]:
    order = OrderSummary.objects.get(pk=order_id)
    return order.status, order.version, order.total


# -- ?version=N ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_each_version_of_an_order_is_the_replay_of_its_events_up_to_it(catalogue: None) -> None:
    placed = place(cancel=True)
    events = stream(placed.order_id)
    client = api_client(make_user(superuser=True))
    url = f"/api/orders/{placed.order_id}/"
    assert [e.event_type for e in events] == ["OrderCreated", "OrderConfirmed", "OrderCancelled"]

    versions = {n: client.get(url, {"version": n}) for n in (1, 2, 3)}

    assert {n: r.status_code for n, r in versions.items()} == {1: 200, 2: 200, 3: 200}
    for n, response in versions.items():
        assert shown(response.json()) == replay(events[:n]), f"version {n}"
    statuses = [versions[n].json()["status"] for n in (1, 2, 3)]
    assert statuses == ["PENDING", "CONFIRMED", "CANCELLED"]
    assert shown(versions[3].json()) == shown(client.get(url).json())
    beyond = client.get(url, {"version": 4})
    assert beyond.status_code == 404
    assert "has versions 1 to 3" in beyond.json()["detail"]


# -- the projector, handed events directly ---------------------------------------------------


@pytest.mark.django_db
def test_an_event_the_row_already_holds_changes_nothing(catalogue: None) -> None:
    placed = place(cancel=True)
    confirmed = stream(placed.order_id)[1]
    before = OrderSummary.objects.get(pk=placed.order_id)

    get_projector("orders").handle(confirmed)

    after = OrderSummary.objects.get(pk=placed.order_id)
    assert (after.status, after.version, after.updated_at) == (
        "CANCELLED",
        3,
        before.updated_at,
    )


@pytest.mark.django_db
def test_an_event_past_a_gap_rebuilds_the_row_from_its_stream(catalogue: None) -> None:
    placed = place(cancel=True)
    events = stream(placed.order_id)
    # The row as it was at version 1, as a reader that met version 3 before 2 would find it.
    OrderSummary.objects.filter(pk=placed.order_id).update(
        status="PENDING", version=1, cancellation_reason="", updated_at=events[0].recorded_at
    )

    get_projector("orders").handle(events[2])

    assert row(placed.order_id) == ("CANCELLED", 3, Decimal("12.75"))
    assert event_store_verify().ok


@pytest.mark.django_db
def test_an_update_for_a_missing_row_heals_it_from_its_stream(catalogue: None) -> None:
    placed = place()
    OrderSummary.objects.filter(pk=placed.order_id).delete()

    get_projector("orders").handle(stream(placed.order_id)[1])

    assert row(placed.order_id) == ("CONFIRMED", 2, Decimal("12.75"))
    assert event_store_verify().ok


# -- catch-up and rebuild read the committed log --------------------------------------------


@pytest.fixture
def committed(settings: Any) -> Iterator[None]:
    """Commit for real, sending step messages to a queue no worker reads (deleted after)."""
    queue = f"read-side-{uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    yield
    delete_queue(queue)


def wait_until_the_log_shows_every_order_event() -> None:
    """Wait (bounded) until the log's readers can see every stored order event.

    Readers see only transactions older than every running one, and transaction ids belong
    to the whole server: a transaction open in another database holds the horizon back.
    """
    stored = StoredEvent.objects.filter(stream_type="order").count()
    wait_for(
        lambda: (
            len(PostgresEventStore().read_all(limit=stored + 1, event_types=ORDER_EVENTS)) == stored
        ),
        timeout=120,
        message=f"the log to show all {stored} order events",
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_catch_up_applies_what_came_after_its_checkpoint_and_restores_a_lost_row(
    catalogue: None,
) -> None:
    place(cancel=True)
    wait_until_the_log_shows_every_order_event()
    projection_rebuild(name="orders")
    later = [place(), place(cancel=True)]
    lost = later[1].order_id
    OrderSummary.objects.filter(pk=lost).delete()
    wait_until_the_log_shows_every_order_event()

    result = projection_catch_up(name="orders")

    # Two events of the confirmed order, three of the cancelled one: nothing before the
    # checkpoint is read again.
    assert (result.events, result.skipped_busy) == (5, False)
    assert row(lost) == ("CANCELLED", 3, Decimal("12.75"))
    assert row(later[0].order_id) == ("CONFIRMED", 2, Decimal("12.75"))
    assert event_store_verify().ok
    assert projection_catch_up(name="orders").events == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_rebuild_projections_orders_restores_every_row_from_the_log(catalogue: None) -> None:
    confirmed, cancelled, pending = place(), place(cancel=True), place(confirm=False)
    OrderSummary.objects.filter(pk=confirmed.order_id).update(total=Decimal("0.01"))
    OrderSummary.objects.filter(pk=cancelled.order_id).delete()
    assert not event_store_verify().ok
    wait_until_the_log_shows_every_order_event()
    out = io.StringIO()

    call_command("rebuild_projections", "orders", stdout=out)

    assert "orders: 6/6 events" in out.getvalue()
    assert row(confirmed.order_id) == ("CONFIRMED", 2, Decimal("12.75"))
    assert row(cancelled.order_id) == ("CANCELLED", 3, Decimal("12.75"))
    assert row(pending.order_id) == ("PENDING", 1, Decimal("12.75"))
    assert event_store_verify().ok


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_a_rebuild_lets_a_confirmation_commit_while_it_runs_and_ends_equal_to_a_replay(
    catalogue: None,
) -> None:
    healthy, damaged, lost = place(), place(), place(cancel=True)
    pending = place(confirm=False)
    OrderSummary.objects.filter(pk=damaged.order_id).update(total=Decimal("0.01"))
    OrderSummary.objects.filter(pk=lost.order_id).delete()
    orphan = OrderSummary.objects.create(
        id=uuid4(),
        **{**row_from_stream(stream(healthy.order_id)), "created_position": -1},
    )
    wait_until_the_log_shows_every_order_event()
    confirmed = threading.Event()

    def confirm() -> None:
        try:
            order_confirm(order_id=pending.order_id, metadata=EventMetadata(actor="system"))
            confirmed.set()
        finally:
            connection.close()

    during: list[bool] = []

    def progress(done: int, total: int) -> None:
        # After the first batch, while the rebuild still has batches to go: another
        # connection confirms an order, and the rebuild waits (bounded) for it to commit.
        if done and not during:
            thread = threading.Thread(target=confirm)
            thread.start()
            during.append(confirmed.wait(timeout=15))

    result = projection_rebuild(name="orders", batch_size=1, progress=progress)

    assert during == [True], "the confirmation waited for the rebuild"
    assert row(pending.order_id) == ("CONFIRMED", 2, Decimal("12.75"))
    assert row(damaged.order_id) == ("CONFIRMED", 2, Decimal("12.75"))
    assert row(lost.order_id) == ("CANCELLED", 3, Decimal("12.75"))
    assert not OrderSummary.objects.filter(pk=orphan.pk).exists()
    assert (result.written, result.removed) == (2, 1)
    assert event_store_verify().ok
