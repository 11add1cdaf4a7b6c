"""read_snapshot: every query of a page sees the database as of one instant."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from infrastructure.snapshots import read_snapshot
from inventory.models import Product
from tests.factories import make_product

pytestmark = pytest.mark.django_db(transaction=True)


def _restock_elsewhere(sku: str, on_hand: int) -> None:
    # Another connection (another thread) commits while the snapshot is open.
    def work() -> None:
        try:
            with transaction.atomic():
                Product.objects.filter(sku=sku).update(stock_on_hand=on_hand)
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_queries_inside_a_snapshot_do_not_see_a_commit_made_meanwhile() -> None:
    product = make_product(stock=10)

    with read_snapshot():
        before = Product.objects.get(pk=product.pk).stock_on_hand
        _restock_elsewhere(product.sku, 99)
        during = Product.objects.get(pk=product.pk).stock_on_hand

    assert (before, during) == (10, 10)
    assert Product.objects.get(pk=product.pk).stock_on_hand == 99


def test_without_a_snapshot_the_second_query_sees_the_commit() -> None:
    # The control: READ COMMITTED is what makes a page contradict itself.
    product = make_product(stock=10)

    with transaction.atomic():
        before = Product.objects.get(pk=product.pk).stock_on_hand
        _restock_elsewhere(product.sku, 99)
        during = Product.objects.get(pk=product.pk).stock_on_hand

    assert (before, during) == (10, 99)
