"""Rows a real run leaves, for the invariant checker's tests to break one thing in.

Orders are placed and their sagas driven in this process (``drive`` plays the worker) through
the real sagas and participants. Used by ``tests/invariants/`` and
``tests/faults/test_invariants.py``.
"""

from __future__ import annotations

from uuid import UUID, uuid4

from django.db import connection

from orders.services import OrderLineRequest, PlacedOrder, order_place, order_request_cancellation
from sagas.models import Saga
from sagas.tests.harness import SteppingClock, drive, run_step


def place_order(
    products: tuple[str, str], token: str = "tok_visa", *, quantity: int = 2, run: bool = True
) -> PlacedOrder:
    """Place an order for ``quantity`` of the first product and one of the second.

    Its saga is run to rest in this process unless ``run`` is false.
    """
    first, second = products
    placed = order_place(
        customer_id="c-invariants",
        lines=[OrderLineRequest(first, quantity), OrderLineRequest(second, 1)],
        payment_token=token,
        actor="user:1",
    )
    if run:
        drive(placed.saga_id)
    return placed


def place_order_until(products: tuple[str, str], step: str) -> PlacedOrder:
    """Place an order and run its saga in this process until ``step`` is the next to run."""
    placed = place_order(products, run=False)
    # One clock for every step: each step's retry is due on the clock that scheduled it,
    # where a fresh clock would wait for the wall clock to get there.
    clock = SteppingClock()
    while Saga.objects.get(pk=placed.saga_id).current_step != step:
        assert run_step(placed.saga_id, clock=clock).ran
    return placed


def cancel_order(order_id: UUID) -> UUID:
    """Cancel the order through its cancel saga, run to rest; return the saga's id."""
    saga_id = order_request_cancellation(order_id=order_id, actor="user:2", acting_as_staff=True)
    drive(saga_id)
    return saga_id


def copy_saga(saga_id: UUID, **changes: object) -> Saga:
    """Insert a copy of a saga at rest under a new id, with ``changes`` applied."""
    saga = Saga.objects.get(pk=saga_id)
    saga.pk = uuid4()
    for name, value in changes.items():
        setattr(saga, name, value)
    saga.save(force_insert=True)
    return saga


def drop_constraint(table: str, name: str) -> None:
    """Drop a constraint inside this test's transaction (it is back after the rollback)."""
    assert connection.in_atomic_block, "only a rolled-back test may drop a constraint"
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT IF EXISTS "{name}"')
        # A unique constraint of Django's may be an index rather than a table constraint.
        cursor.execute(f'DROP INDEX IF EXISTS "{name}"')
