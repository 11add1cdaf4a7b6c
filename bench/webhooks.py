"""Measure the webhooks' relay beside the order flow it serves, in one run.

gunicorn as in the Procfile (bench/api.py) takes POST /api/orders/; one Celery worker
(prefork, concurrency 2; bench/saga_throughput.py) runs the sagas and the webhooks' tasks on
one queue; a thread here sends ``webhooks.relay`` every ``WEBHOOK_RELAY_INTERVAL_SECONDS`` and
``webhooks.dispatch_due`` every ``WEBHOOK_INTERVAL_SECONDS``, as beat does. The receiver is an
HTTP server in this process on 127.0.0.1 that answers 200 at once and notes when each
``webhook-id`` first arrived. The
endpoint subscribes to ``order.created``, ``order.confirmed`` and ``order.cancelled``.

- **Relay capacity.** Orders POSTed in a batch confirm at saturation (orders/s from the first
  POST to the last confirmation, no endpoint). Then, with the endpoint registered and the
  beat thread stopped, a batch of orders confirms; the thread starts and their events'
  deliveries (two per order) are counted from the first arrival to the last: deliveries/s,
  which must be at least twice the orders' rate (the relay never falls behind).
- **Latency.** Orders POSTed at a fixed rate (open loop) of 0.7 x the orders' rate above for
  ``LATENCY_SECONDS``; for each event, the time from its ``recorded_at`` (set in its
  transaction, so a little before the commit: the figure errs long) to its first arrival.
- **Cost on POST.** Closed-loop POST /api/orders/ at ``CONNECTIONS`` connections in short
  slices, the endpoint active and inactive in turns (ABBA); worker and relay run throughout,
  so the deliveries' work competes with the web server's as in production.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.records import Record, latency_record, throughput_record

BATCH = int(os.environ.get("WEBHOOK_BENCH_BATCH", "100"))
LATENCY_SECONDS = float(os.environ.get("WEBHOOK_BENCH_LATENCY_SECONDS", "15"))
SLICES = int(os.environ.get("WEBHOOK_BENCH_SLICES", "4"))
CONNECTIONS = 4
RATE_SHARE = 0.7
P50_BOUND_MS = 500.0
COST_BOUND = 0.10
TIMEOUT = 300.0
EVENT_TYPES = ["order.created", "order.confirmed", "order.cancelled"]


def _progress(message: str) -> None:
    print(f"  [webhooks] {message}", flush=True)


class _Receiver:
    """Answer 200 at once; note each webhook-id's first arrival (time.time())."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                arrived = time.time()
                with receiver.lock:
                    receiver.first.setdefault(self.headers.get("webhook-id", ""), arrived)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def arrivals(self, ids: set[str]) -> dict[str, float]:
        with self.lock:
            return {i: at for i, at in self.first.items() if i in ids}

    @contextmanager
    def running(self) -> Iterator[_Receiver]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


class _Beat:
    """Send the webhooks' periodic tasks to ``queue`` every interval while switched on."""

    def __init__(self, queue: str) -> None:
        from django.conf import settings

        self.queue = queue
        self.relay_interval = float(settings.WEBHOOK_RELAY_INTERVAL_SECONDS)
        self.interval = float(settings.WEBHOOK_INTERVAL_SECONDS)
        self.on = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from config.celery import app

        dispatched = 0.0
        while not self._closing.is_set():
            if self.on.is_set():
                app.send_task("webhooks.relay", queue=self.queue)
                if time.monotonic() - dispatched >= self.interval:
                    app.send_task("webhooks.dispatch_due", queue=self.queue)
                    dispatched = time.monotonic()
            self._closing.wait(self.relay_interval)

    @contextmanager
    def running(self) -> Iterator[_Beat]:
        self._thread.start()
        try:
            yield self
        finally:
            self._closing.set()
            self._thread.join(timeout=10)


def _order_events(tag: str) -> dict[str, float]:
    """Return {event id: recorded_at} of the order events of the orders placed under ``tag``."""
    from eventstore.models import StoredEvent
    from orders.models import OrderSummary

    ids = [
        str(i) for i in OrderSummary.objects.filter(customer_id=tag).values_list("id", flat=True)
    ]
    rows = StoredEvent.objects.filter(
        stream_id__in=ids, event_type__in=["OrderCreated", "OrderConfirmed", "OrderCancelled"]
    ).values_list("event_id", "recorded_at")
    return {str(event_id): at.timestamp() for event_id, at in rows}


def _wait_delivered(receiver: _Receiver, events: dict[str, float]) -> dict[str, float]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        arrived = receiver.arrivals(set(events))
        if len(arrived) == len(events):
            return arrived
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"webhooks benchmark: {len(events) - len(arrived)} of {len(events)} undelivered"
            )
        time.sleep(0.05)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _relay_rate(
    port: int, tokens: list[str], skus: list[str], receiver: _Receiver, beat: _Beat
) -> float:
    """Let a batch of orders confirm with the relay off, then relay them; return deliveries/s."""
    from bench.api import ORDERS_PATH, _run_load

    beat.on.clear()
    time.sleep(beat.interval * 2)  # let a pass in flight finish
    tag = f"bench-hooks-{uuid.uuid4().hex[:8]}"
    _run_load(
        port=port,
        path=ORDERS_PATH,
        tokens=tokens,
        skus=skus,
        customer_id=tag,
        connections=CONNECTIONS,
        count=BATCH,
    )
    _wait_settled(tag)
    events = _order_events(tag)
    beat.on.set()
    arrived = _wait_delivered(receiver, events)
    # From the first arrival to the last: the wait for the next beat pass is the latency
    # record's business, not the relay's rate.
    rate = (len(events) - 1) / (max(arrived.values()) - min(arrived.values()))
    _progress(f"relay: {len(events)} deliveries at {rate:.1f}/s")
    return rate


def _lags(
    port: int, tokens: list[str], skus: list[str], receiver: _Receiver, rate: float
) -> list[float]:
    """POST orders at ``rate`` for LATENCY_SECONDS; return each event's commit-to-delivery ms."""
    from bench.api import ORDERS_PATH, _run_load

    tag = f"bench-hooks-{uuid.uuid4().hex[:8]}"
    _run_load(
        port=port,
        path=ORDERS_PATH,
        tokens=tokens,
        skus=skus,
        customer_id=tag,
        connections=CONNECTIONS,
        seconds=LATENCY_SECONDS,
        rate=rate,
    )
    _wait_settled(tag)
    events = _order_events(tag)
    arrived = _wait_delivered(receiver, events)
    return [(arrived[i] - events[i]) * 1000 for i in events]


def _post_rates(
    port: int, tokens: list[str], skus: list[str], endpoint_id: int
) -> tuple[list[float], list[float]]:
    """POST closed loop in ABBA slices, endpoint active and not; return both lists of req/s."""
    from bench.api import ORDERS_PATH, SLICE_SECONDS, _closed_loop_slice
    from webhooks.models import WebhookEndpoint

    rates: dict[bool, list[float]] = {True: [], False: []}
    for n in range(SLICES):
        for active in (True, False) if n % 2 == 0 else (False, True):
            WebhookEndpoint.objects.filter(pk=endpoint_id).update(is_active=active)
            result = _closed_loop_slice(
                port,
                tokens,
                skus,
                path=ORDERS_PATH,
                connections=CONNECTIONS,
                customer_id=f"bench-hooks-post-{n}",
            )
            rates[active].append(len(result.latencies) / SLICE_SECONDS)
    _progress(
        f"POST with an endpoint {[round(r, 1) for r in rates[True]]}/s, "
        f"without {[round(r, 1) for r in rates[False]]}/s"
    )
    return rates[True], rates[False]


def run() -> list[Record]:
    """Run the relay measurements on the bench database; return the records."""
    from django.conf import settings
    from django.db import connection

    from bench.api import _gunicorn, _orders_batch
    from bench.api import _seed as seed_catalogue
    from bench.saga_throughput import _bench_worker
    from lab.worker import database_url, delete_queue
    from webhooks.services import endpoint_create

    # The receiver is on the loopback interface: allowed here as DEBUG allows it locally.
    os.environ["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = "true"
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    skus, tokens = seed_catalogue()
    queue = f"bench-webhooks-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    url = database_url(connection.settings_dict)
    receiver = _Receiver()
    try:
        with (
            receiver.running(),
            _gunicorn(queue=queue, database_url=url) as port,
            _bench_worker(queue),
            _Beat(queue).running() as beat,
        ):
            beat.on.set()
            _orders_batch(port, tokens, skus, 20)  # warm the worker's connections and imports
            order_rate = _orders_batch(port, tokens, skus, BATCH)
            _progress(f"orders confirmed at saturation: {order_rate:.1f}/s ({BATCH} orders)")
            endpoint = endpoint_create(url=receiver.url, event_types=EVENT_TYPES).endpoint
            relay_rate = _relay_rate(port, tokens, skus, receiver, beat)
            rate = RATE_SHARE * order_rate
            lags = _lags(port, tokens, skus, receiver, rate)
            p50, p99 = _percentile(lags, 0.5), _percentile(lags, 0.99)
            _progress(f"lag at {rate:.1f} orders/s: p50 {p50:.0f} ms, p99 {p99:.0f} ms")
            with_endpoint, without = _post_rates(port, tokens, skus, endpoint.pk)
    finally:
        delete_queue(queue)

    posting = statistics.median(with_endpoint)
    bare = statistics.median(without)
    return [
        throughput_record(
            name="webhooks: relay deliveries/s",
            value=relay_rate,
            unit="/s",
            baseline="orders confirmed end to end at saturation, same worker",
            baseline_value=order_rate,
            target=2.0,
        ),
        latency_record(
            name="webhooks: commit to delivery p50 at 0.7 x",
            value=p50,
            unit="ms",
            baseline=f"the issue's bound (orders at {rate:.1f}/s, {len(lags)} events)",
            baseline_value=P50_BOUND_MS,
            target=1.0,
        ),
        latency_record(
            name="webhooks: commit to delivery p99 at 0.7 x",
            value=p99,
            unit="ms",
            baseline="the p50 bound, for scale",
            baseline_value=P50_BOUND_MS,
            target=None,
        ),
        throughput_record(
            name=f"webhooks: POST /api/orders/ c={CONNECTIONS}, subscribed",
            value=posting,
            unit="/s",
            baseline="the same with the endpoint inactive (ABBA slices)",
            baseline_value=bare,
            target=1.0 - COST_BOUND,
        ),
    ]


def _wait_settled(tag: str) -> None:
    """Wait until no order placed under ``tag`` is still PENDING."""
    from orders.models import OrderSummary

    deadline = time.monotonic() + TIMEOUT
    while OrderSummary.objects.filter(customer_id=tag, status="PENDING").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("webhooks benchmark: orders still pending")
        time.sleep(0.1)
