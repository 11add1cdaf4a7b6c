"""The prepared-statement helpers (infrastructure.db) and the shared-client Redis cache."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from eventstore.models import StoredEvent
from eventstore.postgres import PostgresEventStore
from eventstore.records import NewEvent
from infrastructure.db import (
    pipelined_transaction,
    prepared_insert,
    prepared_insert_rows,
    prepared_select,
    server_binding_cursor,
)
from payments.models import Payment, PaymentStatus, SimulatedCharge, SimulatedChargeOutcome

pytestmark = pytest.mark.django_db


def _charge(key: str) -> SimulatedCharge:
    return SimulatedCharge(
        reference=f"ref-{key}",
        idempotency_key=key,
        token="tok_visa",
        amount=Decimal("12.50"),
        currency="EUR",
        outcome=SimulatedChargeOutcome.APPROVED,
        created_at=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
    )


def _payment(key: str, status: PaymentStatus, **fields: str) -> Payment:
    at = datetime(2026, 11, 26, tzinfo=UTC)
    return Payment(
        order_id=uuid4(),
        idempotency_key=key,
        amount=Decimal("3.00"),
        currency="EUR",
        token="tok_visa",
        status=status,
        created_at=at,
        updated_at=at,
        **fields,
    )


def test_prepared_insert_writes_every_field_and_returns_an_auto_primary_key() -> None:
    first, second = _charge("k1"), _charge("k2")

    prepared_insert(first)
    prepared_insert(second)

    assert first.pk is not None and second.pk == first.pk + 1
    assert not first._state.adding
    stored = SimulatedCharge.objects.get(pk=first.pk)
    assert (stored.idempotency_key, stored.amount, stored.outcome, stored.decline_code) == (
        "k1",
        Decimal("12.50"),
        "APPROVED",
        "",
    )
    assert stored.created_at == datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_prepared_insert_keeps_a_client_chosen_primary_key_and_the_constraints() -> None:
    payment = _payment("pay-1", PaymentStatus.CHARGED, gateway_reference="ch_1")
    prepared_insert(payment)
    assert Payment.objects.get(pk=payment.pk).idempotency_key == "pay-1"

    twin = _payment("pay-1", PaymentStatus.DECLINED, decline_code="card_declined")
    with pytest.raises(IntegrityError), transaction.atomic():
        prepared_insert(twin)


def test_prepared_select_returns_model_instances_and_decodes_what_the_orm_decodes() -> None:
    prepared_insert(_charge("a"))
    prepared_insert(_charge("b"))

    found = prepared_select(SimulatedCharge, "idempotency_key = ANY(%s::text[])", [["b", "x"]])

    assert [c.idempotency_key for c in found] == ["b"]
    assert found[0].amount == Decimal("12.50") and not found[0]._state.adding
    stream = str(uuid4())
    PostgresEventStore().append(
        stream_type="t", stream_id=stream, expected_version=0, events=[NewEvent("E", {"n": [1]})]
    )
    [event] = prepared_select(StoredEvent, "stream_id = %s", [stream])
    assert (event.data, event.metadata) == ({"n": [1]}, {})


def test_prepared_insert_rows_writes_every_field_defaults_included_and_reads_nothing() -> None:
    charges = [_charge("r1"), _charge("r2")]
    charges[1].decline_code = "set"

    with CaptureQueriesContext(connection) as queries:
        prepared_insert_rows(charges)
        prepared_insert_rows([_charge("r1")], ignore_conflicts=True)

    assert len(queries) == 2
    stored = SimulatedCharge.objects.order_by("idempotency_key")
    # decline_code was left to its model default on the first: written as that default.
    assert [(c.idempotency_key, c.decline_code) for c in stored] == [("r1", ""), ("r2", "set")]
    with pytest.raises(IntegrityError), transaction.atomic():
        prepared_insert_rows([_charge("r2")])


@pytest.mark.django_db(transaction=True)
def test_a_pipelined_transaction_commits_its_unread_writes_or_none_of_them() -> None:
    with pipelined_transaction():
        prepared_insert_rows([_charge("p1")])
        prepared_insert_rows([_charge("p2")])
    assert SimulatedCharge.objects.count() == 2

    # The duplicate's error is only known at the commit; the whole transaction rolls back.
    with pytest.raises(IntegrityError), pipelined_transaction():
        prepared_insert_rows([_charge("p3")])
        prepared_insert_rows([_charge("p1")])
    assert SimulatedCharge.objects.count() == 2
    with transaction.atomic(), pytest.raises(RuntimeError, match="durable"):
        with pipelined_transaction():
            pass


@pytest.mark.internals
def test_the_server_binding_cursor_prepares_a_statement_it_runs_repeatedly() -> None:
    sql = "SELECT count(*) FROM payments_simulatedcharge WHERE idempotency_key = %s"
    for _ in range(6):
        with server_binding_cursor() as cursor:
            cursor.execute(sql, ["none"])
            assert cursor.fetchone() == (0,)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%payments_simulatedcharge WHERE idempotency_key = $1%"],
        )
        assert cursor.fetchone() == (1,)


@pytest.mark.internals
def test_the_cache_reuses_one_redis_client() -> None:
    cache.set("config-db-test", 1)

    backend = cache._cache  # type: ignore[attr-defined]
    assert backend.get_client(write=True) is backend.get_client(write=True)
    assert cache.get("config-db-test") == 1
    cache.delete("config-db-test")
