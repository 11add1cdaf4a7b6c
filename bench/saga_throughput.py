"""Measure the saga engine beside a bare Celery chain, on one worker, in one run.

Both run four no-op steps on the same Redis, through one worker process started here
(prefork, concurrency 2) on a queue of its own:

- **engine**: sagas of type ``test.noop4``, started with ``saga_start`` (its own transaction) and
  driven step by step by ``run_saga_step`` (claim, run, record, dispatch after commit);
- **baseline**: ``chain(link, link, link, end)`` of trivial tasks with no database at all.

Throughput: ``BATCH`` of each submitted back to back, counted from the first submission to
the last completion; rounds alternate engine and baseline so that other work on the machine
slows both alike, and the median round counts. Latency: one at a time (nothing else queued),
alternating, from just before submission to the completion time the worker recorded (the
saga's ``finished_at``; the chain's last task pushes its time to Redis); p50 and p99.

The worker runs with ``FAULT_INJECTION_ENABLED=false`` (the production setting) so the plan
is not consulted. ``python -m bench saga_throughput`` (or ``make bench``) runs it on the bench
database; ``python -m bench.saga_throughput`` alone does the same.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.records import Record, latency_record, throughput_record

if TYPE_CHECKING:
    from lab.worker import WorkerHandle

BATCH = int(os.environ.get("SAGA_BENCH_BATCH", "200"))
ROUNDS = int(os.environ.get("SAGA_BENCH_ROUNDS", "5"))
LATENCY_SAMPLES = int(os.environ.get("SAGA_BENCH_LATENCY_SAMPLES", "150"))
WARMUP = 30
#: Generous bounds, so a broken run fails instead of hanging.
BATCH_TIMEOUT = 300.0
ONE_TIMEOUT = 30.0
SAGA_TYPE = "test.noop4"
NOOP4_PATH = "sagas.testing.noop.NOOP4"
LOG_DIR = Path(__file__).resolve().parent.parent / "test-artifacts"


def bench_worker_handle(
    queue: str,
    broker_url: str,
    env_overrides: Mapping[str, str] | None = None,
    **options: Any,
) -> WorkerHandle:
    """Describe (not start) a bench worker on ``queue``: the bench database, ``broker_url``,
    the test-only sagas, no fault injection, WARNING logs; ``env_overrides`` applied last,
    ``options`` passed to ``WorkerHandle`` (``loglevel``, ``concurrency``).
    """
    from django.db import connection

    from lab.worker import WorkerHandle, database_url

    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(connection.settings_dict),
        CELERY_BROKER_URL=broker_url,
        CELERY_QUEUE=queue,
        # The bench's saga and chain tasks come with the test-only app.
        SAGA_TESTING="1",
        FAULT_INJECTION_ENABLED="false",
        CELERY_SKIP_CHECKS="1",
        LOG_LEVEL="WARNING",
    )
    env.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    env.update(env_overrides or {})
    return WorkerHandle(
        queue=queue,
        nodename=f"{queue}@{os.uname().nodename}",
        env=env,
        log_path=LOG_DIR / f"bench-worker-{queue}.log",
        **options,
    )


@contextmanager
def _bench_worker(
    queue: str, env_overrides: Mapping[str, str] | None = None, *, loglevel: str = "INFO"
) -> Iterator[WorkerHandle]:
    """Run a worker on ``queue`` and route this process's tasks there while it runs.

    ``env_overrides`` (applied last) change the worker's environment: its settings module,
    its log format. ``loglevel`` is Celery's ``--loglevel``, which sets the root logger's
    level after Django's LOGGING (so LOG_LEVEL alone does not quieten a worker).
    """
    from django.conf import settings

    from config.celery import app
    from lab.worker import delete_queue

    worker = bench_worker_handle(
        queue, str(settings.CELERY_BROKER_URL), env_overrides, loglevel=loglevel
    )
    previous = (settings.CELERY_TASK_DEFAULT_QUEUE, app.conf.task_default_queue)
    routes = settings.SAGA_QUEUE_ROUTES
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    settings.SAGA_QUEUE_ROUTES = {}
    app.conf.task_default_queue = queue
    worker.start()
    try:
        yield worker
    except BaseException:
        print(f"  the bench worker's log is kept in {worker.log_path}")
        raise
    else:
        worker.log_path.unlink(missing_ok=True)
    finally:
        worker.stop()
        delete_queue(queue)
        settings.CELERY_TASK_DEFAULT_QUEUE, app.conf.task_default_queue = previous
        settings.SAGA_QUEUE_ROUTES = routes


def _start_saga(now: datetime, batch: str) -> uuid.UUID:
    from sagas.services import saga_start

    return saga_start(saga_type=SAGA_TYPE, context={}, correlation_id=batch, actor="bench", now=now)


def _wait(predicate: Callable[[], bool], timeout: float, what: str, interval: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"saga benchmark: timed out waiting for {what}")
        time.sleep(interval)


def _saga_batch(count: int) -> tuple[float, list[float]]:
    """Run ``count`` sagas at once; return (sagas/s, latencies in ms)."""
    from django.utils import timezone

    from sagas.models import Saga

    batch = f"bench-{uuid.uuid4().hex}"
    starts: dict[uuid.UUID, float] = {}
    first = time.time()
    for _ in range(count):
        submitted = time.time()
        starts[_start_saga(timezone.now(), batch)] = submitted
    # Waiting costs the database one indexed count now and then, so it slows the engine
    # no more than the chain's wait slows Redis.
    completed = Saga.objects.filter(correlation_id=batch, status="COMPLETED")
    _wait(lambda: completed.count() == count, BATCH_TIMEOUT, f"{count} sagas", 0.1)
    finished = {
        saga_id: at.timestamp()
        for saga_id, at in completed.values_list("id", "finished_at")
        if at is not None
    }
    last = max(finished.values())
    latencies = [(finished[i] - starts[i]) * 1000 for i in starts]
    return count / (last - first), latencies


def _chain_batch(count: int) -> tuple[float, list[float]]:
    """Run ``count`` bare chains at once; return (chains/s, latencies in ms)."""
    from celery import chain
    from django.conf import settings
    from redis import Redis

    from sagas.testing.tasks import chain_end, chain_link

    client = Redis.from_url(settings.CELERY_BROKER_URL)
    run = uuid.uuid4().hex
    key = f"bench:{run}"
    starts: list[float] = []
    first = time.time()
    for n in range(count):
        starts.append(time.time())
        chain(
            chain_link.si(run=run, n=n),
            chain_link.si(run=run, n=n),
            chain_link.si(run=run, n=n),
            chain_end.si(run=run, n=n),
        ).apply_async()
    _wait(lambda: client.llen(key) >= count, BATCH_TIMEOUT, f"{count} chains", 0.1)
    ends: dict[int, float] = {}
    for item in client.lrange(key, 0, -1):
        number, at = _text(item).split()
        ends[int(number)] = float(at)
    client.delete(key)
    latencies = [(ends[n] - starts[n]) * 1000 for n in range(count)]
    return count / (max(ends.values()) - first), latencies


def _one_saga() -> float:
    from django.utils import timezone

    from sagas.models import Saga

    submitted = time.time()
    saga_id = _start_saga(timezone.now(), "bench-latency")
    rows = Saga.objects.filter(pk=saga_id, status="COMPLETED").values_list("finished_at", flat=True)
    found: list[datetime] = []

    def finished() -> bool:
        found[:] = [at for at in rows.all() if at is not None]
        return bool(found)

    # The latency is read from the timestamps, so polling gently only costs the bench time.
    _wait(finished, ONE_TIMEOUT, "one saga", 0.01)
    return (found[0].timestamp() - submitted) * 1000


def _one_chain() -> float:
    from celery import chain
    from django.conf import settings
    from redis import Redis

    from sagas.testing.tasks import chain_end, chain_link

    client = Redis.from_url(settings.CELERY_BROKER_URL)
    run = uuid.uuid4().hex
    submitted = time.time()
    chain(
        chain_link.si(run=run, n=0),
        chain_link.si(run=run, n=0),
        chain_link.si(run=run, n=0),
        chain_end.si(run=run, n=0),
    ).apply_async()
    popped = client.blpop([f"bench:{run}"], timeout=ONE_TIMEOUT)
    if popped is None:
        raise RuntimeError("saga benchmark: a chain did not finish")
    return (float(_text(popped[1]).split()[1]) - submitted) * 1000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _register_bench_saga() -> object:
    from django.conf import settings
    from django.test.utils import override_settings

    from sagas import registry

    if NOOP4_PATH in settings.SAGA_DEFINITIONS:
        return None
    override = override_settings(SAGA_DEFINITIONS=[*settings.SAGA_DEFINITIONS, NOOP4_PATH])
    override.enable()
    registry.reset()
    return override


def run() -> list[Record]:
    """Run the benchmark on the database Django is set up with; return its records."""
    override = _register_bench_saga()
    queue = f"bench-sagas-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        with _bench_worker(queue):
            _saga_batch(WARMUP)
            _chain_batch(WARMUP)
            saga_rates: list[float] = []
            chain_rates: list[float] = []
            loaded: list[float] = []
            loaded_chain: list[float] = []
            for _ in range(ROUNDS):
                rate, lat = _saga_batch(BATCH)
                saga_rates.append(rate)
                loaded.extend(lat)
                rate, lat = _chain_batch(BATCH)
                chain_rates.append(rate)
                loaded_chain.extend(lat)
            saga_lat: list[float] = []
            chain_lat: list[float] = []
            for _ in range(LATENCY_SAMPLES):
                saga_lat.append(_one_saga())
                chain_lat.append(_one_chain())
    finally:
        if override is not None:
            override.disable()  # type: ignore[attr-defined]
            from sagas import registry

            registry.reset()

    saga_rate, chain_rate = statistics.median(saga_rates), statistics.median(chain_rates)
    print(
        f"  throughput rounds: sagas {[round(r, 1) for r in saga_rates]}/s, "
        f"chains {[round(r, 1) for r in chain_rates]}/s ({BATCH} each)"
    )
    print(
        f"  latency under a full batch (p50): sagas {_percentile(loaded, 0.5):.0f} ms, "
        f"chains {_percentile(loaded_chain, 0.5):.0f} ms"
    )
    baseline = "bare Celery chain of 4 trivial tasks"
    return [
        throughput_record(
            name="saga: 4-step throughput",
            value=saga_rate,
            unit="/s",
            baseline=baseline,
            baseline_value=chain_rate,
            target=0.5,
        ),
        latency_record(
            name="saga: 4-step p50 latency",
            value=_percentile(saga_lat, 0.5),
            unit="ms",
            baseline=baseline,
            baseline_value=_percentile(chain_lat, 0.5),
            target=0.33,
        ),
        latency_record(
            name="saga: 4-step p99 latency",
            value=_percentile(saga_lat, 0.99),
            unit="ms",
            baseline=baseline,
            baseline_value=_percentile(chain_lat, 0.99),
            target=None,
        ),
    ]


def main() -> None:
    """Set up the bench database (with the test-only app) and run the benchmark alone."""
    os.environ["SAGA_TESTING"] = "1"
    from bench.database import use_bench_database
    from bench.records import save

    use_bench_database()
    save(run())


if __name__ == "__main__":
    main()
