"""Register domain event classes by a stable name and schema version, and translate them.

An event class is a frozen dataclass registered under a name that never changes (the class
may be renamed or moved; stored events keep their meaning). When an event's shape changes,
its schema version goes up and an upcaster brings older stored data to the new shape on
read, so stored events are never rewritten.

How an event becomes JSON and back is ``eventstore.serialization``'s. Plain Python: no Django
import, so aggregates and their tests run without a database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from eventstore.errors import UnknownEventType, UpcastError
from eventstore.serialization import builder_for, encode


class DomainEvent:
    """Base of domain events: frozen dataclasses named as past-tense facts.

    ``event_type`` and ``schema_version`` are set by ``EventRegistry.event``.
    """

    event_type: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1


E = TypeVar("E", bound=type[DomainEvent])
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class _Registration:
    cls: type[DomainEvent]
    name: str
    version: int
    build: Callable[[Mapping[str, Any]], Any]


class EventRegistry:
    """Map stable event names to classes, and upcast old schema versions on read."""

    def __init__(self) -> None:
        self._by_name: dict[str, _Registration] = {}
        self._by_class: dict[type, _Registration] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def event(self, name: str, *, version: int = 1) -> Callable[[E], E]:
        """Register a dataclass as the event ``name`` at schema ``version`` (a decorator)."""

        def register(cls: E) -> E:
            if not dataclasses.is_dataclass(cls):
                raise TypeError(f"{cls.__name__} must be a dataclass to be an event")
            existing = self._by_name.get(name)
            # Re-registering the same qualified class happens when a module is reloaded.
            if existing is not None and existing.cls.__qualname__ != cls.__qualname__:
                raise ValueError(f"event name {name!r} is already {existing.cls.__name__}")
            cls.event_type = name
            cls.schema_version = version
            reg = _Registration(cls, name, version, builder_for(cls))
            self._by_name[name] = reg
            self._by_class[cls] = reg
            return cls

        return register

    def upcaster(self, name: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function bringing ``name`` data from ``from_version`` to the next one."""

        def register(fn: Upcaster) -> Upcaster:
            self._upcasters[(name, from_version)] = fn
            return fn

        return register

    def knows(self, name: str) -> bool:
        return name in self._by_name

    def current_version(self, name: str) -> int:
        return self._registration(name).version

    def _registration(self, name: str) -> _Registration:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownEventType(f"no event class is registered as {name!r}") from None

    def upcast(self, name: str, schema_version: int, data: dict[str, Any]) -> dict[str, Any]:
        """Bring stored ``data`` of ``name`` at ``schema_version`` to the current schema."""
        target = self._registration(name).version
        if schema_version > target:
            raise UpcastError(
                f"{name} v{schema_version} is newer than this code's v{target}; "
                "deploy the newer code before reading it"
            )
        version = schema_version
        while version < target:
            step = self._upcasters.get((name, version))
            if step is None:
                raise UpcastError(f"no upcaster for {name} from v{version} to v{version + 1}")
            data = step(dict(data))
            version += 1
        return data

    def decode(self, name: str, schema_version: int, data: dict[str, Any]) -> DomainEvent:
        """Build the event object for stored data, upcasting it first when it is old."""
        reg = self._registration(name)
        if schema_version != reg.version:
            data = self.upcast(name, schema_version, data)
        event = reg.build(data)
        assert isinstance(event, DomainEvent)
        return event

    def to_stored(self, event: DomainEvent) -> tuple[str, int, dict[str, Any]]:
        """Return (name, schema version, data) for a new event."""
        reg = self._by_class.get(type(event))
        if reg is None:
            raise UnknownEventType(f"{type(event).__name__} is not a registered event")
        return reg.name, reg.version, encode(event)


# The registry domain modules register their events with. Tests that need a clean slate
# build their own EventRegistry.
events = EventRegistry()
