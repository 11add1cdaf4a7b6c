"""Time the back office's admin pages on 10,000 orders and 100,000 events.

Each page is rendered in process through Django's test client, logged in as a superuser: the
median of several renders, after warm-up renders. The baseline is the same page on a small
database (100 orders, 1,000 events), measured first in the same run, so the ratio says how
much a page slows down as the data grows a hundredfold (1.0: not at all). Rows are seeded
with SQL (orders with their events and read-model rows, a placing saga per order with its
steps and an attempt logged per step, 1% of them waiting in COMPENSATION_FAILED with their
``SagaCompensationFailed`` event, then filler events up to the total).
The queries each page makes are printed beside its time.

On the large database it also times ``GET /metrics`` with the database gauges read afresh
(the cache expired before each scrape) against issue 18's 50 ms bound.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from urllib.parse import urlencode

from bench.records import Record, latency_record

SMALL_ORDERS, SMALL_EVENTS = 100, 1_000
LARGE_ORDERS, LARGE_EVENTS = 10_000, 100_000
WARMUP, REPEATS = 2, 7
SCRAPES = 15
SCRAPE_BOUND_MS = 50.0


def _progress(message: str) -> None:
    print(f"  {message}", flush=True)


_SEED_SQL = [
    # The orders of this batch: every tenth pending, every tenth cancelled, the rest confirmed.
    """
    CREATE TEMP TABLE bench_orders ON COMMIT DROP AS
    SELECT gen_random_uuid() AS id, s.i, gen_random_uuid()::text AS corr,
           CASE s.i %% 10 WHEN 0 THEN 'PENDING' WHEN 1 THEN 'CANCELLED' ELSE 'CONFIRMED' END
               AS status
    FROM generate_series(%(first)s, %(last)s) AS s(i)
    """,
    """
    INSERT INTO eventstore_event (event_id, stream_type, stream_id, version, event_type,
        schema_version, data, metadata)
    SELECT gen_random_uuid(), 'order', o.id::text, v.v,
           CASE v.v WHEN 1 THEN 'OrderCreated' WHEN 2 THEN 'OrderConfirmed'
                ELSE 'OrderCancelled' END,
           1,
           CASE v.v
               WHEN 1 THEN jsonb_build_object(
                   'order_id', o.id::text, 'customer_id', 'c-' || (o.i %% 500),
                   'lines', jsonb_build_array(jsonb_build_object(
                       'sku', 'SKU-1', 'name', 'Mug', 'quantity', 1,
                       'unit_price', '10.00', 'line_total', '10.00')),
                   'total', '10.00', 'currency', 'EUR', 'placed_by', 'user:1')
               WHEN 2 THEN jsonb_build_object('order_id', o.id::text)
               ELSE jsonb_build_object('order_id', o.id::text, 'reason', 'cancelled_by_staff',
                                       'previous_status', 'CONFIRMED')
           END,
           jsonb_build_object('actor', 'user:1', 'correlation_id', o.corr)
    FROM bench_orders o
    CROSS JOIN generate_series(1, 3) AS v(v)
    WHERE v.v = 1 OR (v.v = 2 AND o.status <> 'PENDING') OR (v.v = 3 AND o.status = 'CANCELLED')
    ORDER BY o.i, v.v
    """,
    """
    INSERT INTO orders_order (id, customer_id, status, cancellation_reason, items, total,
        currency, placed_by_user_id, placed_by, correlation_id, customer_key, version,
        created_position, created_at, updated_at)
    SELECT o.id, 'c-' || (o.i %% 500), o.status,
           CASE o.status WHEN 'CANCELLED' THEN 'cancelled_by_staff' ELSE '' END,
           jsonb_build_array(jsonb_build_object('sku', 'SKU-1', 'name', 'Mug', 'quantity', 1,
               'unit_price', '10.00', 'line_total', '10.00')),
           10.00, 'EUR', 1, 'user:1', o.corr, '',
           CASE o.status WHEN 'PENDING' THEN 1 WHEN 'CONFIRMED' THEN 2 ELSE 3 END,
           e.position, e.recorded_at, e.recorded_at
    FROM bench_orders o
    JOIN eventstore_event e
      ON e.stream_type = 'order' AND e.stream_id = o.id::text AND e.version = 1
    """,
    """
    INSERT INTO sagas_saga (id, saga_type, status, subject, exclusive, correlation_id, actor,
        context, current_step, current_phase, attempt, round_start, redeliveries, claim_host,
        claim_worker, claim_process, failure_step, failure_code, failure_message, created_at,
        updated_at)
    SELECT gen_random_uuid(), 'place_order',
           CASE WHEN o.i %% 100 = 5 THEN 'COMPENSATION_FAILED'
                WHEN o.status = 'PENDING' THEN 'RUNNING' ELSE 'COMPLETED' END,
           'order:' || o.id, false, o.corr, 'user:1',
           jsonb_build_object('order_id', o.id::text),
           CASE WHEN o.i %% 100 = 5 THEN 'reserve_inventory' ELSE 'confirm_order' END,
           CASE WHEN o.i %% 100 = 5 THEN 'compensation' ELSE 'action' END,
           1, 0, 0, '', '', '',
           CASE WHEN o.i %% 100 = 5 THEN 'charge_payment' ELSE '' END,
           CASE WHEN o.i %% 100 = 5 THEN 'payment_declined' ELSE '' END,
           CASE WHEN o.i %% 100 = 5 THEN 'Your card was declined.' ELSE '' END,
           now(), now()
    FROM bench_orders o
    """,
    """
    INSERT INTO sagas_sagastep (saga_id, position, name, status, compensable, action_attempts,
        compensation_attempts, last_error, action_started_at, action_finished_at)
    SELECT s.id, st.position, st.name,
           CASE WHEN s.status = 'COMPENSATION_FAILED' AND st.name = 'reserve_inventory'
                THEN 'COMPENSATION_FAILED' ELSE 'SUCCEEDED' END,
           st.name <> 'confirm_order', 1,
           CASE WHEN s.status = 'COMPENSATION_FAILED' AND st.name = 'reserve_inventory'
                THEN 8 ELSE 0 END,
           CASE WHEN s.status = 'COMPENSATION_FAILED' AND st.name = 'reserve_inventory'
                THEN 'injected_fault: injected permanent fault' ELSE '' END,
           now(), now()
    FROM sagas_saga s
    JOIN bench_orders o ON s.subject = 'order:' || o.id
    CROSS JOIN (VALUES (0, 'create_order'), (1, 'reserve_inventory'), (2, 'charge_payment'),
                       (3, 'confirm_order')) AS st(position, name)
    """,
    # One attempt per step in the step log, lasting 1 to 200 ms (the dashboard's latency chart).
    """
    INSERT INTO sagas_sagastepexecution (saga_id, step, position, phase, attempt, status, error,
        started_at, finished_at, worker, at)
    SELECT st.saga_id, st.name, st.position, 'action', 1, 'SUCCEEDED', '',
           now() - interval '1 second',
           now() - interval '1 second'
               + ((o.i * 7 + st.position * 13) %% 200 + 1) * interval '1 millisecond',
           'bench', now()
    FROM sagas_sagastep st
    JOIN sagas_saga s ON s.id = st.saga_id
    JOIN bench_orders o ON s.subject = 'order:' || o.id
    """,
    # The event a saga's entry into COMPENSATION_FAILED appends (the dashboard's chart of them).
    """
    INSERT INTO eventstore_event (event_id, stream_type, stream_id, version, event_type,
        schema_version, data, metadata)
    SELECT gen_random_uuid(), 'saga', s.id::text, 1, 'SagaCompensationFailed', 1,
           jsonb_build_object('id', s.id::text, 'status', s.status),
           jsonb_build_object('actor', 'saga:' || s.id::text)
    FROM sagas_saga s
    JOIN bench_orders o ON s.subject = 'order:' || o.id
    WHERE s.status = 'COMPENSATION_FAILED'
    """,
]

_FILLER_SQL = """
INSERT INTO eventstore_event (event_id, stream_type, stream_id, version, event_type, data,
    metadata)
SELECT gen_random_uuid(), 'bench', 'filler-' || (s.i / 10), s.i %% 10 + 1, 'Something',
       jsonb_build_object('n', s.i), jsonb_build_object('correlation_id', 'filler-' || s.i)
FROM generate_series(%(first)s, %(last)s) AS s(i)
"""


def _seed(*, first_order: int, orders: int, total_events: int, filler_from: int) -> None:
    """Add ``orders`` orders (with events and sagas), then filler events up to the total."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        params = {"first": first_order, "last": first_order + orders - 1}
        for statement in _SEED_SQL:
            cursor.execute(statement, params)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM eventstore_event")
        have = int(cursor.fetchone()[0])
        if total_events > have:
            cursor.execute(
                _FILLER_SQL, {"first": filler_from, "last": filler_from + total_events - have - 1}
            )
        # The catch-up runner keeps the projection's checkpoint near the log's end.
        cursor.execute(
            "INSERT INTO eventstore_projection_checkpoint (name, transaction_id, position, "
            "events_processed, updated_at) "
            "SELECT 'orders', max(transaction_id), max(position), count(*), now() "
            "FROM eventstore_event "
            "ON CONFLICT (name) DO UPDATE SET transaction_id = EXCLUDED.transaction_id, "
            "position = EXCLUDED.position, events_processed = EXCLUDED.events_processed"
        )
        cursor.execute("VACUUM ANALYZE")


def _pages() -> dict[str, str]:
    """Name each measured page and its URL, on whatever rows exist now."""
    from eventstore.models import StoredEvent
    from orders.models import OrderSummary
    from sagas.models import Saga

    order = OrderSummary.objects.filter(status="CANCELLED").order_by("created_position").first()
    saga = Saga.objects.filter(status="COMPENSATION_FAILED").order_by("created_at").first()
    assert order is not None and saga is not None
    event = StoredEvent.objects.filter(stream_type="order", stream_id=str(order.id)).first()
    assert event is not None
    orders = "/admin/orders/ordersummary/"
    events = "/admin/eventstore/storedevent/"
    sagas = "/admin/sagas/saga/"
    by_correlation = urlencode({"correlation_id": order.correlation_id})
    return {
        "dashboard (admin index)": "/admin/",
        "orders list": orders,
        "orders list, status filter": f"{orders}?status__exact=CONFIRMED",
        "orders list, customer search": f"{orders}?q=c-42",
        "order page": f"{orders}{order.id}/change/",
        "order page, state as of v2": f"{orders}{order.id}/change/?version=2",
        "events list": events,
        "events list, by correlation id": f"{events}?{by_correlation}",
        "events list, by stream id": f"{events}?q={order.id}",
        "event page": f"{events}{event.position}/change/",
        "sagas list": sagas,
        "failed compensations": f"{sagas}failed-compensations/",
        "saga page": f"{sagas}{saga.id}/change/",
    }


def _measure(get: Callable[[str], int], url: str) -> tuple[float, int]:
    """Return the median render time of ``url`` in ms, and the queries one render makes."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(WARMUP):
        get(url)
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        get(url)
        times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as captured:
        get(url)
    return statistics.median(times), len(captured.captured_queries)


def _scrape() -> tuple[float, int]:
    """Return the median time of a ``/metrics`` scrape with the database gauges read afresh.

    The gauges are cached for a few seconds between scrapes (backoffice/metrics.py); the
    bound is on a scrape that reads them, so the cache is expired before each one. The
    queries of one such scrape are counted, and must be some: else the cache was not.
    """
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings

    from backoffice.metrics import database_gauges

    client = Client(headers={"Authorization": "Bearer bench-metrics"})

    def scrape() -> None:
        database_gauges._read_at = float("-inf")  # expire the cached gauges
        response = client.get("/metrics")
        if response.status_code != 200 or b"backoffice_orders" not in response.content:
            raise RuntimeError(f"GET /metrics answered {response.status_code}")

    with override_settings(METRICS_TOKEN="bench-metrics"):
        for _ in range(WARMUP):
            scrape()
        times = []
        for _ in range(SCRAPES):
            started = time.perf_counter()
            scrape()
            times.append((time.perf_counter() - started) * 1000)
        with CaptureQueriesContext(connection) as captured:
            scrape()
    if not captured.captured_queries:
        raise RuntimeError("GET /metrics made no query: the gauges were not read afresh")
    return statistics.median(times), len(captured.captured_queries)


def run() -> list[Record]:
    """Seed small, time every page; seed to 10k orders / 100k events, time them again."""
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.create_superuser("bench-admin", "bench@example.test", "unused")
    client = Client()
    client.force_login(user)

    def get(url: str) -> int:
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
        return len(response.content)

    _progress(f"seeding {SMALL_ORDERS} orders, {SMALL_EVENTS} events")
    _seed(first_order=1, orders=SMALL_ORDERS, total_events=SMALL_EVENTS, filler_from=1)
    small = {name: _measure(get, url) for name, url in _pages().items()}
    _progress(f"seeding up to {LARGE_ORDERS} orders, {LARGE_EVENTS} events")
    _seed(
        first_order=SMALL_ORDERS + 1,
        orders=LARGE_ORDERS - SMALL_ORDERS,
        total_events=LARGE_EVENTS,
        filler_from=SMALL_EVENTS + 1,
    )
    large = {name: _measure(get, url) for name, url in _pages().items()}
    scrape_ms, scrape_queries = _scrape()
    _progress(f"GET /metrics, gauges read afresh: {scrape_ms:.1f} ms, {scrape_queries} queries")

    _progress(f"{'page':<34} {'small ms':>9} {'queries':>7} {'large ms':>9} {'queries':>7}")
    records = []
    for name, (small_ms, small_queries) in small.items():
        large_ms, large_queries = large[name]
        _progress(
            f"{name:<34} {small_ms:>9.1f} {small_queries:>7} {large_ms:>9.1f} {large_queries:>7}"
        )
        records.append(
            latency_record(
                name=f"admin: {name}, 10k orders / 100k events",
                value=large_ms,
                unit="ms",
                baseline="same page, 100 orders / 1k events",
                baseline_value=small_ms,
                target=None,
            )
        )
    records.append(
        latency_record(
            name="metrics: GET /metrics scrape, 10k orders / 100k events",
            value=scrape_ms,
            unit="ms",
            baseline="the issue's bound (gauges read afresh every scrape, median)",
            baseline_value=SCRAPE_BOUND_MS,
            target=1.0,
        )
    )
    return records
