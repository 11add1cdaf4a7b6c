"""What an order's webhook deliveries carry (wired in ``settings.WEBHOOK_EVENT_TYPES``)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventstore.records import RecordedEvent
from orders.selectors import order_replay
from orders.serializers import order_representation


def order_payload(event: RecordedEvent) -> dict[str, Any]:
    """Return ``{"order": …}``: the order as the API shows it, as of this event."""
    order = order_replay(order_id=UUID(event.stream_id), version=event.version)
    return {"order": order_representation(order, [])}
