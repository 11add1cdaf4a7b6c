"""Measure what personal data costs: orders with a contact against the same orders without.

Issue 20 bounds it at 10 % of ``POST /api/orders/`` throughput (each contact sealed under its
customer's key in the placing transaction) and 15 % of the time to load an order's history
(each ``OrderCreated``'s contact opened for the answer). Side by side in one run:

- **Placing.** One gunicorn server as in bench/api.py (the bench database, the same catalogue
  and clients). Closed loop at each of ``CONCURRENCY`` connections, ``SLICES`` slices per
  side in ABBA order, the orders spread over ``CUSTOMERS`` customers (each customer's key is
  made by their first order, as in production; both sides share the customers, so both
  look their key up). **With:** every order carries a full contact. **Without:** none. Each
  side's best level counts.
- **History.** ``ORDERS`` orders placed each way, then ``GET /api/orders/{id}/events/`` of
  every one of them in this process (Django's test client: routing, authentication, the
  events' query and their representation, the contact's key lookup and decryption), in
  ``ROUNDS`` rounds per side in ABBA order; the median round's time per request counts.

Before reporting, it checks that the "with" orders' events hold the contact sealed and
answer it opened.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from typing import Any

from bench.records import Record, abba, best_level_record, latency_record

CONCURRENCY = tuple(
    int(c) for c in os.environ.get("PD_BENCH_CONCURRENCY", "4,8").split(",") if c.strip()
)
SLICES = int(os.environ.get("PD_BENCH_SLICES", "4"))
CUSTOMERS = int(os.environ.get("PD_BENCH_CUSTOMERS", "200"))
ORDERS = int(os.environ.get("PD_BENCH_HISTORY_ORDERS", "200"))
ROUNDS = int(os.environ.get("PD_BENCH_HISTORY_ROUNDS", "6"))
PLACE_TARGET = 0.90
HISTORY_TARGET = 1 / 1.15
SIDES: tuple[str, str] = ("with", "without")


def _progress(message: str) -> None:
    print(f"  [personal_data] {message}", flush=True)


def _placing(database_url: str) -> dict[str, dict[int, float]]:
    """Return each side's POST /api/orders/ throughput per concurrency level."""
    from bench import api
    from lab.worker import delete_queue

    skus, tokens = api._seed()
    queue = f"bench-pd-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    figures = {(side, level): api.LevelFigures() for side in SIDES for level in CONCURRENCY}
    try:
        with api._gunicorn(queue=queue, database_url=database_url, name="personal-data") as port:
            _progress(f"gunicorn on port {port}")
            for level in CONCURRENCY:
                for index in range(SLICES):
                    for side in abba(SIDES, index):
                        result = api._closed_loop_slice(
                            port,
                            tokens,
                            skus,
                            path=api.ORDERS_PATH,
                            connections=level,
                            customer_id="bench-pd",
                            contact=side == "with",
                            customers=CUSTOMERS,
                        )
                        f = figures[(side, level)]
                        f.requests += len(result.latencies)
                        f.seconds += api.SLICE_SECONDS
                _progress(
                    f"POST /api/orders/ at {level} connections: "
                    + ", ".join(f"{s} {figures[(s, level)].per_second:.1f}/s" for s in SIDES)
                )
    finally:
        delete_queue(queue)  # the orders' sagas were never meant to run
    return {s: {c: figures[(s, c)].per_second for c in CONCURRENCY} for s in SIDES}


def _history() -> dict[str, float]:
    """Return each side's median time (ms) to GET one order's events."""
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client
    from knox.models import AuthToken

    from bench.api import BENCH_CONTACT
    from eventstore.models import StoredEvent
    from inventory.models import Product
    from lab.worker import delete_queue
    from orders.services import OrderLineRequest, order_place

    run = uuid.uuid4().hex[:6]
    product = Product.objects.create(
        sku=f"BENCH-PD-{run}",
        name="Bench product",
        price="9.99",
        currency=settings.BACKOFFICE_CURRENCY,
        stock_on_hand=10_000_000,
    )
    user = User.objects.create_user(f"bench-pd-{run}", password=None)
    token = AuthToken.objects.create(user=user)[1]
    queue = f"bench-pd-history-{run}"
    previous_queue = settings.CELERY_TASK_DEFAULT_QUEUE
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    orders: dict[str, list[str]] = {side: [] for side in SIDES}
    try:
        for n in range(ORDERS):
            for side in SIDES:
                placed = order_place(
                    customer_id=f"bench-pd-history-{n % CUSTOMERS}",
                    lines=[OrderLineRequest(product.sku, 1)],
                    payment_token="tok_visa",
                    actor=f"user:{user.pk}",
                    contact=BENCH_CONTACT if side == "with" else None,
                )
                orders[side].append(str(placed.order_id))
    finally:
        settings.CELERY_TASK_DEFAULT_QUEUE = previous_queue
        delete_queue(queue)
    client = Client(HTTP_AUTHORIZATION=f"Token {token}", HTTP_HOST="127.0.0.1")

    def events(order_id: str) -> Any:
        response = client.get(f"/api/orders/{order_id}/events/")
        if response.status_code != 200:
            raise RuntimeError(f"personal data benchmark: events answered {response.status_code}")
        return response.json()["results"]

    first = orders["with"][0]
    stored = StoredEvent.objects.get(stream_id=first, version=1).data["contact"]
    if set(stored) != {"key", "ct"} or events(first)[0]["data"]["contact"] != BENCH_CONTACT:
        raise RuntimeError("personal data benchmark: the contact is not sealed and opened")
    for side in SIDES:  # warm-up: code paths, the keys' unwrapping, the statements' plans
        for order_id in orders[side][:20]:
            events(order_id)
    rounds: dict[str, list[float]] = {side: [] for side in SIDES}
    for index in range(ROUNDS):
        for side in abba(SIDES, index):
            started = time.perf_counter()
            for order_id in orders[side]:
                events(order_id)
            rounds[side].append((time.perf_counter() - started) * 1000 / len(orders[side]))
    _progress(
        "GET /api/orders/{id}/events/ per request: "
        + "; ".join(f"{s} {[round(r, 2) for r in rounds[s]]} ms" for s in SIDES)
    )
    return {side: statistics.median(rounds[side]) for side in SIDES}


def run() -> list[Record]:
    """Run both comparisons on the bench database; return their records."""
    from django.db import connection

    from lab.worker import database_url

    per_level = _placing(database_url(connection.settings_dict))
    history = _history()
    return [
        best_level_record(
            name="personal data: POST /api/orders/ with a contact vs without",
            per_level=per_level,
            sides=("with", "without"),
            baseline="the same orders without a contact, same server",
            target=PLACE_TARGET,
        ),
        latency_record(
            name="personal data: an order's history with a contact vs without",
            value=history["with"],
            unit="ms",
            baseline=(
                "GET /api/orders/{id}/events/ of orders without a contact "
                f"(in process, median of {ROUNDS} rounds of {ORDERS})"
            ),
            baseline_value=history["without"],
            target=round(HISTORY_TARGET, 3),
        ),
    ]


def main() -> None:
    """Set up the bench database and run this benchmark alone."""
    from bench.database import use_bench_database
    from bench.records import save

    use_bench_database()
    save(run())


if __name__ == "__main__":
    main()
