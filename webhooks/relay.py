"""The outbox relay: a projector over the global event log whose read model is deliveries.

Each catch-up batch's deliveries and the relay's checkpoint commit in one transaction
(``eventstore.projections``), and the log never skips an event that committed late, so
every committed event of a subscribed type gets its deliveries exactly once, and an event
that rolled back gets none. The advisory lock of the catch-up runner lets any number of
workers run the relay: one relays at a time, the others return at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from eventstore.projections import Projector
from eventstore.records import RecordedEvent
from webhooks.catalogue import by_stored_type
from webhooks.delivery import deliveries_queue_new
from webhooks.models import WebhookDelivery, WebhookEndpoint

RELAY_NAME = "webhooks"


def _stored_types() -> frozenset[str]:
    return frozenset(stored for stored, _ in settings.WEBHOOK_EVENT_TYPES.values())


class _StoredTypes:
    # Read from settings when asked, so tests overriding WEBHOOK_EVENT_TYPES are honoured.
    def __get__(self, obj: object, owner: type) -> frozenset[str]:
        return _stored_types()


def subscribers(
    endpoints: Iterable[WebhookEndpoint], event: RecordedEvent, name: str
) -> list[WebhookEndpoint]:
    """Return the endpoints this event is offered to: active, subscribed, active when recorded."""
    return [
        e
        for e in endpoints
        if e.is_active and name in e.event_types and e.active_since <= event.recorded_at
    ]


class WebhookRelay(Projector):
    name: ClassVar[str] = RELAY_NAME
    event_types: ClassVar[frozenset[str]] = _StoredTypes()  # type: ignore[assignment]
    # Deliveries are a log of what was sent to customers, not a view of the log: a replay
    # could only re-offer history (to an endpoint whose deliveries were lost or purged), so
    # ``rebuild_projections`` leaves the relay alone and the catch-up heals a missed event.
    rebuildable: ClassVar[bool] = False

    def handle(self, event: RecordedEvent) -> None:
        self.handle_batch([event])

    def handle_batch(self, events: Sequence[RecordedEvent]) -> None:
        types = by_stored_type()
        endpoints = list(WebhookEndpoint.objects.filter(is_active=True))
        if not endpoints:
            return
        now = timezone.now()
        rows = []
        for event in events:
            kind = types.get(event.event_type)
            if kind is None:
                continue
            targets = subscribers(endpoints, event, kind.name)
            if not targets:
                continue
            body = {
                "id": str(event.event_id),
                "type": kind.name,
                "occurred_at": event.recorded_at.isoformat(),
                "data": kind.build_data(event),
            }
            rows += [
                WebhookDelivery(
                    endpoint=endpoint,
                    event_id=event.event_id,
                    event_type=kind.name,
                    stream_type=event.stream_type,
                    stream_id=event.stream_id,
                    stream_version=event.version,
                    payload=body,
                    created_at=now,
                    retry_window_start=now,
                    next_attempt_at=now,
                )
                for endpoint in targets
            ]
        if not rows:
            return
        # A catch-up that re-reads a batch (after a crash between send and checkpoint, say)
        # meets deliveries already written: they stay as they are.
        WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
        if settings.WEBHOOK_SEND_ON_RELAY:
            # Their sends are queued when this commits, not at the dispatch's next pass; one
            # waiting behind an earlier event of its order is sent when that one is done.
            deliveries_queue_new(
                endpoint_ids=list({row.endpoint_id for row in rows}),
                event_ids=list({row.event_id for row in rows}),
                now=now,
            )
        else:
            transaction.on_commit(_dispatch_after_commit)

    def verify(self) -> Iterable[str]:
        # "Every committed event has its deliveries" is the webhooks' own invariant
        # (webhooks/invariants.py), not a difference from a replay.
        return ()


def _dispatch_after_commit() -> None:
    from webhooks.tasks import dispatch_due

    dispatch_due.delay()
