"""Celery tasks of the webhooks, on their own queue (``WEBHOOK_QUEUE``, routed in settings).

Beat runs the relay and the dispatch of due deliveries every second or so: nothing depends on
a message surviving, a lost one only delays a delivery until the next pass.
"""

from datetime import datetime

from celery import shared_task

from eventstore.projections import projection_catch_up
from webhooks.delivery import deliveries_dispatch_due, deliveries_send, delivery_send
from webhooks.relay import RELAY_NAME


@shared_task(name="webhooks.relay", ignore_result=True)
def relay() -> None:
    """Turn newly committed events into deliveries (a relay busy elsewhere is skipped)."""
    projection_catch_up(name=RELAY_NAME)


@shared_task(name="webhooks.dispatch_due", ignore_result=True)
def dispatch_due() -> None:
    """Queue a send for every delivery due now."""
    deliveries_dispatch_due()


@shared_task(name="webhooks.send_deliveries", ignore_result=True)
def send_deliveries(*, delivery_ids: list[int], queued: str) -> None:
    """Make one attempt at each of these deliveries, held for this task until ``queued``."""
    deliveries_send(delivery_ids=delivery_ids, queued=datetime.fromisoformat(queued))


@shared_task(name="webhooks.send_delivery", ignore_result=True)
def send_delivery(*, delivery_id: int, queued: str | None = None) -> None:
    """Make one attempt at a delivery (a no-op unless it is due and unheld, or held for us).

    ``queued`` is the hold the dispatch put on the delivery (ISO 8601), absent from a
    message queued before holds existed (the dispatch now queues ``send_deliveries``).
    """
    held = datetime.fromisoformat(queued) if queued else None
    delivery_send(delivery_id=delivery_id, queued=held)
