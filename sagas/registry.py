"""Find saga definitions by type and version: ``settings.SAGA_DEFINITIONS`` lists them all.

Each entry is the dotted path of a :class:`~sagas.definitions.SagaDefinition` object. A type
may be listed in several versions at once: new sagas start on the highest, and every saga
finishes under the version it started with (``Saga.definition_version``), so a version stays
listed until no unfinished saga uses it (``sagas.checks`` holds a deploy to that). The list is
read once per process; tests that change it call :func:`reset`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from sagas.definitions import SagaDefinition, Step
from sagas.errors import UnknownDefinitionVersion, UnknownSagaType


@dataclass(frozen=True)
class _Registered:
    by_version: dict[tuple[str, int], SagaDefinition]
    #: The highest version of each type: what new sagas start on.
    current: dict[str, SagaDefinition]
    #: Each (type, step name) of any version: the step of the newest version that has it.
    steps: dict[tuple[str, str], Step]


@cache
def _registered() -> _Registered:
    found: dict[tuple[str, int], SagaDefinition] = {}
    # Redis hands an unacked message to another worker after the visibility timeout: an
    # attempt allowed to run longer than that would run twice at once.
    ceiling = float(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600))
    grace = float(settings.SAGA_HARD_TIME_LIMIT_GRACE_SECONDS)
    for path in settings.SAGA_DEFINITIONS:
        definition = import_string(path)
        if not isinstance(definition, SagaDefinition):
            raise ImproperlyConfigured(f"{path} is not a SagaDefinition")
        key = (definition.name, definition.version)
        if key in found:
            raise ImproperlyConfigured(
                f"two saga definitions are named {definition.name!r} "
                f"in version {definition.version}"
            )
        for step in definition.steps:
            if step.timeout + grace >= ceiling:
                raise ImproperlyConfigured(
                    f"saga {definition.name!r} step {step.name!r}: timeout {step.timeout}s plus "
                    f"{grace}s grace must stay below the broker's visibility timeout {ceiling}s"
                )
        found[key] = definition
    current: dict[str, SagaDefinition] = {}
    for definition in found.values():
        latest = current.get(definition.name)
        if latest is None or definition.version > latest.version:
            current[definition.name] = definition
    for name, seconds in settings.SAGA_DEADLINES.items():
        if name not in current:
            raise ImproperlyConfigured(f"SAGA_DEADLINES names no saga type: {name!r}")
        if not float(seconds) > 0:
            raise ImproperlyConfigured(f"SAGA_DEADLINES[{name!r}] must be positive seconds")
    steps = {
        (definition.name, step.name): step
        for definition in sorted(found.values(), key=lambda d: d.version)
        for step in definition.steps
    }
    return _Registered(by_version=found, current=current, steps=steps)


def get_definition(name: str, version: int | None = None) -> SagaDefinition:
    """Return saga type ``name`` in ``version`` (None: the current one, what new sagas use).

    Raises UnknownSagaType when no version of the type is listed, UnknownDefinitionVersion
    (a subclass) when the type is listed but not in that version.
    """
    registered = _registered()
    if version is None:
        try:
            return registered.current[name]
        except KeyError:
            raise UnknownSagaType(name) from None
    try:
        return registered.by_version[name, version]
    except KeyError:
        if name in registered.current:
            raise UnknownDefinitionVersion(name, version) from None
        raise UnknownSagaType(name) from None


def saga_deadline(definition: SagaDefinition) -> timedelta:
    """Return how long a saga of ``definition`` may take (``settings.SAGA_DEADLINES`` first)."""
    seconds = settings.SAGA_DEADLINES.get(definition.name)
    return definition.deadline if seconds is None else timedelta(seconds=float(seconds))


def definitions() -> tuple[SagaDefinition, ...]:
    """Return every registered definition (each version of each type), in settings' order."""
    return tuple(_registered().by_version.values())


def type_names() -> list[str]:
    """Return the registered saga types' names, sorted."""
    return sorted(_registered().current)


def versions() -> dict[str, list[int]]:
    """Map each registered saga type to its registered versions, ascending."""
    found: dict[str, list[int]] = {}
    for name, version in sorted(_registered().by_version):
        found.setdefault(name, []).append(version)
    return found


def find_step(name: str, step: str) -> Step:
    """Return the step named ``step`` in the newest version of type ``name`` that has one.

    For what names a step without a saga at hand (a fault rule, a message's queue): any
    version's step counts. UnknownSagaType for an unknown type, KeyError for an unknown step.
    """
    registered = _registered()
    if name not in registered.current:
        raise UnknownSagaType(name)
    try:
        return registered.steps[name, step]
    except KeyError:
        raise KeyError(f"no version of saga {name!r} has a step {step!r}") from None


def reset() -> None:
    """Forget the loaded definitions (after a test changes ``SAGA_DEFINITIONS``)."""
    _registered.cache_clear()
