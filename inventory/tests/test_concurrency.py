"""Concurrent reservations on real PostgreSQL: separate connections, committed transactions.

Each thread gets its own database connection (Django's connections are per thread), so these
tests use ``transaction=True``: rows are committed and the locks are real.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from uuid import uuid4

import pytest
from django.db import OperationalError, connection, connections, transaction

from inventory.errors import OutOfStock
from inventory.models import Product, Reservation
from inventory.services import (
    reservation_commit,
    reservation_release,
    reservation_reserve,
)
from tests.factories import make_product
from tests.support.worker import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

#: Bound on any wait in these tests, so a regression fails instead of hanging.
JOIN_TIMEOUT = 60.0


def run_in_threads(targets: list[Callable[[], object]]) -> list[object]:
    """Run each target in its own thread and connection, starting together; return outcomes.

    An outcome is the target's return value, or the exception it raised.
    """
    barrier = threading.Barrier(len(targets))
    outcomes: list[object] = [None] * len(targets)

    def run(index: int, target: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=JOIN_TIMEOUT)
            outcomes[index] = target()
        except Exception as exc:  # the outcome under test
            outcomes[index] = exc
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=run, args=(i, target), daemon=True)
        for i, target in enumerate(targets)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    return outcomes


def stock(sku: str) -> tuple[int, int]:
    return Product.objects.values_list("stock_on_hand", "stock_reserved").get(sku=sku)


def test_eight_orders_racing_for_the_last_three_units_get_exactly_three() -> None:
    make_product("LAST-3", stock=3)

    def reserve_one() -> object:
        return reservation_reserve(
            order_id=uuid4(), lines=[("LAST-3", 1)], idempotency_key=str(uuid4())
        )

    outcomes = run_in_threads([reserve_one] * 8)

    succeeded = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, OutOfStock)]
    assert len(succeeded) == 3
    assert len(refused) == 5, outcomes
    assert all(o.skus == ("LAST-3",) for o in refused)
    assert stock("LAST-3") == (3, 3)
    assert Reservation.objects.count() == 3
    assert not Product.objects.filter(stock_reserved__lt=0).exists()
    assert not Product.objects.filter(stock_on_hand__lt=0).exists()


def test_orders_naming_products_in_opposite_order_do_not_deadlock() -> None:
    make_product("SKU-A", stock=1000)
    make_product("SKU-B", stock=1000)
    rounds = 15

    def worker(lines: list[tuple[str, int]]) -> Callable[[], object]:
        def run() -> object:
            for n in range(rounds):
                order_id = uuid4()
                reservation_reserve(order_id=order_id, lines=lines, idempotency_key=str(uuid4()))
                # Commit and release lock the same rows again, through the reservation.
                if n % 2:
                    reservation_commit(order_id=order_id, idempotency_key=str(uuid4()))
                else:
                    reservation_release(order_id=order_id, idempotency_key=str(uuid4()))
            return "done"

        return run

    outcomes = run_in_threads(
        [
            worker([("SKU-A", 1), ("SKU-B", 1)]),
            worker([("SKU-B", 1), ("SKU-A", 1)]),
            worker([("SKU-B", 2), ("SKU-A", 2)]),
            worker([("SKU-A", 2), ("SKU-B", 2)]),
        ]
    )

    assert outcomes == ["done"] * 4
    committed_per_sku = 2 * (rounds // 2) * (1 + 2)  # each quantity, on its odd rounds
    assert stock("SKU-A") == (1000 - committed_per_sku, 0)
    assert stock("SKU-B") == (1000 - committed_per_sku, 0)
    assert Reservation.objects.count() == 4 * rounds


def test_reserve_locks_products_in_sku_order_whatever_the_order_of_the_lines() -> None:
    make_product("SKU-A", stock=10)
    make_product("SKU-B", stock=10)
    blocker = connections.create_connection("default")
    try:
        # Another transaction holds SKU-B. Lines naming B first must still lock A first and
        # then wait for B; the opposite order is how two orders deadlock.
        blocker.set_autocommit(False)
        with blocker.cursor() as cursor:
            cursor.execute("SELECT id FROM inventory_product WHERE sku = %s FOR UPDATE", ["SKU-B"])

        result: list[object] = []

        def reserve() -> None:
            try:
                result.append(
                    reservation_reserve(
                        order_id=uuid4(),
                        lines=[("SKU-B", 1), ("SKU-A", 1)],
                        idempotency_key=str(uuid4()),
                    )
                )
            finally:
                connections.close_all()

        thread = threading.Thread(target=reserve, daemon=True)
        thread.start()

        def sku_a_is_locked() -> bool:
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT id FROM inventory_product WHERE sku = %s FOR UPDATE NOWAIT",
                        ["SKU-A"],
                    )
            except OperationalError:
                return True
            return False

        wait_for(sku_a_is_locked, timeout=30, message="the reservation to lock SKU-A")
        assert thread.is_alive(), "the reservation should wait for SKU-B"
        blocker.rollback()
        thread.join(timeout=JOIN_TIMEOUT)
        assert not thread.is_alive()
        assert len(result) == 1
        assert stock("SKU-A") == (10, 1)
        assert stock("SKU-B") == (10, 1)
    finally:
        blocker.close()


def test_one_reservation_delivered_several_times_at_once_reserves_once() -> None:
    make_product("SKU-A", stock=10)
    make_product("SKU-B", stock=10)
    order_id, step_key = uuid4(), str(uuid4())

    def reserve() -> object:
        return reservation_reserve(
            order_id=order_id, lines=[("SKU-A", 2), ("SKU-B", 1)], idempotency_key=step_key
        )

    outcomes = run_in_threads([reserve] * 5)

    assert len(set(outcomes)) == 1, outcomes
    assert stock("SKU-A") == (10, 2)
    assert stock("SKU-B") == (10, 1)
    assert Reservation.objects.count() == 1


def test_racing_reservations_of_one_order_for_other_products_keep_the_first() -> None:
    # Different lines lock different rows, so only the unique order_id separates them.
    for sku in ("SKU-A", "SKU-B", "SKU-C", "SKU-D"):
        make_product(sku, stock=10)
    order_id = uuid4()

    def reserve(sku: str) -> Callable[[], object]:
        return lambda: reservation_reserve(
            order_id=order_id, lines=[(sku, 3)], idempotency_key=str(uuid4())
        )

    outcomes = run_in_threads([reserve(sku) for sku in ("SKU-A", "SKU-B", "SKU-C", "SKU-D")])

    assert len(set(outcomes)) == 1, outcomes
    reservation = Reservation.objects.get(order_id=order_id)
    (line,) = reservation.lines.select_related("product")
    assert line.quantity == 3
    assert Product.objects.filter(stock_reserved=3).get().sku == line.product.sku
    assert sum(Product.objects.values_list("stock_reserved", flat=True)) == 3
