"""Measure the event store against plain psycopg on the same database, in one run.

What is measured, each beside its baseline (see docs/benchmarks.md, "Event store"):

- appending one event to an existing aggregate through ``Repository.execute`` (load, deposit,
  save) with 1 and 4 concurrent writers, beside the same row inserted by plain psycopg and
  committed, on 1 and 4 connections;
- the same 4-writer append with a ``LOCK TABLE … IN EXCLUSIVE MODE`` per append (the
  alternative to the transaction-id horizon that we rejected), and the reader lag the horizon
  costs;
- loading aggregates of 100, 1,000 and 10,000 events, beside fetching the same rows with
  plain psycopg, and the 10,000-event aggregate with snapshots beside a 100-event load;
- projection catch-up through the real runner, beside the 1-writer append rate.

Writers are threads, each with its own Django connection and its own aggregates, so they
never conflict: what is measured is the store, not retries.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, connections
from django.test.utils import override_settings

from bench.records import Record, latency_record, throughput_record
from eventstore import projections
from eventstore.factory import postgres_event_store
from eventstore.postgres import PostgresEventStore
from eventstore.projections import Projector, projection_catch_up
from eventstore.records import AppendResult, EventMetadata, NewEvent, RecordedEvent
from eventstore.repository import Repository
from eventstore.sample import Account
from eventstore.sample import registry as account_events
from infrastructure.db import server_binding_cursor

# Every appended aggregate starts at this many events, and every append goes to an aggregate
# no writer has touched yet, so each op loads exactly STREAM_LENGTH events.
STREAM_LENGTH = 10
# Each append variant runs SLICES times for SLICE_SECONDS, interleaved with the variants it
# is compared with, so that other work on the machine slows them alike.
SLICES = 10
SLICE_SECONDS = 0.5
WARMUP_SECONDS = 0.5
LAG_SECONDS = 3.0
# At most this long after the writers stop for the horizon reader to see every commit.
LAG_DRAIN_SECONDS = 30.0
# Fresh aggregates on hand before every slice (more are seeded, untimed, when fewer are
# left), and how many to seed at a time.
POOL_MINIMUM = 3000
POOL_BATCH = 12_000
LOAD_REPEATS = {100: 201, 1000: 51, 10_000: 15}
SNAPSHOT_EVERY = 100
CATCH_UP_BATCH = 500
CATCH_UP_BATCHES = 40
LAG_POLL_SECONDS = 0.002

DEPOSIT_DATA = '{"amount": "12.50", "currency": "EUR"}'
OPENED_DATA = '{"owner": "bench"}'
METADATA = '{"actor": "user:7", "correlation_id": "%s", "causation_id": "%s"}'

RAW_INSERT = (
    "INSERT INTO eventstore_event "
    "(event_id, stream_type, stream_id, version, event_type, schema_version, data, metadata) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)"
)
RAW_FETCH = (
    "SELECT version, event_type, schema_version, data FROM eventstore_event "
    "WHERE stream_type = %s AND stream_id = %s AND version > %s ORDER BY version"
)


class BenchAccount(Account):
    """The sample ledger account with no snapshots: every load replays the whole stream."""

    stream_type = "bench-account"
    # 0 rather than None only because Account narrowed the attribute to int: both mean never.
    snapshot_every = 0


class SnapshottedBenchAccount(Account):
    """The same account with a snapshot every SNAPSHOT_EVERY events."""

    stream_type = "bench-account-snap"
    snapshot_every = SNAPSHOT_EVERY


class TableLockingEventStore(PostgresEventStore):
    """Serialise every append behind a table lock: the alternative we rejected.

    This is what eventsourcing's Django recorder does so readers can walk positions without
    skipping late commits; the lock is held until commit, so commits cannot overlap.
    """

    def append(
        self,
        *,
        stream_type: str,
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
    ) -> AppendResult:
        with self.transaction():
            with connection.cursor() as cursor:
                cursor.execute("LOCK TABLE eventstore_event IN EXCLUSIVE MODE")
            return super().append(
                stream_type=stream_type,
                stream_id=stream_id,
                expected_version=expected_version,
                events=events,
            )


LEDGER_TABLE = "bench_ledger_entry"


class EventLedgerProjector(Projector):
    """Write one small read-model row per deposit, idempotently, a statement per event."""

    name = "bench-ledger-each"
    event_types = frozenset({"MoneyDeposited"})

    def handle(self, event: RecordedEvent) -> None:
        # Prepared after a few runs (infrastructure.db), as the product's own projectors write.
        with server_binding_cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {LEDGER_TABLE} (event_id, account_id, version, amount) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
                [str(event.event_id), event.stream_id, event.version, event.data["amount"]],
            )

    def reset(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {LEDGER_TABLE}")


class LedgerProjector(EventLedgerProjector):
    """The same rows, a batch per statement (``handle_batch``, what the catch-up runs)."""

    name = "bench-ledger"

    def handle_batch(self, events: Sequence[RecordedEvent]) -> None:
        # The whole batch in one statement: the runner hands over what it read in one go.
        with server_binding_cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {LEDGER_TABLE} (event_id, account_id, version, amount) "
                "SELECT * FROM unnest(%s::uuid[], %s::text[], %s::int[], %s::numeric[]) "
                "ON CONFLICT (event_id) DO NOTHING",
                [
                    [str(e.event_id) for e in events],
                    [e.stream_id for e in events],
                    [e.version for e in events],
                    [e.data["amount"] for e in events],
                ],
            )


def _progress(message: str) -> None:
    print(f"  [eventstore] {message}", flush=True)


def _conninfo() -> str:
    db = settings.DATABASES["default"]
    return psycopg.conninfo.make_conninfo(
        dbname=db["NAME"],
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        host=db.get("HOST") or None,
        port=str(db["PORT"]) if db.get("PORT") else None,
    )


# --- seeding ------------------------------------------------------------------------------


def _seed_streams(*, stream_type: str, prefix: str, count: int, length: int) -> list[str]:
    """Insert ``count`` account streams of ``length`` events in one statement; return ids."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO eventstore_event (event_id, stream_type, stream_id, version, "
            "event_type, schema_version, data, metadata) "
            "SELECT gen_random_uuid(), %s, %s || s.i, v.v, "
            "CASE WHEN v.v = 1 THEN 'AccountOpened' ELSE 'MoneyDeposited' END, "
            "CASE WHEN v.v = 1 THEN 1 ELSE 2 END, "
            "CASE WHEN v.v = 1 THEN %s::jsonb ELSE %s::jsonb END, "
            "%s::jsonb "
            "FROM generate_series(1, %s) AS s(i), generate_series(1, %s) AS v(v)",
            [
                stream_type,
                prefix,
                OPENED_DATA,
                DEPOSIT_DATA,
                METADATA % (uuid.uuid4(), uuid.uuid4()),
                count,
                length,
            ],
        )
        # Steady state, not the first read after a bulk load: without a vacuum, every first
        # load of a seeded stream would also set hint bits and dirty its pages.
        cursor.execute("VACUUM ANALYZE eventstore_event")
    return [f"{prefix}{i}" for i in range(1, count + 1)]


def _seed_snapshotted_stream(aggregate_id: str, length: int) -> None:
    """Build a stream through the repository, so its snapshots are the ones saves write."""
    repo: Repository[Account] = Repository(
        SnapshottedBenchAccount, store=postgres_event_store(), registry=account_events
    )
    account = SnapshottedBenchAccount.open(aggregate_id, "bench")
    metadata = EventMetadata(correlation_id=str(uuid.uuid4()), actor="user:7")
    while account.version < length:
        # Fill up to the next multiple of SNAPSHOT_EVERY, where the save writes a snapshot.
        step = SNAPSHOT_EVERY - account.version % SNAPSHOT_EVERY
        for _ in range(min(step, length - account.version)):
            account.deposit(Decimal("12.50"))
        repo.save(account, metadata=metadata)


# --- appending ----------------------------------------------------------------------------


class Writer:
    """One writer thread's work: open its connection, then append until told to stop."""

    def open(self) -> None:
        raise NotImplementedError

    def append_one(self) -> bool:
        """Append one event; False when the writer has nothing left to append to."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _deposit(account: Account) -> None:
    account.deposit(Decimal("12.50"))


class RepositoryWriter(Writer):
    """Load → deposit → save through ``Repository.execute``, one fresh aggregate per op."""

    def __init__(self, pool: AggregatePool, store: PostgresEventStore) -> None:
        self._pool = pool
        self._repo = Repository(BenchAccount, store=store, registry=account_events)

    def open(self) -> None:
        connection.ensure_connection()

    def append_one(self) -> bool:
        aggregate_id = self._pool.take()
        if aggregate_id is None:
            return False
        metadata = EventMetadata(
            correlation_id=str(uuid.uuid4()), causation_id=str(uuid.uuid4()), actor="user:7"
        )
        self._repo.execute(aggregate_id, _deposit, metadata=metadata)
        return True

    def close(self) -> None:
        connection.close()


class RawWriter(Writer):
    """Insert the same row shape with plain psycopg and commit it: the ceiling."""

    def __init__(self, conninfo: str, prefix: str) -> None:
        self._conninfo = conninfo
        self._prefix = prefix
        self._count = 0
        self._conn: psycopg.Connection[Any] | None = None

    def open(self) -> None:
        self._conn = psycopg.connect(self._conninfo)

    def append_one(self) -> bool:
        assert self._conn is not None
        self._count += 1
        self._conn.execute(
            RAW_INSERT,
            [
                uuid.uuid4(),
                BenchAccount.stream_type,
                f"{self._prefix}{self._count}",
                1,
                "MoneyDeposited",
                2,
                DEPOSIT_DATA,
                METADATA % (uuid.uuid4(), uuid.uuid4()),
            ],
        )
        self._conn.commit()
        return True

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


@dataclass(frozen=True)
class AppendRun:
    ops: int
    seconds: float
    cpu_seconds: float  # this process's CPU time: near ``seconds`` means one core is full

    @property
    def per_second(self) -> float:
        return self.ops / self.seconds

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.seconds

    def __add__(self, other: AppendRun) -> AppendRun:
        return AppendRun(
            self.ops + other.ops,
            self.seconds + other.seconds,
            self.cpu_seconds + other.cpu_seconds,
        )


def _run_writers(writers: Sequence[Writer], seconds: float) -> AppendRun:
    """Run every writer in its own thread for ``seconds``; return the ops done and the time."""
    clock: dict[str, float] = {}

    def start_clock() -> None:
        # Runs once, when every writer is connected, before any of them is released.
        clock["cpu"] = time.process_time()
        clock["start"] = time.perf_counter()
        clock["deadline"] = clock["start"] + seconds

    ready = threading.Barrier(len(writers), action=start_clock)
    counts = [0] * len(writers)
    errors: list[BaseException] = []

    def work(index: int, writer: Writer) -> None:
        try:
            writer.open()
            ready.wait()
            deadline = clock["deadline"]
            while time.perf_counter() < deadline and writer.append_one():
                counts[index] += 1
        except BaseException as exc:
            errors.append(exc)
            ready.abort()
        finally:
            writer.close()

    threads = [
        threading.Thread(target=work, args=(i, w), name=f"bench-writer-{i}")
        for i, w in enumerate(writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    elapsed = time.perf_counter() - clock["start"]
    cpu = time.process_time() - clock["cpu"]
    return AppendRun(sum(counts), elapsed, cpu)


class AggregatePool:
    """Hand out seeded aggregates no writer has touched yet, one per append, to any thread."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._ids: deque[str] = deque()
        self._batches = 0

    def top_up(self) -> None:
        """Seed another batch when fewer than POOL_MINIMUM are left (outside any timing)."""
        if len(self._ids) >= POOL_MINIMUM:
            return
        self._batches += 1
        self._ids.extend(
            _seed_streams(
                stream_type=BenchAccount.stream_type,
                prefix=f"{self._prefix}{self._batches}-",
                count=POOL_BATCH,
                length=STREAM_LENGTH,
            )
        )

    def take(self) -> str | None:
        try:
            return self._ids.popleft()  # atomic: threads never get the same aggregate
        except IndexError:
            return None


def _append_figures(pool: AggregatePool, conninfo: str) -> dict[str, AppendRun]:
    """Measure every append variant in interleaved slices; return each one's totals."""
    store = postgres_event_store()
    locking = TableLockingEventStore(inline_projectors=projections.inline_projectors)

    def ours(n: int, on: PostgresEventStore = store) -> list[Writer]:
        pool.top_up()
        return [RepositoryWriter(pool, on) for _ in range(n)]

    def raw(n: int) -> list[Writer]:
        return [RawWriter(conninfo, f"raw-{uuid.uuid4().hex[:8]}-") for _ in range(n)]

    groups: list[dict[str, Callable[[], list[Writer]]]] = [
        {"raw_1": lambda: raw(1), "ours_1": lambda: ours(1)},
        {"raw_4": lambda: raw(4), "ours_4": lambda: ours(4), "lock_4": lambda: ours(4, locking)},
    ]
    _progress("warming up writers")
    _run_writers(raw(2), WARMUP_SECONDS)
    _run_writers(ours(2), WARMUP_SECONDS)
    totals: dict[str, AppendRun] = {}
    for group in groups:
        for _ in range(SLICES):
            for key, make in group.items():
                result = _run_writers(make(), SLICE_SECONDS)
                totals[key] = totals[key] + result if key in totals else result
        for key in group:
            total = totals[key]
            _progress(
                f"{key}: {total.per_second:,.0f} ops/s ({total.ops} ops in {SLICES} slices, "
                f"python CPU {total.cpu_share:.0%} of one core)"
            )
    return totals


# --- reader lag ---------------------------------------------------------------------------

HORIZON_READ = (
    "SELECT transaction_id, position, "
    "extract(epoch FROM clock_timestamp() - recorded_at) "
    "FROM eventstore_event WHERE (transaction_id, position) > (%s, %s) "
    "AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint "
    "AND stream_type = %s ORDER BY transaction_id, position"
)
POSITION_READ = (
    "SELECT 0, position, extract(epoch FROM clock_timestamp() - recorded_at) "
    "FROM eventstore_event WHERE position > %s AND stream_type = %s ORDER BY position"
)


def _poll_ages(
    conninfo: str,
    *,
    horizon: bool,
    stop: threading.Event,
    start: tuple[int, int],
    ages: list[float],
) -> None:
    """Poll the log as a reader would; add each event's age (s) when first read to ``ages``.

    The age runs from the writing transaction's start (``recorded_at``) to the read, so it
    holds the writer's own transaction time and the poll interval as well as any wait for the
    horizon. Both readers share those; the difference between them is the horizon's cost.
    """
    after = start
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while not stop.is_set():
            if horizon:
                rows = conn.execute(HORIZON_READ, [*after, BenchAccount.stream_type]).fetchall()
            else:
                rows = conn.execute(POSITION_READ, [after[1], BenchAccount.stream_type]).fetchall()
            if rows:
                after = (int(rows[-1][0]), int(rows[-1][1]))
                ages.extend(float(r[2]) for r in rows)
            time.sleep(LAG_POLL_SECONDS)


def _reader_lag(pool: AggregatePool, conninfo: str) -> tuple[list[float], list[float]]:
    """Run 4 writers with a horizon reader and a position reader; return both readers' ages."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(max(transaction_id), 0), coalesce(max(position), 0) "
            "FROM eventstore_event"
        )
        row = cursor.fetchone()
    assert row is not None
    # Every transaction still to come gets a larger id: both readers start past the past.
    start = (int(row[0]), int(row[1]))
    stop = threading.Event()
    results: dict[bool, list[float]] = {True: [], False: []}

    def read(horizon: bool) -> None:
        _poll_ages(conninfo, horizon=horizon, stop=stop, start=start, ages=results[horizon])

    readers = [threading.Thread(target=read, args=(h,)) for h in (True, False)]
    for reader in readers:
        reader.start()
    store = postgres_event_store()
    pool.top_up()
    writers: list[Writer] = [RepositoryWriter(pool, store) for _ in range(4)]
    written = _run_writers(writers, LAG_SECONDS).ops
    # Let the horizon reader see every commit (the position reader may skip some: that is
    # its flaw). It waits for the oldest writing transaction on the whole server, which on
    # a shared server can be another database's: waiting for it (within bounds) puts that
    # wait in the figures instead of losing them.
    deadline = time.monotonic() + LAG_DRAIN_SECONDS
    while time.monotonic() < deadline and len(results[True]) < written:
        time.sleep(0.05)
    time.sleep(0.2)  # and the position reader its last poll
    stop.set()
    for reader in readers:
        reader.join()
    if not all(results.values()):
        raise RuntimeError(
            f"reader lag: no event readable within {LAG_DRAIN_SECONDS:.0f} s of the last "
            "commit (a writing transaction held the horizon back that long)"
        )
    return results[True], results[False]


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# --- loading ------------------------------------------------------------------------------


def _median_seconds(action: Callable[[], object], repeats: int) -> float:
    for _ in range(max(3, repeats // 10)):
        action()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _load_figures(conninfo: str) -> tuple[dict[int, tuple[float, float]], float, float]:
    """Return {length: (ours s, raw s)}, the snapshotted 10,000 load and its +99 variant."""
    repo = Repository(BenchAccount, store=postgres_event_store(), registry=account_events)
    figures: dict[int, tuple[float, float]] = {}
    with psycopg.connect(conninfo, autocommit=True) as raw:
        for length, repeats in LOAD_REPEATS.items():
            (aggregate_id,) = _seed_streams(
                stream_type=BenchAccount.stream_type,
                prefix=f"load-{length}-",
                count=1,
                length=length,
            )
            loaded = repo.load(aggregate_id)
            rows = raw.execute(RAW_FETCH, [BenchAccount.stream_type, aggregate_id, 0]).fetchall()
            assert loaded.version == length == len(rows)
            assert loaded.balance == Decimal("12.50") * (length - 1)

            def ours(aggregate_id: str = aggregate_id) -> object:
                return repo.load(aggregate_id)

            def plain(aggregate_id: str = aggregate_id) -> object:
                return raw.execute(
                    RAW_FETCH, [BenchAccount.stream_type, aggregate_id, 0]
                ).fetchall()

            # Interleave ours and the baseline so drift on the machine touches both alike.
            ours_s, raw_s = _median_seconds(ours, repeats), _median_seconds(plain, repeats)
            ours_s = min(ours_s, _median_seconds(ours, repeats))
            raw_s = min(raw_s, _median_seconds(plain, repeats))
            figures[length] = (ours_s, raw_s)
            _progress(
                f"load {length:>6} events: ours {ours_s * 1000:.2f} ms, "
                f"psycopg fetch {raw_s * 1000:.2f} ms"
            )

    snap_repo = Repository(
        SnapshottedBenchAccount, store=postgres_event_store(), registry=account_events
    )
    _seed_snapshotted_stream("snap-10000", 10_000)
    _seed_snapshotted_stream("snap-10099", 10_099)
    for aggregate_id, length in (("snap-10000", 10_000), ("snap-10099", 10_099)):
        snapped = snap_repo.load(aggregate_id)
        assert snapped.version == length and snapped.replayed == length % SNAPSHOT_EVERY
    snap_s = _median_seconds(lambda: snap_repo.load("snap-10000"), LOAD_REPEATS[100])
    snap_tail_s = _median_seconds(lambda: snap_repo.load("snap-10099"), LOAD_REPEATS[100])
    _progress(
        f"load 10,000 events with snapshots: {snap_s * 1000:.2f} ms "
        f"({snap_tail_s * 1000:.2f} ms with 99 events after the snapshot)"
    )
    return figures, snap_s, snap_tail_s


# --- projection catch-up ------------------------------------------------------------------


@contextmanager
def _bench_projector() -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (event_id uuid PRIMARY KEY, "
            "account_id text NOT NULL, version int NOT NULL, amount numeric(12, 2) NOT NULL)"
        )
    projections._projector_classes.cache_clear()
    try:
        with override_settings(
            EVENTSTORE_PROJECTORS=[
                f"{__name__}.LedgerProjector",
                f"{__name__}.EventLedgerProjector",
            ]
        ):
            yield
    finally:
        projections._projector_classes.cache_clear()


def _wait_for_horizon(timeout: float = 60.0) -> None:
    """Wait until every stored event is readable: a long transaction anywhere holds it back."""
    deadline = time.monotonic() + timeout
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM eventstore_event "
                "WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
            )
            row = cursor.fetchone()
        if not row or row[0] == 0:
            return
        if time.monotonic() > deadline:
            _progress(f"{row[0]} events still behind the horizon; measuring anyway")
            return
        time.sleep(0.1)


def _catch_up_rate(projector: type[EventLedgerProjector]) -> tuple[int, float]:
    """Run the real catch-up runner over CATCH_UP_BATCHES batches; return (events, seconds)."""
    _wait_for_horizon()
    with _bench_projector():
        # Warm up on a throwaway projector run, then measure from an empty checkpoint.
        projection_catch_up(name=projector.name, batch_size=CATCH_UP_BATCH, max_batches=2)
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {LEDGER_TABLE}")
            cursor.execute(
                "DELETE FROM eventstore_projection_checkpoint WHERE name = %s",
                [projector.name],
            )
        start = time.perf_counter()
        result = projection_catch_up(
            name=projector.name, batch_size=CATCH_UP_BATCH, max_batches=CATCH_UP_BATCHES
        )
        elapsed = time.perf_counter() - start
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {LEDGER_TABLE}")
            row = cursor.fetchone()
        assert row is not None and row[0] == result.events
    _progress(f"catch-up ({projector.name}): {result.events} events in {elapsed:.2f} s")
    return result.events, elapsed


# --- the run ------------------------------------------------------------------------------


def run() -> list[Record]:
    """Run every event store measurement on the bench database; return the records."""
    conninfo = _conninfo()
    pool = AggregatePool("acct-")
    started = time.perf_counter()
    pool.top_up()
    _progress(
        f"seeded {POOL_BATCH:,} aggregates of {STREAM_LENGTH} events "
        f"in {time.perf_counter() - started:.1f} s"
    )
    appends = _append_figures(pool, conninfo)
    _progress("measuring reader lag under 4 writers")
    horizon_ages, position_ages = _reader_lag(pool, conninfo)
    figures, snap_s, snap_tail_s = _load_figures(conninfo)
    caught_up, catch_up_s = _catch_up_rate(LedgerProjector)
    caught_up_each, catch_up_each_s = _catch_up_rate(EventLedgerProjector)

    ours_1 = appends["ours_1"].per_second
    records = [
        throughput_record(
            name="eventstore.append.1_writer",
            value=ours_1,
            unit="ops/s",
            baseline="psycopg INSERT + COMMIT, 1 connection",
            baseline_value=appends["raw_1"].per_second,
            target=0.40,
        ),
        throughput_record(
            name="eventstore.append.4_writers",
            value=appends["ours_4"].per_second,
            unit="ops/s",
            baseline="psycopg INSERT + COMMIT, 4 connections",
            baseline_value=appends["raw_4"].per_second,
            target=0.35,
        ),
        throughput_record(
            name="eventstore.append.4_writers_vs_table_lock",
            value=appends["ours_4"].per_second,
            unit="ops/s",
            baseline="the same with LOCK TABLE per append",
            baseline_value=appends["lock_4"].per_second,
            target=None,
        ),
        latency_record(
            name="eventstore.read_all.lag_p50",
            value=statistics.median(horizon_ages) * 1000,
            unit="ms",
            baseline="position reader (skips late commits), p50",
            baseline_value=statistics.median(position_ages) * 1000,
            target=None,
        ),
        latency_record(
            name="eventstore.read_all.lag_p99",
            value=_percentile(horizon_ages, 0.99) * 1000,
            unit="ms",
            baseline="position reader (skips late commits), p99",
            baseline_value=_percentile(position_ages, 0.99) * 1000,
            target=None,
        ),
    ]
    for length, (ours_s, raw_s) in figures.items():
        records.append(
            latency_record(
                name=f"eventstore.load.{length}_events",
                value=ours_s * 1000,
                unit="ms",
                baseline="psycopg fetchall of the same rows",
                baseline_value=raw_s * 1000,
                target=0.33 if length == 10_000 else None,
            )
        )
    ours_10k, raw_10k = figures[10_000]
    records += [
        throughput_record(
            name="eventstore.load.10000_events.rate",
            value=10_000 / ours_10k,
            unit="ev/s",
            baseline="psycopg fetchall of the same rows",
            baseline_value=10_000 / raw_10k,
            target=None,
        ),
        latency_record(
            name="eventstore.load.10000_events_snapshots",
            value=snap_s * 1000,
            unit="ms",
            baseline="100-event load without snapshots",
            baseline_value=figures[100][0] * 1000,
            target=0.5,
        ),
        latency_record(
            name="eventstore.load.10099_events_snapshots",
            value=snap_tail_s * 1000,
            unit="ms",
            baseline="100-event load without snapshots",
            baseline_value=figures[100][0] * 1000,
            target=None,
        ),
        throughput_record(
            name="eventstore.projection.catch_up",
            value=caught_up / catch_up_s,
            unit="ev/s",
            baseline="1-writer append rate (events/s)",
            baseline_value=ours_1,
            target=5.0,
        ),
        throughput_record(
            name="eventstore.projection.catch_up.per_event",
            value=caught_up_each / catch_up_each_s,
            unit="ev/s",
            baseline="1-writer append rate (events/s)",
            baseline_value=ours_1,
            target=None,
        ),
    ]
    _progress(
        f"python CPU during appends: 1 writer {appends['ours_1'].cpu_share:.0%}, "
        f"4 writers {appends['ours_4'].cpu_share:.0%}, "
        f"raw 4 {appends['raw_4'].cpu_share:.0%} of one core"
    )
    connections.close_all()
    return records
