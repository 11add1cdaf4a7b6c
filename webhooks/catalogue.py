"""Which stored events are offered as which webhook event types, and what each one carries.

Written in one place, ``settings.WEBHOOK_EVENT_TYPES``: the public type
(``"order.confirmed"``) → the stored event type and the dotted path of a function building
the delivery's ``data`` from the recorded event. The domain apps provide those functions
(``orders.webhooks``, ``sagas.webhooks``) and import nothing of this app; this app imports
none of theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from eventstore.records import RecordedEvent

PayloadBuilder = Callable[[RecordedEvent], dict[str, Any]]


@dataclass(frozen=True)
class WebhookEventType:
    name: str
    stored_type: str
    build_data: PayloadBuilder


@cache
def event_types() -> dict[str, WebhookEventType]:
    """Return the configured webhook event types by public name."""
    return {
        name: WebhookEventType(name, stored, import_string(path))
        for name, (stored, path) in settings.WEBHOOK_EVENT_TYPES.items()
    }


def event_type_names() -> list[str]:
    return list(settings.WEBHOOK_EVENT_TYPES)


def by_stored_type() -> dict[str, WebhookEventType]:
    return {t.stored_type: t for t in event_types().values()}
