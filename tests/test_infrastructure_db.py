"""The server-binding cursor (infrastructure.db) and the shared-client Redis cache."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from infrastructure.db import (
    pipelined_transaction,
    prepared_insert_row_groups,
    prepared_insert_rows,
    server_binding_cursor,
)
from payments.models import SimulatedCharge, SimulatedChargeOutcome, SimulatedTransientFailure
from tests.cards import card_of_charge

pytestmark = pytest.mark.django_db


def _charge(key: str) -> SimulatedCharge:
    return SimulatedCharge(
        reference=f"ref-{key}",
        idempotency_key=key,
        **card_of_charge(),
        amount=Decimal("12.50"),
        currency="EUR",
        outcome=SimulatedChargeOutcome.APPROVED,
        created_at=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
    )


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


def test_prepared_insert_row_groups_writes_every_group_in_one_statement_or_none() -> None:
    failure = SimulatedTransientFailure(
        idempotency_key="g1", updated_at=datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    )

    with CaptureQueriesContext(connection) as queries:
        prepared_insert_row_groups([[_charge("g1"), _charge("g2")], [], [failure]])

    assert len(queries) == 1
    assert sorted(SimulatedCharge.objects.values_list("idempotency_key", flat=True)) == [
        "g1",
        "g2",
    ]
    # failures was left to its model default: written as that default.
    assert SimulatedTransientFailure.objects.get().failures == 0
    # A later group's duplicate refuses the whole statement, the earlier group's rows too.
    with pytest.raises(IntegrityError), transaction.atomic():
        prepared_insert_row_groups([[_charge("g3")], [failure]])
    assert not SimulatedCharge.objects.filter(idempotency_key="g3").exists()


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
