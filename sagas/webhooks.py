"""What a saga's webhook deliveries carry (wired in ``settings.WEBHOOK_EVENT_TYPES``).

Sagas are not event-sourced: the recorder appends one event to the saga's own stream when a
saga stops in COMPENSATION_FAILED (``sagas.recorder``), carrying the saga's summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventstore.records import RecordedEvent
from eventstore.registry import DomainEvent
from eventstore.registry import events as registry

#: The stream the recorder appends saga events to, and the event's stored type.
SAGA_STREAM = "saga"
COMPENSATION_FAILED_EVENT = "SagaCompensationFailed"


@registry.event(COMPENSATION_FAILED_EVENT)
@dataclass(frozen=True)
class SagaCompensationFailed(DomainEvent):
    """A saga stopped in COMPENSATION_FAILED: an operator must step in."""

    id: str
    saga_type: str
    subject: str
    status: str
    step: str
    error: str
    failure: dict[str, str] | None
    at: str


def saga_payload(event: RecordedEvent) -> dict[str, Any]:
    """Return ``{"saga": <its summary when the event was recorded>}``."""
    return {"saga": dict(event.data)}
