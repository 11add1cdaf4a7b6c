"""Turn events into the JSON the store keeps, and back.

Two steps. An event dataclass becomes JSON-ready data (``encode``: money and ids as
strings, datetimes as ISO text, nested dataclasses as objects) and is built again from it
by its type hints (``builder_for``); ``eventstore.registry`` does this for every event, by
its registered name. That data then travels as the text PostgreSQL keeps as ``jsonb``
(``json_text``, ``json_value``). Plain Python with no Django import: domain code and the
in-memory store use it too.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, get_args, get_origin
from uuid import UUID

Converter = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


# Values stored as they are, by exact type; subclasses (a str enum, say) take the full path.
_AS_IS = frozenset({str, int, float, bool, type(None)})
# The field names of each event or value dataclass met so far.
_DATACLASS_FIELDS: dict[type, tuple[str, ...]] = {}


def _encode_value(value: Any) -> Any:
    # Every event appended passes here, each of its values: the common exact types first,
    # without the isinstance chain and dataclasses.fields(), the bulk of encoding's cost.
    # The result is _encode_any's.
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
        build = builder_for(annotation)
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


def builder_for(cls: type) -> Callable[[Mapping[str, Any]], Any]:
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


# --- JSON text --------------------------------------------------------------------------------


def json_text(value: Any) -> str:
    """Return ``value`` as compact JSON text (what a ``jsonb`` parameter is sent as)."""
    return json.dumps(value, separators=(",", ":"))


def json_value(value: Any) -> Any:
    """Return the Python value of a ``jsonb`` column as a cursor handed it over.

    Django's psycopg backend hands ``jsonb`` over as text so that ``JSONField`` can decode it
    itself; a plain psycopg cursor hands over the decoded value.
    """
    return json.loads(value) if isinstance(value, str | bytes) else value


def json_round_trip(value: Any) -> Any:
    """Return ``value`` as storing it and reading it back would give it (the memory store)."""
    return json.loads(json.dumps(value))
