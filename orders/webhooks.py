"""What an order's webhook deliveries carry (wired in ``settings.WEBHOOK_EVENT_TYPES``)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventstore.records import RecordedEvent
from orders.personal_data import PersonalView, personal_views
from orders.selectors import order_replay
from orders.serializers import order_representation


def order_payload(event: RecordedEvent) -> dict[str, Any]:
    """Return ``{"order": …}``: the order as the API shows it, as of this event.

    Without its contact: a delivery is stored (for its retries and the admin), and personal
    data is stored nowhere in the clear; ``personal_data_erased`` still says whether it was.
    """
    order = order_replay(order_id=UUID(event.stream_id), version=event.version)
    erased = personal_views([order])[str(order.id)].personal_data_erased
    personal = PersonalView(contact=None, personal_data_erased=erased)
    return {"order": order_representation(order, [], personal)}
