"""Check the event store's integrity: what ``manage.py verify_event_store`` reports."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connection

from eventstore.errors import EventStoreError
from eventstore.projections import projectors
from eventstore.registry import EventRegistry
from eventstore.registry import events as default_registry


@dataclass
class VerificationReport:
    streams: int = 0
    events: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def event_store_verify(
    *,
    registry: EventRegistry = default_registry,
    progress: Callable[[str], None] | None = None,
) -> VerificationReport:
    """Check every stream and every projection, and list each problem found.

    - versions of every stream run 1, 2, … n with no gap or repeat;
    - no event id is stored twice;
    - every stored event's type is known and its data decodes (upcast if old);
    - every projection equals a fresh replay of the streams it is built from.
    """
    report = VerificationReport()
    say = progress or (lambda _msg: None)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(DISTINCT (stream_type, stream_id)) FROM eventstore_event"
        )
        row = cursor.fetchone()
        assert row is not None
        report.events, report.streams = int(row[0]), int(row[1])
        say(f"checking {report.streams} streams, {report.events} events")

        cursor.execute(
            "SELECT stream_type, stream_id, count(*), min(version), max(version), "
            "count(DISTINCT version) FROM eventstore_event GROUP BY stream_type, stream_id "
            "HAVING min(version) <> 1 OR max(version) <> count(*) "
            "OR count(DISTINCT version) <> count(*) ORDER BY stream_type, stream_id"
        )
        for stream_type, stream_id, count, low, high, distinct in cursor.fetchall():
            report.problems.append(
                f"stream {stream_type}/{stream_id}: {count} events with versions {low}..{high} "
                f"({distinct} distinct): versions must run 1..{count} without gaps"
            )

        cursor.execute(
            "SELECT event_id, count(*) FROM eventstore_event GROUP BY event_id HAVING count(*) > 1"
        )
        for event_id, count in cursor.fetchall():
            report.problems.append(f"event id {event_id} is stored {count} times")

        cursor.execute(
            "SELECT event_type, schema_version, count(*), min(position) FROM eventstore_event "
            "GROUP BY event_type, schema_version ORDER BY event_type, schema_version"
        )
        kinds = cursor.fetchall()
    for event_type, schema_version, count, first_position in kinds:
        if not registry.knows(event_type):
            report.problems.append(
                f"{count} events of unknown type {event_type!r} "
                f"(first at position {first_position})"
            )
            continue
        try:
            _decode_all(registry, event_type, schema_version)
        except (EventStoreError, TypeError, ValueError, KeyError) as exc:
            report.problems.append(
                f"events of type {event_type} v{schema_version} do not decode: {exc}"
            )

    for projector in projectors():
        say(f"comparing projection {projector.name} with a replay")
        for problem in projector.verify():
            report.problems.append(f"projection {projector.name}: {problem}")
    return report


def _decode_all(registry: EventRegistry, event_type: str, schema_version: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT data FROM eventstore_event WHERE event_type = %s AND schema_version = %s",
            [event_type, schema_version],
        )
        for (data,) in cursor.fetchall():
            registry.decode(
                event_type, schema_version, json.loads(data) if isinstance(data, str) else data
            )
