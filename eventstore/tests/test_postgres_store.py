"""The PostgreSQL store: the shared contract, plus what only a database can show.

These tests commit for real (``transactional_db``): concurrency and visibility are the
behaviour under test, and a test wrapped in one big transaction would hide them.
"""

from __future__ import annotations

import threading
from uuid import uuid4

import pytest
from django.db import DatabaseError, connection, transaction

from eventstore.errors import ConcurrencyError
from eventstore.models import StoredEvent
from eventstore.postgres import PostgresEventStore
from eventstore.records import LOG_START, NewEvent, Rider
from eventstore.tests.contract import EventStoreContract, new


@pytest.fixture
def pg_store(transactional_db: None) -> PostgresEventStore:
    return PostgresEventStore()


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, pg_store: PostgresEventStore) -> PostgresEventStore:
        return pg_store


class TestImmutability:
    """A trigger refuses UPDATE and DELETE on events, whoever asks."""

    @pytest.fixture
    def stored(self, pg_store: PostgresEventStore) -> StoredEvent:
        sid = str(uuid4())
        pg_store.append(stream_type="acct", stream_id=sid, expected_version=0, events=[new()])
        return StoredEvent.objects.get(stream_id=sid)

    def test_orm_save_is_refused(self, stored: StoredEvent) -> None:
        stored.data = {"n": 2}
        with pytest.raises(DatabaseError, match="events are immutable: UPDATE"):
            stored.save()
        stored.refresh_from_db()
        assert stored.data == {"n": 1}

    def test_orm_delete_is_refused(self, stored: StoredEvent) -> None:
        with pytest.raises(DatabaseError, match="events are immutable: DELETE"):
            StoredEvent.objects.filter(pk=stored.pk).delete()
        assert StoredEvent.objects.filter(pk=stored.pk).exists()

    def test_raw_sql_update_and_delete_are_refused(self, stored: StoredEvent) -> None:
        for sql in (
            "UPDATE eventstore_event SET event_type = 'Forged' WHERE position = %s",
            "DELETE FROM eventstore_event WHERE position = %s",
        ):
            with pytest.raises(DatabaseError, match="events are immutable"), transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(sql, [stored.pk])
        stored.refresh_from_db()
        assert stored.event_type == "Happened"

    def test_an_update_matching_no_row_is_refused_too(self, pg_store: PostgresEventStore) -> None:
        with pytest.raises(DatabaseError, match="immutable"):
            StoredEvent.objects.filter(position=-1).update(event_type="x")


def test_ten_threads_at_one_expected_version_exactly_one_wins(
    pg_store: PostgresEventStore,
) -> None:
    sid = str(uuid4())
    pg_store.append(stream_type="acct", stream_id=sid, expected_version=0, events=[new(), new()])
    barrier = threading.Barrier(10)
    outcomes: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        try:
            barrier.wait()
            pg_store.append(
                stream_type="acct", stream_id=sid, expected_version=2, events=[new(writer=n)]
            )
            result = "won"
        except ConcurrencyError as exc:
            result = f"conflict:{exc.actual}"
        finally:
            connection.close()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert sorted(outcomes) == ["conflict:3"] * 9 + ["won"]
    versions = [e.version for e in pg_store.read_stream(stream_type="acct", stream_id=sid)]
    assert versions == [1, 2, 3]


def test_concurrent_writers_appending_in_turn_keep_versions_contiguous(
    pg_store: PostgresEventStore,
) -> None:
    """Four writers each retry on conflict until 20 events each are in: no gap, no repeat."""
    sid = str(uuid4())

    def writer(n: int) -> None:
        try:
            done = 0
            while done < 20:
                current = pg_store.stream_version(stream_type="acct", stream_id=sid)
                try:
                    pg_store.append(
                        stream_type="acct",
                        stream_id=sid,
                        expected_version=current,
                        events=[new(writer=n, i=done)],
                    )
                    done += 1
                except ConcurrencyError:
                    continue
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    events = pg_store.read_stream(stream_type="acct", stream_id=sid)
    assert [e.version for e in events] == list(range(1, 81))
    assert len({e.event_id for e in events}) == 80


def test_global_log_reader_never_skips_a_transaction_that_commits_late(
    pg_store: PostgresEventStore,
) -> None:
    """T1 appends and stays open; T2 appends later and commits; the reader sees both, in order.

    A reader that walked positions alone would see T2's event (the higher position) first,
    move its checkpoint past T1's position, and never see T1's event once T1 commits.
    """
    first_written = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []
    slow_stream, fast_stream = str(uuid4()), str(uuid4())

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                pg_store.append(
                    stream_type="late",
                    stream_id=slow_stream,
                    expected_version=0,
                    events=[new("Slow")],
                )
                first_written.set()
                assert release.wait(timeout=30)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert first_written.wait(timeout=30)
    pg_store.append(
        stream_type="late", stream_id=fast_stream, expected_version=0, events=[new("Fast")]
    )

    def ours(position=LOG_START):
        return [e for e in pg_store.read_all(after=position) if e.stream_type == "late"]

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT position FROM eventstore_event WHERE stream_type = 'late' ORDER BY position"
        )
        committed_positions = [r[0] for r in cursor.fetchall()]
    # Only the fast event is committed, and it holds the higher position...
    assert len(committed_positions) == 1
    # ...yet the reader does not hand it out while an older transaction is still open.
    assert ours() == []

    release.set()
    thread.join(timeout=30)
    assert not errors

    seen = ours()
    assert [e.event_type for e in seen] == ["Slow", "Fast"]
    assert seen[0].position < seen[1].position
    # And from a checkpoint after the first, the second still comes.
    assert [e.event_type for e in ours(seen[0].log_position)] == ["Fast"]


def test_appends_record_the_writing_transaction_and_time(pg_store: PostgresEventStore) -> None:
    sid = str(uuid4())
    with transaction.atomic():
        result = pg_store.append(
            stream_type="acct", stream_id=sid, expected_version=0, events=[new(), new()]
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_xact_id()::text::bigint")
            xid = cursor.fetchone()[0]
    assert {e.transaction_id for e in result.events} == {xid}


def test_event_ids_are_unique_across_streams(pg_store: PostgresEventStore) -> None:
    event = NewEvent(event_type="Once", data={})
    pg_store.append(stream_type="a", stream_id=str(uuid4()), expected_version=0, events=[event])
    with pytest.raises(Exception, match="another stream"):
        pg_store.append(stream_type="a", stream_id=str(uuid4()), expected_version=0, events=[event])
    assert StoredEvent.objects.filter(event_id=event.event_id).count() == 1


# --- riders: writes in the append's own statement -------------------------------------------


@pytest.fixture
def notes(pg_store: PostgresEventStore):
    """A scratch table for riders to write to, with a column that refuses NULL."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE rider_note (stream_id text NOT NULL, version int NOT NULL, "
            "note text NOT NULL)"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS pg_temp.rider_note")


def note_rider(note: str | None, name: str = "noted", seen: list | None = None) -> Rider:
    def written(events, rows: int) -> None:
        if seen is not None:
            seen.append(([e.version for e in events], rows))

    return Rider(
        sql=(
            f"{name} AS (INSERT INTO pg_temp.rider_note (stream_id, version, note) "
            "SELECT stream_id, version, %(note)s::text FROM appended RETURNING 1)"
        ),
        params={"note": note},
        counted=name,
        written=written,
    )


def stored_notes() -> list[tuple[str, int, str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT stream_id, version, note FROM pg_temp.rider_note ORDER BY note")
        return list(cursor.fetchall())


@pytest.mark.internals
def test_riders_write_in_the_appends_one_statement_outside_any_transaction(
    pg_store: PostgresEventStore, notes: None
) -> None:
    sid = str(uuid4())
    seen: list = []
    statements: list[tuple[str, bool]] = []

    def log(execute, sql, params, many, context):
        statements.append((sql, connection.in_atomic_block))
        return execute(sql, params, many, context)

    # Two riders with the same parameter name: each gets its own value.
    with connection.execute_wrapper(log):
        result = pg_store.append(
            stream_type="acct",
            stream_id=sid,
            expected_version=0,
            events=[new()],
            riders=[note_rider("first", "one", seen), note_rider("second", "two", seen)],
        )

    assert [in_atomic for _, in_atomic in statements] == [False]
    assert stored_notes() == [(sid, 1, "first"), (sid, 1, "second")]
    assert seen == [([1], 1), ([1], 1)]
    assert result.to_version == 1 and not result.duplicate


def test_a_refused_append_runs_no_rider(pg_store: PostgresEventStore, notes: None) -> None:
    sid = str(uuid4())
    pg_store.append(stream_type="acct", stream_id=sid, expected_version=0, events=[new()])
    seen: list = []

    with pytest.raises(ConcurrencyError):
        pg_store.append(
            stream_type="acct",
            stream_id=sid,
            expected_version=0,
            events=[new()],
            riders=[note_rider("late", seen=seen)],
        )

    assert stored_notes() == []
    assert seen == []


def test_a_repeated_append_runs_no_rider(pg_store: PostgresEventStore, notes: None) -> None:
    sid = str(uuid4())
    event = new()
    pg_store.append(stream_type="acct", stream_id=sid, expected_version=0, events=[event])
    seen: list = []

    result = pg_store.append(
        stream_type="acct",
        stream_id=sid,
        expected_version=0,
        events=[event],
        riders=[note_rider("again", seen=seen)],
    )

    assert result.duplicate
    assert stored_notes() == []
    assert seen == []


def test_a_failing_rider_leaves_the_events_unstored(
    pg_store: PostgresEventStore, notes: None
) -> None:
    sid = str(uuid4())

    with pytest.raises(DatabaseError, match="null value"):
        pg_store.append(
            stream_type="acct",
            stream_id=sid,
            expected_version=0,
            events=[new()],
            riders=[note_rider(None)],
        )

    assert pg_store.stream_version(stream_type="acct", stream_id=sid) == 0
    assert stored_notes() == []


def test_a_batch_with_riders_is_all_or_nothing(pg_store: PostgresEventStore, notes: None) -> None:
    sid = str(uuid4())
    seen: list = []

    pg_store.append(
        stream_type="acct",
        stream_id=sid,
        expected_version=0,
        events=[new(), new()],
        riders=[note_rider("both", seen=seen)],
    )

    assert stored_notes() == [(sid, 1, "both"), (sid, 2, "both")]
    assert seen == [([1, 2], 2)]
