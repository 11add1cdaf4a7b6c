"""The event registry: registering event classes, storing them and reading them back.

Each test defines its event classes in its own body and registers them on a fresh registry,
so registering, and building each field's converter, happen while the test runs (the
registry caches both per class).

No ``from __future__ import annotations`` here: the registry reads the fields' types with
``typing.get_type_hints``, which cannot resolve the names of classes local to a test.
"""

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, NamedTuple
from uuid import UUID

import pytest

from eventstore.errors import UnknownEventType, UpcastError
from eventstore.registry import DomainEvent, EventRegistry

ID = UUID("12345678-1234-5678-1234-567812345678")
OTHER = UUID("87654321-4321-8765-4321-876543218765")
WHEN = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_every_kind_of_field_reads_back_as_it_was_stored() -> None:
    registry = EventRegistry()

    class Colour(Enum):
        RED = "red"

    @dataclass(frozen=True)
    class Line:
        sku: str
        price: Decimal

    @registry.event("EverythingHappened", version=1)
    @dataclass(frozen=True)
    class EverythingHappened(DomainEvent):
        text: str
        count: int
        ratio: float
        flag: bool
        anything: Any
        amount: Decimal
        ident: UUID
        at: datetime
        colour: Colour
        line: Line
        maybe_amount: Decimal | None
        no_amount: Decimal | None
        either: int | str
        lines: tuple[Line, ...]
        pair: tuple[UUID, Decimal]
        amounts: list[Decimal]
        loose: list
        by_sku: dict[str, Decimal]
        ids: Mapping[str, UUID]
        loose_map: dict

    event = EverythingHappened(
        text="t",
        count=3,
        ratio=0.5,
        flag=True,
        anything={"k": [1]},
        amount=Decimal("2.10"),
        ident=ID,
        at=WHEN.astimezone(timezone(timedelta(hours=2))),
        colour=Colour.RED,
        line=Line("A", Decimal("1.50")),
        maybe_amount=Decimal("3"),
        no_amount=None,
        either="x",
        lines=(Line("A", Decimal("1")), Line("B", Decimal("2.50"))),
        pair=(OTHER, Decimal("0.01")),
        amounts=[Decimal("1"), Decimal("2")],
        loose=["1", 2],
        by_sku={"A": Decimal("4")},
        ids={"first": ID},
        loose_map={"a": "1"},
    )

    name, version, data = registry.to_stored(event)
    assert (name, version) == ("EverythingHappened", 1)
    assert data == {
        "text": "t",
        "count": 3,
        "ratio": 0.5,
        "flag": True,
        "anything": {"k": [1]},
        "amount": "2.10",
        "ident": str(ID),
        "at": "2026-11-26T14:00:00+02:00",
        "colour": "red",
        "line": {"sku": "A", "price": "1.50"},
        "maybe_amount": "3",
        "no_amount": None,
        "either": "x",
        "lines": [{"sku": "A", "price": "1"}, {"sku": "B", "price": "2.50"}],
        "pair": [str(OTHER), "0.01"],
        "amounts": ["1", "2"],
        "loose": ["1", 2],
        "by_sku": {"A": "4"},
        "ids": {"first": str(ID)},
        "loose_map": {"a": "1"},
    }

    read = registry.decode(name, version, data)

    assert read == event
    assert isinstance(read, EverythingHappened)
    assert type(read.lines) is tuple and type(read.pair) is tuple
    assert type(read.amounts) is list
    assert read.at.utcoffset() == timedelta(hours=2)


def test_a_registered_event_class_carries_its_name_and_version() -> None:
    registry = EventRegistry()

    @registry.event("Renamed", version=3)
    @dataclass(frozen=True)
    class SomethingHappened(DomainEvent):
        n: int

    assert (SomethingHappened.event_type, SomethingHappened.schema_version) == ("Renamed", 3)
    assert registry.knows("Renamed") and not registry.knows("SomethingHappened")
    assert registry.current_version("Renamed") == 3
    assert registry.to_stored(SomethingHappened(1)) == ("Renamed", 3, {"n": 1})


def test_only_a_dataclass_can_be_an_event() -> None:
    registry = EventRegistry()

    class NotADataclass(DomainEvent):
        pass

    with pytest.raises(TypeError, match=r"^NotADataclass must be a dataclass to be an event$"):
        registry.event("NotADataclass")(NotADataclass)
    assert not registry.knows("NotADataclass")


def test_an_event_name_belongs_to_one_class() -> None:
    registry = EventRegistry()

    @registry.event("Happened")
    @dataclass(frozen=True)
    class First(DomainEvent):
        n: int

    @dataclass(frozen=True)
    class Second(DomainEvent):
        n: int

    with pytest.raises(ValueError, match=r"^event name 'Happened' is already First$"):
        registry.event("Happened")(Second)
    assert registry.decode("Happened", 1, {"n": 1}) == First(1)


def test_a_reloaded_module_registers_its_class_again() -> None:
    registry = EventRegistry()

    def define() -> type[DomainEvent]:
        @registry.event("Happened", version=2)
        @dataclass(frozen=True)
        class Happened(DomainEvent):
            n: int

        return Happened

    define()
    reloaded = define()

    assert registry.decode("Happened", 2, {"n": 1}) == reloaded(n=1)  # type: ignore[call-arg]
    assert registry.to_stored(reloaded(n=2))[0] == "Happened"  # type: ignore[call-arg]


def test_stored_data_keeps_only_the_fields_the_class_takes() -> None:
    registry = EventRegistry()

    @registry.event("Counted")
    @dataclass(frozen=True)
    class Counted(DomainEvent):
        n: int
        at: datetime
        label: str = "none"
        derived: int = dataclasses.field(init=False, default=0)

    # A field dropped from the class, a derived field and a missing defaulted one.
    read = registry.decode(
        "Counted", 1, {"n": 1, "at": WHEN.isoformat(), "gone": "x", "derived": 9}
    )

    assert read == Counted(n=1, at=WHEN)
    assert read.derived == 0  # type: ignore[attr-defined]


def upcasting_registry() -> tuple[EventRegistry, type[DomainEvent]]:
    registry = EventRegistry()

    @registry.event("Deposited", version=3)
    @dataclass(frozen=True)
    class Deposited(DomainEvent):
        amount: Decimal
        currency: str

    @registry.upcaster("Deposited", from_version=1)
    def cents_to_amount(data: dict[str, Any]) -> dict[str, Any]:
        return {"amount": str(Decimal(data.pop("cents")) / 100)}

    @registry.upcaster("Deposited", from_version=2)
    def add_currency(data: dict[str, Any]) -> dict[str, Any]:
        data["currency"] = "EUR"
        return data

    return registry, Deposited


def test_old_data_is_upcast_step_by_step_and_left_as_stored() -> None:
    registry, deposited = upcasting_registry()
    stored = {"cents": "250"}

    assert registry.upcast("Deposited", 1, stored) == {"amount": "2.5", "currency": "EUR"}
    assert registry.decode("Deposited", 2, {"amount": "1"}) == deposited(
        amount=Decimal("1"),  # type: ignore[call-arg]
        currency="EUR",
    )
    assert registry.decode("Deposited", 1, stored) == deposited(
        amount=Decimal("2.5"),  # type: ignore[call-arg]
        currency="EUR",
    )
    assert stored == {"cents": "250"}
    assert registry.upcast("Deposited", 3, {"amount": "1", "currency": "SEK"}) == {
        "amount": "1",
        "currency": "SEK",
    }


def test_data_newer_than_the_code_is_refused() -> None:
    registry, _ = upcasting_registry()
    with pytest.raises(UpcastError) as caught:
        registry.decode("Deposited", 4, {"amount": "1"})
    assert str(caught.value) == (
        "Deposited v4 is newer than this code's v3; deploy the newer code before reading it"
    )


def test_a_missing_upcaster_is_named() -> None:
    registry = EventRegistry()

    @registry.event("Gap", version=3)
    @dataclass(frozen=True)
    class Gap(DomainEvent):
        n: int

    @registry.upcaster("Gap", from_version=1)
    def one_to_two(data: dict[str, Any]) -> dict[str, Any]:
        return data

    with pytest.raises(UpcastError, match=r"^no upcaster for Gap from v2 to v3$"):
        registry.decode("Gap", 1, {"n": 1})


def test_unknown_events_are_refused_by_name() -> None:
    registry = EventRegistry()

    @dataclass(frozen=True)
    class Unregistered(DomainEvent):
        n: int

    with pytest.raises(UnknownEventType, match=r"^no event class is registered as 'Nope'$"):
        registry.decode("Nope", 1, {})
    with pytest.raises(UnknownEventType, match=r"^no event class is registered as 'Nope'$"):
        registry.current_version("Nope")
    with pytest.raises(UnknownEventType, match=r"^Unregistered is not a registered event$"):
        registry.to_stored(Unregistered(1))


def test_registries_are_independent() -> None:
    first, second = EventRegistry(), EventRegistry()

    @first.event("Happened")
    @dataclass(frozen=True)
    class Happened(DomainEvent):
        n: int

    assert not second.knows("Happened")
    with pytest.raises(UnknownEventType):
        second.to_stored(Happened(1))


class Quantity(int):
    """An int subclass that is no enum: stored as the int it is."""


class Sku(str):
    """A str subclass that is no enum: stored as the str it is."""

    __slots__ = ()


class Dimensions(NamedTuple):
    width: Decimal
    height: int


def test_subclasses_of_plain_values_are_stored_as_those_values() -> None:
    registry = EventRegistry()

    @registry.event("Measured")
    @dataclass(frozen=True)
    class Measured(DomainEvent):
        quantity: Quantity
        sku: Sku
        size: Dimensions

    stored = registry.to_stored(Measured(Quantity(3), Sku("A-1"), Dimensions(Decimal("1.5"), 2)))

    assert stored[2] == {"quantity": 3, "sku": "A-1", "size": ["1.5", 2]}


def test_values_json_cannot_hold_are_refused_by_type() -> None:
    registry = EventRegistry()

    @registry.event("Odd")
    @dataclass(frozen=True)
    class Odd(DomainEvent):
        value: Any

    with pytest.raises(TypeError, match=r"^cannot store set in an event$"):
        registry.to_stored(Odd({1}))
    with pytest.raises(ValueError, match=r"^event datetimes must be timezone-aware$"):
        registry.to_stored(Odd(datetime(2026, 11, 26, 12, 0)))  # noqa: DTZ001


def test_a_fixed_size_tuple_of_another_size_is_refused_on_read() -> None:
    registry = EventRegistry()

    @registry.event("Paired")
    @dataclass(frozen=True)
    class Paired(DomainEvent):
        pair: tuple[UUID, Decimal]

    with pytest.raises(ValueError, match="zip"):
        registry.decode("Paired", 1, {"pair": [str(ID), "1", "2"]})
    with pytest.raises(ValueError, match="zip"):
        registry.decode("Paired", 1, {"pair": [str(ID)]})


def test_unparameterised_list_and_dict_fields_read_back_as_stored() -> None:
    registry = EventRegistry()

    @registry.event("Loose")
    @dataclass(frozen=True)
    class Loose(DomainEvent):
        items: typing.List  # noqa: UP006
        table: typing.Dict  # noqa: UP006

    data = {"items": ["1", 2], "table": {"a": ["b"]}}

    assert registry.decode("Loose", 1, data) == Loose(["1", 2], {"a": ["b"]})
