"""What a saga's webhook deliveries carry (wired in ``settings.WEBHOOK_EVENT_TYPES``).

Sagas are not event-sourced: the recorder appends one event to the saga's own stream when a
saga stops in COMPENSATION_FAILED (``sagas.recorder``), carrying the saga's summary.
"""

from __future__ import annotations

from typing import Any

from eventstore.records import RecordedEvent

#: The stream the recorder appends saga events to, and the event's stored type.
SAGA_STREAM = "saga"
COMPENSATION_FAILED_EVENT = "SagaCompensationFailed"


def saga_payload(event: RecordedEvent) -> dict[str, Any]:
    """Return ``{"saga": <its summary when the event was recorded>}``."""
    return {"saga": dict(event.data)}
