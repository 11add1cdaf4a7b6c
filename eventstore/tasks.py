"""Celery tasks of the event store: projection catch-up, run by beat every few seconds."""

from celery import shared_task

from eventstore.projections import projections_catch_up_all


@shared_task(name="eventstore.catch_up_projections", ignore_result=True)
def catch_up_projections() -> None:
    """Apply new events to every projection (a runner busy elsewhere is skipped)."""
    projections_catch_up_all()
