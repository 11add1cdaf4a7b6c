"""Read several things as of one instant, so a page never mixes two moments of a saga.

A page that shows a saga's status beside its step timeline, or an order beside its events,
runs several queries. Under PostgreSQL's default READ COMMITTED each sees the latest commit,
so a worker finishing a step between two of them makes the page contradict itself (the saga
COMPENSATED above a step still COMPENSATING). REPEATABLE READ gives every query in the
transaction the snapshot taken by its first one; read-only pages never see its
serialization errors, which only writes can raise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def read_snapshot() -> Iterator[None]:
    """Run the block's queries against one snapshot of the database (read-only use).

    Inside a transaction that already ran a query, PostgreSQL cannot change its isolation,
    so the block then simply joins it (as consistent as the caller made it).
    """
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield
