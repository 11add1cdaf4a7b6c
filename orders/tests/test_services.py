"""The orders' write services on real PostgreSQL: what placing an order commits, and how."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from uuid import uuid4

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import Model
from django.test.utils import CaptureQueriesContext

from eventstore.models import StoredEvent
from orders.models import OrderSummary
from orders.services import OrderAlreadyPlaced, OrderLineRequest, PlacedOrder, order_place
from payments.models import SimulatedCharge
from sagas import recorder
from sagas.models import Saga, SagaStep
from sagas.tests.harness import drive
from tests.factories import make_product

pytestmark = pytest.mark.django_db(transaction=True)


def place(**overrides: object) -> PlacedOrder:
    product = make_product(price="4.50", name="Mug")
    arguments: dict[str, object] = {
        "customer_id": "c-7",
        "lines": [OrderLineRequest(product.sku, 2)],
        "payment_token": "tok_visa",
        "actor": "user:7",
        **overrides,
    }
    return order_place(**arguments)  # type: ignore[arg-type]


def test_placing_returns_the_read_model_row_as_written() -> None:
    placed = place()

    stored = OrderSummary.objects.get(id=placed.order_id)
    for field in OrderSummary._meta.concrete_fields:
        assert getattr(placed.order, field.attname) == getattr(stored, field.attname), field.name
    assert (placed.order.status, placed.order.total, placed.order.version) == (
        "PENDING",
        Decimal("9.00"),
        1,
    )
    assert Saga.objects.get(pk=placed.saga_id).subject == f"order:{placed.order_id}"


def test_placing_under_an_id_already_placed_writes_nothing() -> None:
    order_id = uuid4()
    place(order_id=order_id)

    with pytest.raises(OrderAlreadyPlaced):
        place(order_id=order_id)

    assert StoredEvent.objects.filter(stream_id=str(order_id)).count() == 1
    assert Saga.objects.filter(subject=f"order:{order_id}").count() == 1


def test_the_order_its_row_and_its_saga_commit_together_or_not_at_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    insert = recorder.prepared_insert_row_groups

    def refused_saga_insert(groups: Sequence[Sequence[Model]]) -> None:
        for objs in groups:
            if objs and isinstance(objs[0], Saga):
                objs[0].status = "NO SUCH STATUS"  # the database's check constraint refuses it
        insert(groups)

    monkeypatch.setattr(recorder, "prepared_insert_row_groups", refused_saga_insert)
    order_id = uuid4()

    with pytest.raises(DatabaseError, match="sagas_saga_status_valid"):
        place(order_id=order_id)

    assert not StoredEvent.objects.filter(stream_id=str(order_id)).exists()
    assert not OrderSummary.objects.filter(id=order_id).exists()
    assert not Saga.objects.exists() and not SagaStep.objects.exists()


def test_placing_owns_its_transaction() -> None:
    with transaction.atomic(), pytest.raises(RuntimeError, match="durable"):
        place()
    assert not OrderSummary.objects.exists()


def test_the_read_model_row_is_written_with_every_column_of_its_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection.ensure_connection()
    # A prepared statement logs no text: keep these unprepared.
    monkeypatch.setattr(connection.connection, "prepare_threshold", None)
    with CaptureQueriesContext(connection) as queries:
        place()

    table = OrderSummary._meta.db_table
    [insert] = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith(f'INSERT INTO "{table}"')
    ]
    column_list = insert.split("(", 1)[1].split(")", 1)[0]
    written = {c.strip().strip('"') for c in column_list.split(",")}
    assert written == {f.column for f in OrderSummary._meta.concrete_fields}


def test_a_saga_whose_token_was_scrubbed_is_refused_at_the_charge_never_charged() -> None:
    # A placing saga of before the upgrade: sagas 0008 removed its token, and it has no
    # payment method either.
    placed = place()
    saga = Saga.objects.get(pk=placed.saga_id)
    saga.context.pop("payment_method")
    Saga.objects.filter(pk=saga.pk).update(context=saga.context)

    finished = drive(placed.saga_id)

    assert finished.status == "COMPENSATED"
    assert (finished.failure_step, finished.failure_code) == ("charge_payment", "payment_rejected")
    assert "no payment method" in finished.failure_message
    assert not SimulatedCharge.objects.exists()
    assert OrderSummary.objects.get(id=placed.order_id).status == "CANCELLED"
