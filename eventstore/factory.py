"""Build the event store the application writes through: PostgreSQL, with its inline projections.

Beside the store rather than in it: the projections are configured in settings
(``EVENTSTORE_PROJECTORS``) and ``eventstore.projections`` itself reads through the store.
"""

from __future__ import annotations

from eventstore.postgres import PostgresEventStore
from eventstore.projections import inline_projectors


def event_store() -> PostgresEventStore:
    """Return the store the application writes through, with inline projections wired in."""
    return PostgresEventStore(inline_projectors=inline_projectors)
