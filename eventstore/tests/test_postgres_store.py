"""The PostgreSQL store: the shared contract, plus what only a database can show.

These tests commit for real (``transactional_db``): concurrency and visibility are the
behaviour under test, and a test wrapped in one big transaction would hide them.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from uuid import uuid4

import pytest
from django.core.management.color import no_style
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from eventstore import postgres
from eventstore.errors import ConcurrencyError, DuplicateEventError
from eventstore.models import StoredEvent
from eventstore.postgres import PostgresEventStore
from eventstore.records import LOG_START, NewEvent, RecordedEvent
from eventstore.tests.contract import EventStoreContract, StoreFollowing, new
from eventstore.tests.horizon import eventually
from infrastructure.db import pipelined_transaction


@pytest.fixture
def pg_store(transactional_db: None) -> PostgresEventStore:
    return PostgresEventStore()


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, pg_store: PostgresEventStore) -> PostgresEventStore:
        return pg_store

    @pytest.fixture
    def store_following(self, transactional_db: None) -> StoreFollowing:
        return lambda projectors: PostgresEventStore(inline_projectors=projectors)


class TestImmutability:
    """Triggers refuse UPDATE, DELETE and TRUNCATE on events, whoever asks."""

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

    def test_truncate_is_refused(self, stored: StoredEvent) -> None:
        # Row-level and DELETE triggers never fire for TRUNCATE: it needs its own. This
        # connection is the test database's superuser, so only the trigger stands in the way.
        for sql in ("TRUNCATE eventstore_event", "TRUNCATE eventstore_event CASCADE"):
            with pytest.raises(DatabaseError, match="events are immutable: TRUNCATE"):
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(sql)
        assert StoredEvent.objects.filter(pk=stored.pk).exists()

    def test_the_test_suites_flush_empties_the_table_and_leaves_the_trigger_on(
        self, stored: StoredEvent
    ) -> None:
        # What TransactionTestCase (pytest-django's transactional_db) runs between tests.
        statements = connection.ops.sql_flush(
            no_style(), connection.introspection.django_table_names(only_existing=True)
        )
        connection.ops.execute_sql_flush(statements)
        assert not StoredEvent.objects.exists()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT tgenabled FROM pg_trigger WHERE tgname = 'eventstore_event_no_truncate'"
            )
            assert cursor.fetchall() == [("O",)]  # enabled again ("O": fires in every session)


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

    seen = eventually(ours, lambda events: len(events) == 2)
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


def test_a_session_may_record_its_appends_at_a_past_time_until_it_says_now(
    pg_store: PostgresEventStore,
) -> None:
    past = timezone.now() - timedelta(hours=20)

    postgres.recorded_as_of(past)
    try:
        then = pg_store.append(
            stream_type="acct", stream_id=str(uuid4()), expected_version=0, events=[new()]
        )
    finally:
        postgres.recorded_now()
    later = pg_store.append(
        stream_type="acct", stream_id=str(uuid4()), expected_version=0, events=[new()]
    )

    assert [e.recorded_at for e in then.events] == [past]
    assert later.events[0].recorded_at > past + timedelta(hours=19)
    assert later.events[0].position > then.events[0].position
    with transaction.atomic(), pytest.raises(RuntimeError, match="outside a transaction"):
        postgres.recorded_as_of(past)


def test_event_ids_are_unique_across_streams(pg_store: PostgresEventStore) -> None:
    event = NewEvent(event_type="Once", data={})
    pg_store.append(stream_type="a", stream_id=str(uuid4()), expected_version=0, events=[event])
    with pytest.raises(DuplicateEventError, match=r"^event ids are already stored in another"):
        pg_store.append(stream_type="a", stream_id=str(uuid4()), expected_version=0, events=[event])
    assert StoredEvent.objects.filter(event_id=event.event_id).count() == 1


def test_a_batch_mixing_stored_and_new_events_says_how_many_of_each(
    pg_store: PostgresEventStore,
) -> None:
    sid = str(uuid4())
    stored = [new(), new()]
    pg_store.append(stream_type="acct", stream_id=sid, expected_version=0, events=stored)

    with pytest.raises(DuplicateEventError) as refused:
        pg_store.append(
            stream_type="acct", stream_id=sid, expected_version=0, events=[*stored, new()]
        )

    assert str(refused.value) == f"batch for acct/{sid} mixes 2 stored events with 1 new ones"


def test_a_batch_stored_in_part_is_a_conflict_naming_the_stream_and_its_versions(
    pg_store: PostgresEventStore,
) -> None:
    sid = str(uuid4())
    stored = new()
    pg_store.append(stream_type="acct", stream_id=sid, expected_version=0, events=[stored])

    # The stored event is skipped, the new one goes in, and the batch is refused whole.
    with pytest.raises(ConcurrencyError) as refused:
        pg_store.append(
            stream_type="acct", stream_id=sid, expected_version=1, events=[stored, new()]
        )

    conflict = refused.value
    assert (conflict.stream_type, conflict.stream_id, conflict.expected, conflict.actual) == (
        "acct",
        sid,
        1,
        1,
    )


def test_an_empty_batch_or_a_negative_version_is_a_caller_mistake(
    pg_store: PostgresEventStore,
) -> None:
    with pytest.raises(ValueError, match=r"^append needs at least one event$"):
        pg_store.append(stream_type="acct", stream_id="s", expected_version=0, events=[])
    with pytest.raises(ValueError, match=r"^expected_version cannot be negative$"):
        pg_store.append(stream_type="acct", stream_id="s", expected_version=-1, events=[new()])


def test_a_failure_in_the_stores_transaction_rolls_back_the_callers_whole_unit_of_work(
    pg_store: PostgresEventStore,
) -> None:
    earlier, sid = str(uuid4()), str(uuid4())
    with transaction.atomic():
        pg_store.append(stream_type="acct", stream_id=earlier, expected_version=0, events=[new()])
        with pytest.raises(RuntimeError), pg_store.transaction():
            pg_store.append(stream_type="acct", stream_id=sid, expected_version=0, events=[new()])
            raise RuntimeError("the unit of work failed")
        # No savepoint: the caller's transaction can only roll back now, earlier write too.
        assert connection.needs_rollback

    assert pg_store.stream_version(stream_type="acct", stream_id=earlier) == 0
    assert pg_store.stream_version(stream_type="acct", stream_id=sid) == 0


def test_payloads_are_read_from_the_start_of_the_stream_by_default(
    pg_store: PostgresEventStore,
) -> None:
    sid = str(uuid4())
    pg_store.append(
        stream_type="acct", stream_id=sid, expected_version=0, events=[new(n=1), new(n=2)]
    )

    payloads = pg_store.read_stream_payloads(stream_type="acct", stream_id=sid)

    assert payloads == [(1, "Happened", 1, {"n": 1}), (2, "Happened", 1, {"n": 2})]


def test_read_streams_yields_each_stream_of_a_type_once_with_all_its_events(
    pg_store: PostgresEventStore,
) -> None:
    # Named in order: the first and the last stream hold one event, as does one in between.
    lengths = {f"s-{name}": length for name, length in zip("abcde", (1, 3, 1, 2, 1), strict=True)}
    for sid, length in lengths.items():
        batch = [new(n=n) for n in range(length)]
        pg_store.append(stream_type="acct", stream_id=sid, expected_version=0, events=batch)
    pg_store.append(stream_type="other", stream_id=str(uuid4()), expected_version=0, events=[new()])

    # Two rows at a time: streams start and end inside a chunk and across chunks.
    read = list(pg_store.read_streams(stream_type="acct", chunk=2))

    assert [sid for sid, _ in read] == sorted(lengths)
    for sid, events in read:
        assert {e.stream_id for e in events} == {sid}
        assert [e.version for e in events] == list(range(1, lengths[sid] + 1))


def test_count_after_counts_the_event_types_asked_for_after_a_position(
    pg_store: PostgresEventStore,
) -> None:
    sid = str(uuid4())
    first = pg_store.append(
        stream_type="acct", stream_id=sid, expected_version=0, events=[new("A"), new("B")]
    )
    pg_store.append(stream_type="acct", stream_id=sid, expected_version=2, events=[new("A")])

    assert pg_store.count_after(after=LOG_START) == 3
    assert pg_store.count_after(after=LOG_START, event_types=["A"]) == 2
    assert pg_store.count_after(after=LOG_START, event_types=["C"]) == 0
    assert pg_store.count_after(after=first.events[0].log_position, event_types=["A"]) == 1


# --- inline projections: in the append's transaction -----------------------------------------


class FailingProjector:
    """Fail every read-model write, as a projector whose row the database refuses."""

    event_types = frozenset({"Happened"})

    def handle(self, event: RecordedEvent) -> None:
        raise DatabaseError("the read model refused the row")


def test_a_failing_inline_projection_leaves_the_events_unstored(transactional_db: None) -> None:
    store = PostgresEventStore(inline_projectors=lambda: [FailingProjector()])
    sid = str(uuid4())

    with pytest.raises(DatabaseError, match="refused"):
        store.append(stream_type="acct", stream_id=sid, expected_version=0, events=[new()])

    assert store.stream_version(stream_type="acct", stream_id=sid) == 0


def test_a_failing_inline_projection_takes_the_callers_whole_unit_of_work_with_it(
    transactional_db: None,
) -> None:
    store = PostgresEventStore(inline_projectors=lambda: [FailingProjector()])
    earlier = str(uuid4())
    with transaction.atomic():
        store.append(
            stream_type="acct", stream_id=earlier, expected_version=0, events=[new("Kept")]
        )
        with pytest.raises(DatabaseError):
            store.append(
                stream_type="acct", stream_id=str(uuid4()), expected_version=0, events=[new()]
            )
        # No savepoint around the append: the caller's transaction can only roll back now.
        assert connection.needs_rollback

    assert store.stream_version(stream_type="acct", stream_id=earlier) == 0


def test_appends_in_a_pipelined_transaction_commit_together_or_not_at_all(
    pg_store: PostgresEventStore,
) -> None:
    kept, dropped = str(uuid4()), str(uuid4())
    with pipelined_transaction():
        pg_store.append(stream_type="acct", stream_id=kept, expected_version=0, events=[new()])
        pg_store.append(stream_type="acct", stream_id=kept, expected_version=1, events=[new()])
    with pytest.raises(ConcurrencyError), pipelined_transaction():
        pg_store.append(stream_type="acct", stream_id=dropped, expected_version=0, events=[new()])
        pg_store.append(stream_type="acct", stream_id=kept, expected_version=0, events=[new()])

    assert pg_store.stream_version(stream_type="acct", stream_id=kept) == 2
    assert pg_store.stream_version(stream_type="acct", stream_id=dropped) == 0


# --- drift: the append's SQL and the event model ----------------------------------------------


def _inserted_columns(sql: str) -> set[str]:
    column_list = sql.split("INSERT INTO")[1].split("(")[1].split(")", maxsplit=1)[0]
    return {c.strip().strip('"') for c in column_list.split(",")}


def test_the_append_writes_every_column_the_database_does_not_fill(transactional_db: None) -> None:
    columns = {f.column for f in StoredEvent._meta.concrete_fields}
    written = _inserted_columns(postgres.append_sql(2))
    assert written | set(postgres.DATABASE_FILLED) == columns
    assert not written & set(postgres.DATABASE_FILLED)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'eventstore_event' "
            "AND (column_default IS NOT NULL OR is_identity = 'YES')"
        )
        defaulted_in_database = {row[0] for row in cursor.fetchall()}
    assert set(postgres.DATABASE_FILLED) <= defaulted_in_database


def test_a_column_the_store_does_not_set_is_written_with_its_model_default(
    pg_store: PostgresEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a column added to the model with a default would be: schema_version, left unset.
    monkeypatch.setattr(
        postgres, "PER_EVENT", tuple(n for n in postgres.PER_EVENT if n != "schema_version")
    )
    monkeypatch.setattr(postgres, "DEFAULTED", ("schema_version",))
    postgres.append_sql.cache_clear()
    sid = str(uuid4())
    try:
        assert "schema_version" in _inserted_columns(postgres.append_sql(1))
        pg_store.append(
            stream_type="acct",
            stream_id=sid,
            expected_version=0,
            events=[NewEvent(event_type="Deposited", data={}, schema_version=7)],
        )
    finally:
        postgres.append_sql.cache_clear()

    assert StoredEvent.objects.get(stream_id=sid).schema_version == 1
