"""Build the event store the application writes through, with its inline projections.

Beside the store rather than in it: the projections are configured in settings
(``EVENTSTORE_PROJECTORS``) and ``eventstore.projections`` itself reads through the store.

``EVENTSTORE_BACKEND`` chooses the store: ``"postgres"`` (always, outside tests) or
``"memory"``, one in-memory store per process that tests use to run services without the
event table, the way Django's locmem e-mail backend keeps one outbox per process.
"""

from __future__ import annotations

import functools

from django.conf import settings

from eventstore.memory import InMemoryEventStore
from eventstore.postgres import PostgresEventStore
from eventstore.projections import inline_projectors
from eventstore.store import EventStore

BACKENDS = ("postgres", "memory")


def event_store() -> EventStore:
    """Return the store the application writes through, with inline projections wired in."""
    backend = getattr(settings, "EVENTSTORE_BACKEND", "postgres")
    if backend == "postgres":
        return postgres_event_store()
    if backend == "memory":
        return memory_event_store()
    raise ValueError(f"EVENTSTORE_BACKEND must be one of {', '.join(BACKENDS)}, not {backend!r}")


def postgres_event_store() -> PostgresEventStore:
    """Return the PostgreSQL store with inline projections (what the log readers need)."""
    return PostgresEventStore(inline_projectors=inline_projectors)


@functools.cache
def memory_event_store() -> InMemoryEventStore:
    """Return this process's in-memory store (``memory_event_store.cache_clear()`` empties it)."""
    return InMemoryEventStore(inline_projectors=inline_projectors)
