"""Find saga definitions by name: ``settings.SAGA_DEFINITIONS`` is the one place they are listed.

Each entry is the dotted path of a :class:`~sagas.definitions.SagaDefinition` object. The
list is read once per process; tests that change it call :func:`reset`.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from sagas.definitions import SagaDefinition
from sagas.errors import UnknownSagaType


@cache
def _definitions() -> dict[str, SagaDefinition]:
    found: dict[str, SagaDefinition] = {}
    # Redis hands an unacked message to another worker after the visibility timeout: an
    # attempt allowed to run longer than that would run twice at once.
    ceiling = float(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600))
    grace = float(settings.SAGA_HARD_TIME_LIMIT_GRACE_SECONDS)
    for path in settings.SAGA_DEFINITIONS:
        definition = import_string(path)
        if not isinstance(definition, SagaDefinition):
            raise ImproperlyConfigured(f"{path} is not a SagaDefinition")
        if definition.name in found:
            raise ImproperlyConfigured(f"two saga definitions are named {definition.name!r}")
        for step in definition.steps:
            if step.timeout + grace >= ceiling:
                raise ImproperlyConfigured(
                    f"saga {definition.name!r} step {step.name!r}: timeout {step.timeout}s plus "
                    f"{grace}s grace must stay below the broker's visibility timeout {ceiling}s"
                )
        found[definition.name] = definition
    for name, seconds in settings.SAGA_DEADLINES.items():
        if name not in found:
            raise ImproperlyConfigured(f"SAGA_DEADLINES names no saga type: {name!r}")
        if not float(seconds) > 0:
            raise ImproperlyConfigured(f"SAGA_DEADLINES[{name!r}] must be positive seconds")
    return found


def get_definition(name: str) -> SagaDefinition:
    """Return the definition of saga type ``name`` (UnknownSagaType when none is listed)."""
    try:
        return _definitions()[name]
    except KeyError:
        raise UnknownSagaType(name) from None


def saga_deadline(definition: SagaDefinition) -> timedelta:
    """Return how long a saga of ``definition`` may take (``settings.SAGA_DEADLINES`` first)."""
    seconds = settings.SAGA_DEADLINES.get(definition.name)
    return definition.deadline if seconds is None else timedelta(seconds=float(seconds))


def definitions() -> tuple[SagaDefinition, ...]:
    """Return every registered definition, in the order settings list them."""
    return tuple(_definitions().values())


def reset() -> None:
    """Forget the loaded definitions (after a test changes ``SAGA_DEFINITIONS``)."""
    _definitions.cache_clear()
