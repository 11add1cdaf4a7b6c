"""How event values become JSON-ready data (eventstore.registry.encode), type by type."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from eventstore.serialization import encode


class Colour(enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    LARGE = 3


class Tone(enum.StrEnum):
    WARM = "warm"


class Cents(Decimal):
    """A Decimal subclass: encoded as a Decimal is."""


@dataclass(frozen=True)
class Line:
    sku: str
    price: Decimal


@dataclass(frozen=True)
class Happened:
    value: Any


ID = UUID("12345678-1234-5678-1234-567812345678")
WHEN = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("text", "text"),
        (7, 7),
        (2.5, 2.5),
        (True, True),
        (None, None),
        (Decimal("2.10"), "2.10"),
        (Cents("0.05"), "0.05"),
        (ID, "12345678-1234-5678-1234-567812345678"),
        (WHEN, "2026-11-26T12:00:00+00:00"),
        (WHEN.astimezone(timezone(timedelta(hours=2))), "2026-11-26T14:00:00+02:00"),
        (Colour.RED, "red"),
        (Size.LARGE, Size.LARGE),
        (Tone.WARM, Tone.WARM),
        ([Decimal("1"), "a"], ["1", "a"]),
        ((ID, 1), ["12345678-1234-5678-1234-567812345678", 1]),
        ({"a": Decimal("1.5"), 2: [None]}, {"a": "1.5", "2": [None]}),
        (Line("SKU-1", Decimal("9.99")), {"sku": "SKU-1", "price": "9.99"}),
        (
            [Line("A", Decimal("1")), Line("B", Decimal("2.50"))],
            [{"sku": "A", "price": "1"}, {"sku": "B", "price": "2.50"}],
        ),
    ],
    ids=repr,
)
def test_each_kind_of_value_is_stored_as_json_would_hold_it(value: Any, stored: Any) -> None:
    # Twice: the first meeting of a dataclass type and the later ones take different paths.
    for _ in range(2):
        assert encode(Happened(value)) == {"value": stored}


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        encode(Happened(datetime(2026, 11, 26, 12, 0)))  # noqa: DTZ001


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", object()], ids=repr)
def test_a_value_json_cannot_hold_is_refused(value: Any) -> None:
    with pytest.raises(TypeError, match="cannot store"):
        encode(Happened(value))
