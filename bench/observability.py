"""Measure what metrics and JSON logs cost: the same server and worker with them on and off.

Issue 18 bounds the cost of observability at 5 % of ``POST /api/orders/`` throughput and 5 %
of saga throughput, measured side by side in one run. Two of each run at once, taking turns:

- **HTTP.** Two gunicorn servers as in bench/api.py (4 sync workers, the bench database,
  the same catalogue and clients). **On:** ``bench.settings`` (every middleware, the HTTP
  metrics one included) with ``PROMETHEUS_MULTIPROC_DIR`` set, as production runs several
  workers, and ``LOG_FORMAT=json`` at ``LOG_LEVEL=INFO``, so each order's "order … placed"
  line is written (to a file). **Off:** ``bench.settings_observability_off`` (no metrics or
  request-id middleware, logging at WARNING, no multiprocess directory). Closed loop at each
  of ``CONCURRENCY`` connections, ``SLICES`` slices per side in ABBA order; each side's best
  level counts.
- **Sagas.** Two workers as in bench/saga_throughput.py, each on a queue of its own. **On:**
  step series recorded in a multiprocess directory and served on ``WORKER_METRICS_PORT``,
  JSON lines at INFO (every attempt, Celery's task lines) to the worker's log file. **Off:**
  the same off settings (``SAGA_STEP_METRICS`` False, WARNING). ``BATCH`` four-step sagas
  submitted back to back per round, ``ROUNDS`` rounds per side in ABBA order, median.

Each saga round also reads the CPU time of the worker that ran it (main and pool processes),
reported per saga: the cost itself, steadier than a rate on shared cores.

Before reporting, it checks that "on" did observe (its log has the order and attempt lines,
the worker's exporter counted the attempts) and that "off" logged none of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import tempfile
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from bench.records import Record, abba, best_level_record, latency_record, throughput_record

CONCURRENCY = tuple(
    int(c) for c in os.environ.get("OBS_BENCH_CONCURRENCY", "4,8").split(",") if c.strip()
)
SLICES = int(os.environ.get("OBS_BENCH_SLICES", "4"))
BATCH = int(os.environ.get("OBS_BENCH_SAGA_BATCH", "200"))
ROUNDS = int(os.environ.get("OBS_BENCH_SAGA_ROUNDS", "6"))
WARMUP = 30
TARGET = 0.95
OFF_SETTINGS = "bench.settings_observability_off"
MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"
SIDES: tuple[str, str] = ("on", "off")
LOG_DIR = Path(__file__).resolve().parent.parent / "test-artifacts"


def _progress(message: str) -> None:
    print(f"  [observability] {message}", flush=True)


def _lines(path: Path, needle: str) -> list[dict[str, object]]:
    """Return the JSON lines of ``path`` whose message contains ``needle``."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and needle in str(record.get("message", "")):
                found.append(record)
    return found


# --- HTTP ---------------------------------------------------------------------------------


def _http(database_url: str) -> tuple[dict[str, dict[int, float]], dict[str, float]]:
    """Return each side's throughput per concurrency level, and its web CPU ms per order.

    The CPU is its gunicorn processes' (master and workers), read around each of its own
    slices: the web's share of what an order costs, less exposed to other work on the machine
    than the throughput is (a slower slice is slower on both counts).
    """
    from bench import api
    from lab.worker import delete_queue

    skus, tokens = api._seed()
    queue = f"bench-obs-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    metrics_dir = tempfile.mkdtemp(prefix="bench-obs-web-metrics-")
    LOG_DIR.mkdir(exist_ok=True)
    logs = {side: LOG_DIR / f"bench-observability-web-{side}.log" for side in SIDES}
    overrides = {
        "on": {MULTIPROC: metrics_dir, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"},
        "off": {"LOG_FORMAT": "json", "LOG_LEVEL": "WARNING"},
    }
    settings_module = {"on": "bench.settings", "off": OFF_SETTINGS}
    figures = {(side, level): api.LevelFigures() for side in SIDES for level in CONCURRENCY}
    cpu_seconds = dict.fromkeys(SIDES, 0.0)
    orders = dict.fromkeys(SIDES, 0)
    try:
        with contextlib.ExitStack() as stack:
            ports = {}
            for side in SIDES:
                log = stack.enter_context(logs[side].open("wb"))
                ports[side] = stack.enter_context(
                    api._gunicorn(
                        queue=queue,
                        database_url=database_url,
                        settings_module=settings_module[side],
                        env_overrides=overrides[side],
                        name=side,
                        stderr=log,
                    )
                )
            _progress(f"gunicorn on: port {ports['on']}, off: port {ports['off']}")
            for level in CONCURRENCY:
                for index in range(SLICES):
                    for side in abba(SIDES, index):
                        cpu_before = _server_cpu_seconds(ports[side])
                        result = api._closed_loop_slice(
                            ports[side],
                            tokens,
                            skus,
                            path=api.ORDERS_PATH,
                            connections=level,
                            customer_id=f"bench-obs-{side}",
                        )
                        cpu_seconds[side] += _server_cpu_seconds(ports[side]) - cpu_before
                        orders[side] += len(result.latencies)
                        f = figures[(side, level)]
                        f.requests += len(result.latencies)
                        f.seconds += api.SLICE_SECONDS
                _progress(
                    f"POST /api/orders/ at {level} connections: "
                    + ", ".join(f"{s} {figures[(s, level)].per_second:.1f}/s" for s in SIDES)
                )
        placed = {side: len(_lines(logs[side], "placed, saga")) for side in SIDES}
        _progress(f"'order placed' lines written: on {placed['on']}, off {placed['off']}")
        if placed["on"] == 0 or placed["off"] != 0:
            raise RuntimeError(f"observability benchmark: logs not as configured ({placed})")
        if not any(Path(metrics_dir).glob("*.db")):
            raise RuntimeError("observability benchmark: the 'on' server wrote no metrics files")
        for log_path in logs.values():
            log_path.unlink(missing_ok=True)
    finally:
        delete_queue(queue)  # the orders' sagas were never meant to run
        shutil.rmtree(metrics_dir, ignore_errors=True)
    per_level = {s: {c: figures[(s, c)].per_second for c in CONCURRENCY} for s in SIDES}
    _progress(
        "web CPU per order: "
        + ", ".join(f"{s} {1000 * cpu_seconds[s] / orders[s]:.2f} ms" for s in SIDES)
    )
    return per_level, {s: 1000 * cpu_seconds[s] / orders[s] for s in SIDES}


# --- sagas --------------------------------------------------------------------------------


@contextlib.contextmanager
def _routed_to(queue: str) -> Iterator[None]:
    """Send the sagas this process starts to ``queue`` (the worker of one side)."""
    from django.conf import settings

    from config.celery import app

    previous = (settings.CELERY_TASK_DEFAULT_QUEUE, app.conf.task_default_queue)
    settings.CELERY_TASK_DEFAULT_QUEUE = app.conf.task_default_queue = queue
    try:
        yield
    finally:
        settings.CELERY_TASK_DEFAULT_QUEUE, app.conf.task_default_queue = previous


def _attempts_counted(port: str) -> float:
    """Sum the step attempts the 'on' worker's exporter reports."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("backoffice_saga_step_attempts_total{")
    )


def _server_cpu_seconds(port: int) -> float:
    """Return the CPU time the gunicorn serving ``port`` (master and workers) has used."""
    import psutil

    # Found by its listening socket, which the master and every worker hold (gunicorn
    # renames its processes, so their command lines do not tell).
    pids = {
        c.pid
        for c in psutil.net_connections(kind="tcp")
        if c.pid and c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
    }
    return _cpu_seconds(pids)


def _worker_cpu_seconds(pid: int) -> float:
    """Return the CPU time a worker's main process and its pool's children have used."""
    import psutil

    parent = psutil.Process(pid)
    return _cpu_seconds([pid, *(child.pid for child in parent.children(recursive=True))])


def _cpu_seconds(pids: Iterable[int]) -> float:
    """Return the user and system CPU time these processes have used (gone ones count 0)."""
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def _sagas() -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Return each side's saga rates and its worker's CPU milliseconds per saga, per round.

    The rate is what the issue bounds; the CPU per saga is what the rate is made of, read
    from the worker's own processes, so it hardly moves with what else the machine runs
    (the rates on these shared cores drift by several per cent between rounds).
    """
    from bench.api import _free_port
    from bench.saga_throughput import _bench_worker, _register_bench_saga, _saga_batch
    from sagas import registry

    metrics_dir = tempfile.mkdtemp(prefix="bench-obs-worker-metrics-")
    exporter_port = str(_free_port())
    overrides = {
        "on": {
            MULTIPROC: metrics_dir,
            "WORKER_METRICS_PORT": exporter_port,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
        },
        "off": {"DJANGO_SETTINGS_MODULE": OFF_SETTINGS, "LOG_LEVEL": "WARNING"},
    }
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    queues = {side: f"bench-obs-sagas-{side}-{tag}" for side in SIDES}
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    cpu_ms: dict[str, list[float]] = {side: [] for side in SIDES}
    override = _register_bench_saga()
    try:
        with contextlib.ExitStack() as stack:
            workers = {
                side: stack.enter_context(
                    _bench_worker(
                        queues[side], overrides[side], loglevel=overrides[side]["LOG_LEVEL"]
                    )
                )
                for side in SIDES
            }
            for side in SIDES:
                with _routed_to(queues[side]):
                    _saga_batch(WARMUP)
            for index in range(ROUNDS):
                for side in abba(SIDES, index):
                    with _routed_to(queues[side]):
                        before = _worker_cpu_seconds(workers[side].pid)
                        rates[side].append(_saga_batch(BATCH)[0])
                        used = _worker_cpu_seconds(workers[side].pid) - before
                        cpu_ms[side].append(used * 1000 / BATCH)
            _progress(
                "saga rounds: "
                + "; ".join(f"{s} {[round(r, 1) for r in rates[s]]}/s" for s in SIDES)
                + f" ({BATCH} each); worker CPU per saga: "
                + "; ".join(f"{s} {[round(c, 2) for c in cpu_ms[s]]} ms" for s in SIDES)
            )
            counted = _attempts_counted(exporter_port)
            attempt_lines = {side: len(_lines(workers[side].log_path, " step ")) for side in SIDES}
            _progress(
                f"'on' worker: {counted:.0f} attempts counted; attempt lines logged: "
                f"on {attempt_lines['on']}, off {attempt_lines['off']}"
            )
            expected = 4 * (WARMUP + ROUNDS * BATCH)
            if counted < expected or attempt_lines["on"] < expected or attempt_lines["off"]:
                raise RuntimeError(
                    "observability benchmark: the workers did not observe as configured "
                    f"(counted {counted}, lines {attempt_lines}, expected {expected})"
                )
    finally:
        if override is not None:
            override.disable()  # type: ignore[attr-defined]
            registry.reset()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return rates, cpu_ms


def run() -> list[Record]:
    """Run both comparisons on the bench database; return their records."""
    from django.db import connection

    from lab.worker import database_url

    # Whatever this process runs inherits its environment; "off" must have no directory
    # (prometheus_client switches to files as soon as the variable exists, even empty).
    os.environ.pop(MULTIPROC, None)
    per_level, web_cpu_ms = _http(database_url(connection.settings_dict))
    rates, cpu_ms = _sagas()
    return [
        best_level_record(
            name="observability: POST /api/orders/ max throughput, on vs off",
            per_level=per_level,
            sides=("on", "off"),
            baseline="same server without metrics middleware, logging at WARNING",
            target=TARGET,
        ),
        latency_record(
            # Less is better: the ratio is off over on, above TARGET meaning within 5 %.
            name="observability: web CPU per order, on vs off",
            value=web_cpu_ms["on"],
            unit="ms",
            baseline=(
                "same server without metrics middleware, logging at WARNING "
                "(its gunicorn processes, over all its POST slices)"
            ),
            baseline_value=web_cpu_ms["off"],
            target=TARGET,
        ),
        throughput_record(
            name="observability: saga 4-step throughput, on vs off",
            value=statistics.median(rates["on"]),
            unit="/s",
            baseline=(
                "same worker without step metrics, logging at WARNING "
                f"(median of {ROUNDS} rounds of {BATCH})"
            ),
            baseline_value=statistics.median(rates["off"]),
            target=TARGET,
        ),
        latency_record(
            # Less is better: the ratio is off over on, above TARGET meaning within 5 %.
            name="observability: saga worker CPU per saga, on vs off",
            value=statistics.median(cpu_ms["on"]),
            unit="ms",
            baseline=(
                "same worker without step metrics, logging at WARNING "
                f"(its main and pool processes; median of {ROUNDS} rounds of {BATCH})"
            ),
            baseline_value=statistics.median(cpu_ms["off"]),
            target=TARGET,
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
