"""Register domain event classes by a stable name and schema version, and translate them.

An event class is a frozen dataclass registered under a name that never changes (the class
may be renamed or moved; stored events keep their meaning). When an event's shape changes,
its schema version goes up and an upcaster brings older stored data to the new shape on
read, so stored events are never rewritten.

Plain Python: no Django import, so aggregates and their tests run without a database.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar, TypeVar, get_args, get_origin
from uuid import UUID

from eventstore.errors import UnknownEventType, UpcastError


class DomainEvent:
    """Base of domain events: frozen dataclasses named as past-tense facts.

    ``event_type`` and ``schema_version`` are set by ``EventRegistry.event``.
    """

    event_type: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1


E = TypeVar("E", bound=type[DomainEvent])
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
Converter = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


# Values stored as they are, by exact type; subclasses (a str enum, say) take the full path.
_AS_IS = frozenset({str, int, float, bool, type(None)})
# The field names of each event or value dataclass met so far.
_DATACLASS_FIELDS: dict[type, tuple[str, ...]] = {}


def _encode_value(value: Any) -> Any:
    # Every event appended passes here, each of its values: the common exact types first,
    # without the isinstance chain and dataclasses.fields() that cost a tenth of placing an
    # order. The result is _encode_any's.
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is Decimal or kind is UUID:
        # Money travels as a string: JSON numbers are floats to most readers.
        return str(value)
    names = _DATACLASS_FIELDS.get(kind)
    if names is not None:
        return {name: _encode_value(getattr(value, name)) for name in names}
    if kind is list or kind is tuple:
        return [_encode_value(item) for item in value]
    return _encode_any(value)


def _encode_any(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("event datetimes must be timezone-aware")
        return value.isoformat()
    if isinstance(value, Enum):
        return _encode_value(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = tuple(f.name for f in dataclasses.fields(value))
        _DATACLASS_FIELDS[type(value)] = names
        return {name: _encode_value(getattr(value, name)) for name in names}
    if isinstance(value, list | tuple):
        return [_encode_value(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): _encode_value(v) for k, v in value.items()}
    raise TypeError(f"cannot store {type(value).__name__} in an event")


def encode(event: Any) -> dict[str, Any]:
    """Turn an event dataclass into JSON-ready data."""
    data = _encode_value(event)
    assert isinstance(data, dict)
    return data


def _converter_for(annotation: Any) -> Converter:
    """Build a function that turns JSON data back into ``annotation``'s type."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if annotation in (str, int, float, bool, Any) or annotation is typing.Any:
        return _identity
    if annotation is Decimal:
        return Decimal
    if annotation is UUID:
        return UUID
    if annotation is datetime:
        return datetime.fromisoformat
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return annotation
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        build = _builder_for(annotation)
        return build
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            convert = _converter_for(inner[0])
            return lambda value: None if value is None else convert(value)
        return _identity
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            convert = _converter_for(args[0])
            return lambda value: tuple(convert(item) for item in value)
        converters = [_converter_for(a) for a in args]
        return lambda value: tuple(c(v) for c, v in zip(converters, value, strict=True))
    if origin is list:
        convert = _converter_for(args[0]) if args else _identity
        return lambda value: [convert(item) for item in value]
    if origin in (dict, Mapping):
        convert = _converter_for(args[1]) if len(args) == 2 else _identity
        return lambda value: {k: convert(v) for k, v in value.items()}
    return _identity


_builders: dict[type, Callable[[Mapping[str, Any]], Any]] = {}


def _builder_for(cls: type) -> Callable[[Mapping[str, Any]], Any]:
    """Return (and cache) a function building ``cls`` from its JSON data."""
    if cls in _builders:
        return _builders[cls]
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    # Only fields whose type needs converting get a step; the rest pass straight through.
    plan = [
        (f.name, conv) for f in fields if (conv := _converter_for(hints[f.name])) is not _identity
    ]
    names = {f.name for f in fields}

    def build(data: Mapping[str, Any]) -> Any:
        kwargs = {k: v for k, v in data.items() if k in names}
        for name, conv in plan:
            if name in kwargs:
                kwargs[name] = conv(kwargs[name])
        return cls(**kwargs)

    _builders[cls] = build
    return build


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
            reg = _Registration(cls, name, version, _builder_for(cls))
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
