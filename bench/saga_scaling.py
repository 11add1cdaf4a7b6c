"""Measure how saga throughput grows with worker processes, and the sagas on RabbitMQ.

- **scaling**: 1, 2 and 4 worker processes (each ``celery worker --concurrency=1`` on a queue
  of its own), ``BATCH`` four-step no-op sagas (``test.noop4``) started back to back and
  dealt round-robin to the queues (each saga's steps stay on its queue), counted from the
  first start to the last completion; the median of ``ROUNDS`` rounds, as a ratio to one
  process. The sagas are started from this one process, as the web would start them.
- **RabbitMQ beside Redis**: the same with one worker process (concurrency 2, as in
  ``saga_throughput``) on RabbitMQ (``RABBITMQ_URL``, default the machine's on 5672), rounds
  alternating with the same on Redis, as a ratio to Redis.

``python -m bench saga_scaling`` (or ``make bench``) runs it on the bench database.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Any

from bench.records import Record, throughput_record
from bench.saga_throughput import (
    _register_bench_saga,
    _start_saga,
    _wait,
    bench_worker_handle,
)

BATCH = int(os.environ.get("SAGA_SCALING_BATCH", "200"))
ROUNDS = int(os.environ.get("SAGA_SCALING_ROUNDS", "3"))
PROCESSES = (1, 2, 4)
WARMUP = 20
BATCH_TIMEOUT = 300.0
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _use_broker(url: str) -> None:
    """Point this process's Celery app and its step publisher at ``url``."""
    from django.conf import settings

    from config.celery import app
    from infrastructure import broker

    app.conf.update(broker_url=url, broker_write_url=None)
    app._after_fork()  # type: ignore[attr-defined]  # drops the pooled connections
    broker._fast_path.pop(app, None)
    settings.CELERY_BROKER_URL = url


def _delete_queues(queues: list[str]) -> None:
    from config.celery import app

    with contextlib.suppress(Exception), app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        for queue in queues:
            channel.queue_delete(queue)


@contextlib.contextmanager
def _workers(count: int, concurrency: int, broker_url: str) -> Iterator[list[str]]:
    """Run ``count`` worker processes, each on a queue of its own; yield the queues."""
    from django.conf import settings

    from lab.worker import WorkerHandle

    previous_url = str(settings.CELERY_BROKER_URL)
    previous_queue = settings.CELERY_TASK_DEFAULT_QUEUE
    routes = settings.SAGA_QUEUE_ROUTES
    settings.SAGA_QUEUE_ROUTES = {}
    _use_broker(broker_url)
    run = f"bench-scale-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    workers: list[WorkerHandle] = []
    queues = [f"{run}-{n}" for n in range(count)]
    try:
        for queue in queues:
            worker = bench_worker_handle(queue, broker_url, concurrency=concurrency)
            workers.append(worker)
            worker.start()
        yield queues
    finally:
        for worker in workers:
            worker.stop()
            worker.log_path.unlink(missing_ok=True)
        _delete_queues(queues)
        _use_broker(previous_url)
        settings.CELERY_TASK_DEFAULT_QUEUE = previous_queue
        settings.SAGA_QUEUE_ROUTES = routes


def _batch(queues: list[str], count: int) -> float:
    """Start ``count`` sagas dealt round-robin to ``queues``; return sagas/s."""
    from django.conf import settings
    from django.utils import timezone

    from sagas.models import Saga

    batch = f"bench-{uuid.uuid4().hex}"
    first = time.time()
    for n in range(count):
        # The first step goes to the default queue; the worker on it keeps the rest there.
        settings.CELERY_TASK_DEFAULT_QUEUE = queues[n % len(queues)]
        _start_saga(timezone.now(), batch)
    completed = Saga.objects.filter(correlation_id=batch, status="COMPLETED")
    _wait(lambda: completed.count() == count, BATCH_TIMEOUT, f"{count} sagas", 0.1)
    last = max(at.timestamp() for at in completed.values_list("finished_at", flat=True) if at)
    return count / (last - first)


def _rate(processes: int, concurrency: int, broker_url: str) -> list[float]:
    with _workers(processes, concurrency, broker_url) as queues:
        _batch(queues, WARMUP)
        return [_batch(queues, BATCH) for _ in range(ROUNDS)]


def run() -> list[Record]:
    """Run the benchmark on the database Django is set up with; return its records."""
    from django.conf import settings

    override = _register_bench_saga()
    redis_url = str(settings.CELERY_BROKER_URL)
    try:
        scaling = {n: _rate(n, 1, redis_url) for n in PROCESSES}
        on_redis: list[float] = []
        on_rabbitmq: list[float] = []
        for _ in range(2):
            on_redis.extend(_rate(1, 2, redis_url))
            on_rabbitmq.extend(_rate(1, 2, RABBITMQ_URL))
    finally:
        if override is not None:
            override.disable()  # type: ignore[attr-defined]
            from sagas import registry

            registry.reset()

    rates = {n: statistics.median(r) for n, r in scaling.items()}
    for n, r in scaling.items():
        print(f"  {n} worker process(es): {[round(x, 1) for x in r]} sagas/s ({BATCH} each)")
    print(
        f"  one worker (concurrency 2): Redis {[round(x, 1) for x in on_redis]}, "
        f"RabbitMQ {[round(x, 1) for x in on_rabbitmq]} sagas/s"
    )
    records = [
        throughput_record(
            name=f"saga scaling: {n} worker processes, {n} queues",
            value=rates[n],
            unit="/s",
            baseline="1 worker process",
            baseline_value=rates[1],
            target=None,
        )
        for n in PROCESSES
        if n > 1
    ]
    records.append(
        throughput_record(
            name="saga: 4-step throughput on RabbitMQ",
            value=statistics.median(on_rabbitmq),
            unit="/s",
            baseline="the same on Redis",
            baseline_value=statistics.median(on_redis),
            target=None,
        )
    )
    return records
