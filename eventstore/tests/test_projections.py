"""The projection runner, rebuilds, inline projections and the integrity check, on PostgreSQL."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable, Iterator, Sequence
from uuid import uuid4

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from eventstore import projections
from eventstore.factory import postgres_event_store
from eventstore.postgres import PostgresEventStore
from eventstore.projections import (
    Projector,
    projection_catch_up,
    projection_rebuild,
    projection_statuses,
)
from eventstore.records import NewEvent, RecordedEvent
from eventstore.sample import registry as sample_registry
from eventstore.tests.horizon import wait_until_readable
from eventstore.verify import event_store_verify

TABLE = "eventstore_test_seen"


class SeenProjector(Projector):
    """Record every Tick and Tock it is given; blow up on a Boom when told to."""

    name = "seen"
    event_types = frozenset({"Tick", "Tock", "Boom"})
    fail_on_boom = False

    def handle(self, event: RecordedEvent) -> None:
        if event.event_type == "Boom" and SeenProjector.fail_on_boom:
            raise RuntimeError("projector bug")
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {TABLE} (event_id, stream_id, version, event_type) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
                [str(event.event_id), event.stream_id, event.version, event.event_type],
            )

    def reset(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {TABLE}")

    def verify(self) -> Iterable[str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT e.event_id FROM eventstore_event e "
                f"LEFT JOIN {TABLE} s ON s.event_id = e.event_id "
                "WHERE e.event_type = ANY(%s) AND s.event_id IS NULL",
                [list(self.event_types)],
            )
            for (event_id,) in cursor.fetchall():
                yield f"event {event_id} is missing from the read model"


class InlineSeenProjector(SeenProjector):
    name = "seen-inline"
    event_types = frozenset({"Inline"})
    inline = True


@pytest.fixture
def seen(transactional_db: None, settings) -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (event_id uuid PRIMARY KEY, stream_id text, "
            "version int, event_type text)"
        )
        cursor.execute(f"DELETE FROM {TABLE}")
    settings.EVENTSTORE_PROJECTORS = [
        f"{__name__}.SeenProjector",
        f"{__name__}.InlineSeenProjector",
    ]
    projections._projector_classes.cache_clear()
    SeenProjector.fail_on_boom = False
    yield
    projections._projector_classes.cache_clear()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")


def seen_rows() -> list[tuple[str, int, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT stream_id, version, event_type FROM {TABLE} ORDER BY stream_id, version"
        )
        return list(cursor.fetchall())


def append(stream_id: str, *types: str, expected: int = 0, readable: bool = True) -> None:
    """Append events; with ``readable``, wait until the log's readers can see them."""
    PostgresEventStore().append(
        stream_type="t",
        stream_id=stream_id,
        expected_version=expected,
        events=[NewEvent(event_type=t, data={}) for t in types],
    )
    if readable:
        wait_until_readable()


def test_catch_up_applies_its_event_types_once_and_moves_the_checkpoint(seen: None) -> None:
    append("a", "Tick", "Other", "Tock")
    append("b", "Tick")

    first = projection_catch_up(name="seen", batch_size=2)
    again = projection_catch_up(name="seen")

    assert first.events == 3 and first.batches == 2
    assert again.events == 0
    assert seen_rows() == [("a", 1, "Tick"), ("a", 3, "Tock"), ("b", 1, "Tick")]
    status = {s.name: s for s in projection_statuses()}["seen"]
    assert status.lag == 0 and status.checkpoint == first.checkpoint


class BatchSeenProjector(SeenProjector):
    """Note the batches the runner hands over, then write them as the plain projector does."""

    name = "seen-batches"
    batches: list[list[tuple[str, int]]] = []

    def handle_batch(self, events: Sequence[RecordedEvent]) -> None:
        BatchSeenProjector.batches.append([(e.stream_id, e.version) for e in events])
        super().handle_batch(events)


def test_catch_up_and_rebuild_hand_each_batch_over_whole_in_log_order(seen: None, settings) -> None:
    settings.EVENTSTORE_PROJECTORS = [f"{__name__}.BatchSeenProjector"]
    projections._projector_classes.cache_clear()
    BatchSeenProjector.batches = []
    append("a", "Tick", "Other", "Tock")
    append("b", "Tick", "Tock")

    caught_up = projection_catch_up(name="seen-batches", batch_size=3)
    handed_over = list(BatchSeenProjector.batches)
    BatchSeenProjector.batches = []
    projection_rebuild(name="seen-batches", batch_size=10)

    assert caught_up.events == 4
    # Only the projector's event types, in log order, a batch per runner batch.
    assert handed_over == [[("a", 1), ("a", 3), ("b", 1)], [("b", 2)]]
    assert BatchSeenProjector.batches == [[("a", 1), ("a", 3), ("b", 1), ("b", 2)]]
    assert len(seen_rows()) == 4


def test_read_model_writes_and_checkpoint_commit_together(seen: None) -> None:
    append("a", "Tick", "Tock", "Boom")
    SeenProjector.fail_on_boom = True

    with pytest.raises(RuntimeError, match="projector bug"):
        projection_catch_up(name="seen", batch_size=10)

    # The batch failed as a whole: no half-applied rows, checkpoint where it was.
    assert seen_rows() == []
    assert {s.name: s for s in projection_statuses()}["seen"].lag == 3

    SeenProjector.fail_on_boom = False
    assert projection_catch_up(name="seen").events == 3
    assert len(seen_rows()) == 3


def test_projector_sees_an_event_whose_transaction_commits_after_a_later_one(seen: None) -> None:
    written, release = threading.Event(), threading.Event()

    def slow() -> None:
        try:
            with transaction.atomic():
                append("slow", "Tick", readable=False)
                written.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=slow)
    thread.start()
    assert written.wait(timeout=30)
    # Not readable while the slow transaction is open: that is what is tested.
    append("fast", "Tock", readable=False)

    while_open = projection_catch_up(name="seen")
    release.set()
    thread.join(timeout=30)
    wait_until_readable()
    after_commit = projection_catch_up(name="seen")

    assert while_open.events == 0
    assert after_commit.events == 2
    assert seen_rows() == [("fast", 1, "Tock"), ("slow", 1, "Tick")]


def test_inline_projection_is_written_in_the_append_transaction(seen: None) -> None:
    store = postgres_event_store()
    store.append(
        stream_type="t",
        stream_id="i1",
        expected_version=0,
        events=[NewEvent(event_type="Inline", data={})],
    )
    assert seen_rows() == [("i1", 1, "Inline")]

    with pytest.raises(RuntimeError), transaction.atomic():
        store.append(
            stream_type="t",
            stream_id="i2",
            expected_version=0,
            events=[NewEvent(event_type="Inline", data={})],
        )
        raise RuntimeError("the unit of work failed after the append")
    assert seen_rows() == [("i1", 1, "Inline")]


def test_rebuild_replays_everything_with_progress(seen: None) -> None:
    for n in range(5):
        append(f"s{n}", "Tick", "Tock")
    projection_catch_up(name="seen")
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE version = 2")  # the read model got damaged
    calls: list[tuple[int, int]] = []

    result = projection_rebuild(
        name="seen", batch_size=4, progress=lambda d, t: calls.append((d, t))
    )

    assert result.events == 10
    assert len(seen_rows()) == 10
    assert calls[0] == (0, 10) and calls[-1] == (10, 10)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert projection_catch_up(name="seen").events == 0


def test_rebuild_projections_command_reports_progress_and_refuses_unknown_names(seen: None) -> None:
    append("x", "Tick", "Tock", "Tick")
    out = io.StringIO()

    call_command("rebuild_projections", "seen", stdout=out)

    assert "seen: 3/3 events (100.0%" in out.getvalue()
    assert "seen: rebuilt from 3 events" in out.getvalue()
    with pytest.raises(CommandError, match="no projection named 'nope'"):
        call_command("rebuild_projections", "nope")


def test_run_projections_command(seen: None) -> None:
    append("x", "Tick")
    out = io.StringIO()
    call_command("run_projections", stdout=out)
    assert "seen: applied 1 events" in out.getvalue()


def test_verify_passes_on_a_healthy_store(seen: None) -> None:
    account = str(uuid4())
    PostgresEventStore().append(
        stream_type="account",
        stream_id=account,
        expected_version=0,
        events=[NewEvent(event_type="AccountOpened", data={"owner": "ann"})],
    )
    append("y", "Tick", "Tock")
    projection_catch_up(name="seen")

    report = event_store_verify(registry=_registry_with_test_types())

    assert report.ok, report.problems
    assert report.streams == 2 and report.events == 3


def test_verify_reports_gaps_unknown_types_and_projection_drift(seen: None) -> None:
    append("gappy", "Tick", "Tick")
    # Simulate a write that bypassed the store: version 4 with no 3.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO eventstore_event "
            "(event_id, stream_type, stream_id, version, event_type, data) "
            "VALUES (%s, 't', 'gappy', 4, 'Tick', '{}')",
            [str(uuid4())],
        )
    append("odd", "Mystery")

    report = event_store_verify(registry=_registry_with_test_types())

    text = "\n".join(report.problems)
    assert "stream t/gappy: 3 events with versions 1..4" in text
    assert "unknown type 'Mystery'" in text
    assert "projection seen: event" in text and "missing from the read model" in text
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("verify_event_store", stdout=out, stderr=err)
    assert exit_info.value.code == 1
    assert "problem(s) found" in err.getvalue()
    # Progress as it goes, then what was checked and how long it took.
    assert "comparing projection" in out.getvalue()
    assert out.getvalue().splitlines()[-1].startswith("checked ")


def _registry_with_test_types():
    from dataclasses import dataclass

    from eventstore.registry import DomainEvent

    for name in ("Tick", "Tock", "Boom", "Inline", "Other"):
        if not sample_registry.knows(name):
            sample_registry.event(name)(dataclass(frozen=True)(type(name, (DomainEvent,), {})))
    return sample_registry
