"""The webhooks' invariant: every committed event has its deliveries.

For each active endpoint, every event of a type it subscribes to, recorded since the
endpoint's ``active_since``, has a delivery to it. Events the relay has not read yet are
in flight (allowed with ``allow_in_flight``); without it, they count as missing too.
"""

from __future__ import annotations

from uuid import UUID

from django.db.models import Q

from backoffice.invariants import InvariantOptions, InvariantReport, invariant
from eventstore.models import ProjectionCheckpoint, StoredEvent
from webhooks.catalogue import event_types
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.relay import RELAY_NAME


def missing_deliveries(*, relayed_only: bool = True) -> list[tuple[UUID, int]]:
    """Return (event id, endpoint id) for each delivery the relay should have written."""
    kinds = event_types()
    checkpoint = ProjectionCheckpoint.objects.filter(name=RELAY_NAME).first()
    missing: list[tuple[UUID, int]] = []
    for endpoint in WebhookEndpoint.objects.filter(is_active=True):
        stored = [kinds[name].stored_type for name in endpoint.event_types if name in kinds]
        events = StoredEvent.objects.filter(
            event_type__in=stored, recorded_at__gte=endpoint.active_since
        )
        if relayed_only:
            if checkpoint is None:
                continue
            events = events.filter(
                Q(transaction_id__lt=checkpoint.transaction_id)
                | Q(
                    transaction_id=checkpoint.transaction_id,
                    position__lte=checkpoint.position,
                )
            )
        delivered = set(
            WebhookDelivery.objects.filter(endpoint=endpoint).values_list("event_id", flat=True)
        )
        missing += [
            (event_id, endpoint.id)
            for event_id in events.values_list("event_id", flat=True)
            if event_id not in delivered
        ]
    return missing


@invariant("webhooks")
def check_webhooks(report: InvariantReport, options: InvariantOptions) -> None:
    """Check that every committed event reached the outbox of each endpoint subscribed to it."""
    report.count(
        "webhook deliveries",
        WebhookDelivery.objects.values_list("status", flat=True).iterator(),
    )
    for event_id, endpoint_id in missing_deliveries(relayed_only=options.allow_in_flight):
        report.violation(
            "webhooks",
            f"event:{event_id}",
            f"committed event has no delivery to webhook endpoint {endpoint_id}",
        )
