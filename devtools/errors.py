"""Errors of the development tooling."""


class DevtoolsError(Exception):
    """A step of ``make run`` or ``make test`` failed; the message says which and why."""


class EmbeddedServerError(DevtoolsError):
    """An embedded PostgreSQL or Redis server could not be started or reached."""
