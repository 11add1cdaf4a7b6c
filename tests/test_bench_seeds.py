"""The benchmarks' SQL seeds keep up with the schema: each writes rows the tables accept.

A benchmark seeds with SQL for speed, so a column added without a database default (as the
order's ``customer_key`` was) breaks it only when the benchmark runs; these run the seeds on
a few rows in every test run instead.
"""

from __future__ import annotations

import pytest
from django.db import connection

from bench import admin_pages
from orders.models import OrderSummary
from sagas.models import Saga, SagaStep

# transaction=True: the seed ends with VACUUM, which runs outside any transaction.
pytestmark = pytest.mark.django_db(transaction=True)


def test_the_admin_pages_benchmarks_seed_writes_orders_sagas_steps_and_events() -> None:
    admin_pages._seed(first_order=1, orders=20, total_events=300, filler_from=1)

    assert OrderSummary.objects.count() == 20
    assert Saga.objects.count() == 20
    assert SagaStep.objects.count() == 20 * 4
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM eventstore_event")
        (events,) = cursor.fetchone()
    assert events >= 300
