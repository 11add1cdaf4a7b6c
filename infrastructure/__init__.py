"""Infrastructure every app may use: database helpers, the broker publisher, the cache, snapshots.

Nothing here knows a domain app, the event store or the saga engine; ``infrastructure.api`` is
the REST API kit (errors, pagination, parameters, throttling, schema, health).
"""
