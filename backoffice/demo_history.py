"""Build a past day of orders through the real services, for demos and the admin benchmarks.

Each order is placed with ``order_place`` and its saga is driven to rest in this process by
``step_attempt_run``, as a worker would run it; a few confirmed orders are then cancelled by
their customer (``order_request_cancellation`` and the cancel saga). Reservations, charges,
refunds, events, saga rows and step logs are the ones the running system writes, so
``check_invariants`` and ``verify_event_store`` hold afterwards. Only the time is the past's:
the saga's clock is passed in, and the events' recorded time is set for the session
(``eventstore.postgres.recorded_as_of``), so the orders spread over the span and the
dashboard's charts have something to draw.

The step messages the services send after each commit find the saga already moved on and do
nothing; a worker running meanwhile may take a step first, which the driver waits out.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from django.db import connection
from django.utils import timezone

from eventstore.postgres import recorded_as_of, recorded_now
from inventory.services import product_adjust_stock
from orders.selectors import cancellation_reasons
from orders.services import OrderLineRequest, order_place, order_request_cancellation
from sagas.models import Saga
from sagas.runner import step_attempt_run
from sagas.statuses import MOVING_SAGA_STATUSES, Phase
from sagas.workers import WorkerIdentity, current_worker

ACTOR = "seed_demo"
#: What the history's orders do, by weight: the simulated gateway's tokens
#: (payments/simulated.py), and an order for more of the scarce product than it holds.
KINDS: dict[str, int] = {
    "tok_visa": 82,
    "tok_flaky": 5,
    "tok_chargeDeclined": 5,
    "tok_chargeDeclinedInsufficientFunds": 2,
    "out_of_stock": 5,
    "tok_lostResponse": 1,
}
#: The share of confirmed orders their customer cancels later (refund and restock).
CANCELLED_LATER = 0.03
#: Units an out-of-stock order asks for (the most one line may ask).
TOO_MANY = 1000
#: The most attempts one saga may take before the driver gives up on it.
MAX_ATTEMPTS = 60


class SteppingClock:
    """Tell the saga's time: each reading moves it on by a step's worth (20 to 300 ms)."""

    def __init__(self, start: datetime, rand: random.Random) -> None:
        self.now = start
        self.rand = rand

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=self.rand.uniform(0.02, 0.3))
        return self.now


@dataclass
class HistoryResult:
    """What the history holds: sagas by outcome, cancellations by reason, attempts."""

    orders: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    cancelled_by_reason: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    first: datetime | None = None
    last: datetime | None = None
    seconds: float = 0.0


def history_build(
    *,
    count: int,
    skus: Sequence[str],
    scarce_sku: str,
    span: timedelta = timedelta(days=1),
    end: datetime | None = None,
    seed: int = 0,
    jobs: int = 4,
    progress: Callable[[int], None] = lambda _done: None,
) -> HistoryResult:
    """Place ``count`` orders spread evenly over the ``span`` before ``end``, each run to rest.

    The orders ask for one unit of a product of ``skus``; these get the stock the history's
    orders will take first (a delivery, through ``product_adjust_stock``), so the catalogue
    keeps its stock. The out-of-stock orders ask ``scarce_sku`` for more than it holds.
    ``jobs`` threads, each on its own connection, place and drive the orders: most of an
    order's time is spent waiting for PostgreSQL.
    """
    end = end or timezone.now()
    start = end - span
    result = HistoryResult()
    began = time.monotonic()
    for sku in skus:
        product_adjust_stock(sku=sku, delta=count // len(skus) + 1)
    lock = threading.Lock()
    order_ids: list[UUID] = []
    done = 0

    def build(index: int) -> None:
        nonlocal done
        # One generator per order: the history is the same whatever the threads do.
        rand = random.Random(f"{seed}:{index}")  # noqa: S311 (a reproducible demo)
        placed_at = start + span * (index + rand.random()) / count
        kind = rand.choices(list(KINDS), list(KINDS.values()))[0]
        scarce = kind == "out_of_stock"
        sku = scarce_sku if scarce else skus[rand.randrange(len(skus))]
        recorded_as_of(placed_at)
        placed = order_place(
            customer_id=f"c-{rand.randint(1, 400)}",
            lines=[OrderLineRequest(sku=sku, quantity=TOO_MANY if scarce else 1)],
            payment_token="tok_visa" if scarce else kind,
            actor=ACTOR,
            now=placed_at,
        )
        clock = SteppingClock(placed_at, rand)
        worker = current_worker(ACTOR)
        statuses, attempts = _drive(placed.saga_id, clock=clock, worker=worker)
        if statuses == "COMPLETED" and rand.random() < CANCELLED_LATER:
            # The customer changes their mind a few minutes later: the cancel saga.
            clock.now += timedelta(minutes=rand.uniform(2, 30))
            recorded_as_of(clock.now)
            cancel_id = order_request_cancellation(
                order_id=placed.order_id, actor=ACTOR, acting_as_staff=False, now=clock.now
            )
            cancelled, more = _drive(cancel_id, clock=clock, worker=worker)
            statuses, attempts = f"{statuses} {cancelled}", attempts + more
        with lock:
            done += 1
            order_ids.append(placed.order_id)
            result.outcomes.update(statuses.split())
            result.attempts += attempts
            result.first = min(result.first or placed_at, placed_at)
            result.last = max(result.last or placed_at, placed_at)
            progress(done)

    def build_all(indexes: range) -> None:
        try:
            for index in indexes:
                build(index)
        finally:
            recorded_now()
            connection.close()

    jobs = max(1, min(jobs, count))
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="history") as pool:
        for future in [pool.submit(build_all, range(n, count, jobs)) for n in range(jobs)]:
            future.result()
    result.orders = done
    result.cancelled_by_reason.update(cancellation_reasons(order_ids=order_ids))
    result.seconds = time.monotonic() - began
    return result


def _drive(saga_id: UUID, *, clock: SteppingClock, worker: WorkerIdentity) -> tuple[str, int]:
    """Run the saga's attempts at the clock's times until it rests; return (status, tries)."""
    attempts = 0
    for _ in range(MAX_ATTEMPTS):
        saga = Saga.objects.only("status", "current_step", "current_phase", "due_at").get(
            pk=saga_id
        )
        if saga.status not in MOVING_SAGA_STATUSES:
            return str(saga.status), attempts
        if saga.due_at is not None and saga.due_at > clock.now:
            clock.now = saga.due_at  # wait out the backoff
        # The step's events are recorded when its attempt starts.
        recorded_as_of(clock.now)
        report = step_attempt_run(
            saga_id=saga_id,
            step=saga.current_step,
            phase=Phase(saga.current_phase),
            worker=worker,
            clock=clock,
        )
        if report.ran:
            attempts += 1
        else:
            time.sleep(0.05)  # a worker holds the step: let it finish
    raise RuntimeError(f"saga {saga_id} did not come to rest in {MAX_ATTEMPTS} attempts")
