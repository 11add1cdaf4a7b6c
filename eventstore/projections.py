"""Projections: read models built from the global event log, checkpointed and rebuildable.

Which projector handles which events is written in one place: ``settings.EVENTSTORE_PROJECTORS``
lists the projector classes, and each declares ``event_types``. A projector marked ``inline``
is also updated inside the append's own transaction (a read model that must never lag, such
as the order list the API answers from); the catch-up runner still walks the log for it, so
a rebuild or a missed event heals the same way for every projector. Handlers must therefore be
idempotent: applying an event twice leaves the read model as applying it once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import ClassVar

from django.conf import settings
from django.db import connection, transaction
from django.utils.module_loading import import_string

from eventstore.postgres import PostgresEventStore
from eventstore.records import LOG_START, LogPosition, RecordedEvent
from eventstore.store import InlineProjector

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RebuildCounts:
    """What one batch of a rebuild did to the read model's rows."""

    written: int = 0
    unchanged: int = 0


class Projector:
    """Turn events into read-model rows.

    Subclasses set ``name`` (the checkpoint's key), ``event_types``, and implement ``handle``
    and ``verify`` (compare the read model with a fresh replay of the streams and describe
    every difference). A rebuild runs on a live system, beside the inline projector and the
    catch-up runner, in short transactions: ``rebuild_batch`` brings the rows a batch of the
    log touches in line with their streams, and ``rebuild_gone`` / ``rebuild_remove`` find
    and remove the rows whose stream no longer exists. No rebuild empties the read model.
    """

    name: ClassVar[str] = ""
    event_types: ClassVar[frozenset[str]] = frozenset()
    inline: ClassVar[bool] = False
    #: False for a projector whose rows are a record of what was done, not a view that can be
    #: recomputed (the webhook relay's deliveries): ``rebuild_projections`` leaves it out
    #: and refuses it by name. Its catch-up still heals a missed event.
    rebuildable: ClassVar[bool] = True

    def handle(self, event: RecordedEvent) -> None:
        raise NotImplementedError

    def handle_batch(self, events: Sequence[RecordedEvent]) -> None:
        """Apply a batch read from the log, in log order (catch-up and rebuild call this).

        Handles them one by one. A projector whose rows allow it overrides this to write a
        batch in a few statements: one round trip per event is what bounds a catch-up.
        """
        for event in events:
            self.handle(event)

    def rebuild_batch(self, events: Sequence[RecordedEvent]) -> RebuildCounts:
        """Bring the rows these events touch in line with the log, in the caller's transaction.

        Runs while live writes go on: it must never move a row back to an older state. The
        default applies the batch as catch-up does, which suits handlers that are idempotent
        and heal a damaged row; a projector whose handlers skip what they have already
        applied overrides it to write each touched row from its whole stream.
        """
        self.handle_batch(events)
        return RebuildCounts(written=len(events))

    def rebuild_gone(self, *, batch_size: int) -> Iterator[list[str]]:
        """Yield, in batches, the keys of rows this rebuild did not meet in the log."""
        return iter(())

    def rebuild_remove(self, keys: Sequence[str]) -> int:
        """Remove the rows among ``keys`` whose stream has no events; return how many."""
        return 0

    def verify(self) -> Iterable[str]:
        """Yield one line per difference between the read model and a replay."""
        return ()


@cache
def _projector_classes() -> tuple[type[Projector], ...]:
    classes = tuple(import_string(path) for path in getattr(settings, "EVENTSTORE_PROJECTORS", ()))
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise ValueError(f"projector names must be unique: {names}")
    return classes


def projectors() -> list[Projector]:
    """Return an instance of every configured projector, in settings order."""
    return [cls() for cls in _projector_classes()]


def inline_projectors() -> list[InlineProjector]:
    return [p for p in projectors() if p.inline]


def get_projector(name: str) -> Projector:
    for projector in projectors():
        if projector.name == name:
            return projector
    known = ", ".join(p.name for p in projectors()) or "none"
    raise KeyError(f"no projection named {name!r} (configured: {known})")


@dataclass(frozen=True)
class CatchUpResult:
    name: str
    events: int
    batches: int
    checkpoint: LogPosition
    skipped_busy: bool = False


def _lock_key(name: str) -> int:
    digest = hashlib.blake2b(f"projection:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _try_lock(name: str) -> bool:
    # An advisory lock rather than SELECT … FOR UPDATE on the checkpoint: row locks assign
    # the reader a transaction id, which would hold back the very horizon it reads up to.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_lock_key(name)])
        row = cursor.fetchone()
    return bool(row and row[0])


def _lock(name: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key(name)])


def _read_checkpoint(name: str) -> LogPosition:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT transaction_id, position FROM eventstore_projection_checkpoint WHERE name = %s",
            [name],
        )
        row = cursor.fetchone()
    return LogPosition(int(row[0]), int(row[1])) if row else LOG_START


def _write_checkpoint(name: str, position: LogPosition, processed: int, *, reset: bool) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO eventstore_projection_checkpoint "
            "(name, transaction_id, position, events_processed, updated_at) "
            "VALUES (%s, %s, %s, %s, now()) "
            "ON CONFLICT (name) DO UPDATE SET transaction_id = EXCLUDED.transaction_id, "
            "position = EXCLUDED.position, updated_at = now(), events_processed = "
            + (
                "EXCLUDED.events_processed"
                if reset
                else "eventstore_projection_checkpoint.events_processed + EXCLUDED.events_processed"
            ),
            [name, position.transaction_id, position.position, processed],
        )


def _run_batch(projector: Projector, store: PostgresEventStore, batch_size: int) -> int | None:
    """Process one batch in one transaction; None when another runner holds the projection."""
    with transaction.atomic(durable=True):
        if not _try_lock(projector.name):
            return None
        checkpoint = _read_checkpoint(projector.name)
        batch = store.read_all(
            after=checkpoint, limit=batch_size, event_types=projector.event_types
        )
        if not batch:
            return 0
        projector.handle_batch(batch)
        _write_checkpoint(projector.name, batch[-1].log_position, len(batch), reset=False)
        return len(batch)


def projection_catch_up(
    *, name: str, batch_size: int = 500, max_batches: int | None = None
) -> CatchUpResult:
    """Apply the events after the projection's checkpoint, batch by batch.

    Each batch's read-model writes and its checkpoint commit in one transaction. If another
    runner is busy with the same projection, return at once (it will do the work).
    """
    projector = get_projector(name)
    store = PostgresEventStore()
    total = batches = 0
    while max_batches is None or batches < max_batches:
        processed = _run_batch(projector, store, batch_size)
        if processed is None:
            return CatchUpResult(name, total, batches, _read_checkpoint(name), skipped_busy=True)
        if processed == 0:
            break
        total += processed
        batches += 1
        if processed < batch_size:
            break
    return CatchUpResult(name, total, batches, _read_checkpoint(name))


def projections_catch_up_all(*, batch_size: int = 500) -> list[CatchUpResult]:
    return [projection_catch_up(name=p.name, batch_size=batch_size) for p in projectors()]


class NotRebuildable(ValueError):
    """The projector's rows are not a read model a replay may rewrite."""


@dataclass(frozen=True)
class RebuildResult:
    name: str
    events: int
    checkpoint: LogPosition
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    batches: int = 0


def projection_rebuild(
    *,
    name: str,
    batch_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
    horizon_poll: float = 0.05,
) -> RebuildResult:
    """Replay the whole log into the read model, on a live system, batch by batch.

    Each batch is its own short transaction, so the live writers (the inline projector, the
    catch-up runner) wait at most for one batch's rows, never for the whole rebuild; the
    projector's ``rebuild_batch`` writes a row only when the log is at least as far along as
    the row, so a live write that landed meanwhile is never undone. Then the rows whose
    stream is gone are removed, in batches too, and the checkpoint moves to where the walk
    ended (never back). ``progress(done, total)`` is called after every batch.
    """
    projector = get_projector(name)
    if not projector.rebuildable:
        raise NotRebuildable(f"projection {name!r} is not rebuildable")
    store = PostgresEventStore()
    # Everything committed before the rebuild started is below ``head``: the walk goes on
    # until the log's readers can see that far, so no such event is left out.
    _, head = store.log_horizon()
    total = store.count_after(after=LOG_START, event_types=projector.event_types)
    position = LOG_START
    done = written = unchanged = removed = batches = 0
    if progress:
        progress(0, total)
    while True:
        with transaction.atomic(durable=True):
            # The horizon before the read: an empty read then means nothing below it is left.
            readable, _ = store.log_horizon()
            batch = store.read_all(
                after=position, limit=batch_size, event_types=projector.event_types
            )
            if not batch and readable >= head:
                break
            counts = projector.rebuild_batch(batch) if batch else None
        if counts is None:
            # A transaction older than the rebuild is still open (perhaps in another
            # database: transaction ids are the server's): wait for it to end.
            time.sleep(horizon_poll)
            continue
        written += counts.written
        unchanged += counts.unchanged
        done += len(batch)
        batches += 1
        position = batch[-1].log_position
        if progress:
            progress(done, max(total, done))
    for keys in projector.rebuild_gone(batch_size=batch_size):
        with transaction.atomic(durable=True):
            removed += projector.rebuild_remove(keys)
    with transaction.atomic(durable=True):
        # The advisory lock orders this write after a catch-up batch in flight.
        _lock(name)
        if _read_checkpoint(name) < position:
            _write_checkpoint(name, position, done, reset=True)
        checkpoint = _read_checkpoint(name)
    return RebuildResult(name, done, checkpoint, written, unchanged, removed, batches)


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    checkpoint: LogPosition
    lag: int
    inline: bool


def projection_statuses() -> list[ProjectionStatus]:
    """Return each projection's checkpoint and how many events it has yet to read."""
    store = PostgresEventStore()
    statuses = []
    for projector in projectors():
        checkpoint = _read_checkpoint(projector.name)
        lag = store.count_after(after=checkpoint, event_types=projector.event_types)
        statuses.append(ProjectionStatus(projector.name, checkpoint, lag, projector.inline))
    return statuses
