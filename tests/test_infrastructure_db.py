"""The server-binding cursor (infrastructure.db) and the shared-client Redis cache."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection

from infrastructure.db import server_binding_cursor

pytestmark = pytest.mark.django_db


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


def test_the_cache_reuses_one_redis_client() -> None:
    cache.set("config-db-test", 1)

    backend = cache._cache  # type: ignore[attr-defined]
    assert backend.get_client(write=True) is backend.get_client(write=True)
    assert cache.get("config-db-test") == 1
    cache.delete("config-db-test")
