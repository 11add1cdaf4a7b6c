"""An order's body is what OrderSerializer's declared fields make of each of its values.

``order_representation`` reads the order through ``ShownOrder`` and shares the serializer's
fields between uses (``infrastructure.api.serializers``); these tests hold its answer to each
field's own formatting of the value it names, for every kind of value an order can carry.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from django.utils import timezone as django_timezone

from orders.domain import OrderStatus
from orders.models import OrderSummary
from orders.selectors import OrderAsOf
from orders.serializers import OrderSerializer, order_representation, orders_representation


def drf_representation(order: Any, sagas: list[dict[str, Any]]) -> dict[str, Any]:
    """What DRF's own fields make of the order (the formatting the hand-written one replaces)."""
    values = {
        "id": order.id,
        "customer_id": order.customer_id,
        # No key, no erasure on record: nothing personal to show, nothing erased.
        "contact": None,
        "personal_data_erased": False,
        "status": order.status,
        "cancellation_reason": order.cancellation_reason or None,
        "items": order.items,
        "total": order.total,
        "currency": order.currency,
        "version": order.version,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "saga": sagas[0] if sagas else None,
        "sagas": sagas,
    }
    fields = OrderSerializer._declared_fields
    assert set(fields) == set(values), "OrderSerializer's fields changed: update this test"
    return {
        name: None if values[name] is None else field.to_representation(values[name])
        for name, field in fields.items()
    }


def saga(status: str = "RUNNING", saga_type: str = "place_order") -> dict[str, Any]:
    return {"id": uuid4(), "type": saga_type, "status": status}


def line(price: Any, quantity: int = 1, total: Any = None) -> dict[str, Any]:
    return {
        "sku": "SKU-1",
        "name": "Widget «deluxe»",
        "quantity": quantity,
        "unit_price": price,
        "line_total": price if total is None else total,
    }


# An order's personal data is opened from the keyring (privacy): one query per answer.
pytestmark = pytest.mark.django_db

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
WHEN = datetime(2026, 11, 26, 10, 15, 30, 123456, tzinfo=UTC)

ORDERS: dict[str, dict[str, Any]] = {
    "placed": {"items": [line("9.99"), line("10.99", 2, "21.98")], "total": Decimal("31.97")},
    "cancelled": {
        "status": OrderStatus.CANCELLED.value,
        "cancellation_reason": "out_of_stock",
        "version": 3,
    },
    "confirmed": {"status": OrderStatus.CONFIRMED.value, "version": 4},
    "prices as decimals": {"items": [line(Decimal("5"), 3, Decimal("15"))], "total": Decimal("15")},
    "prices to round": {
        "items": [line("0.005"), line("0.015"), line(Decimal("2.675"))],
        "total": Decimal("2.695"),
    },
    "integer and float prices": {"items": [line(7), line(1.1)], "total": 8},
    "largest total": {"total": Decimal("999999999999.99")},
    "whole second": {"created_at": WHEN.replace(microsecond=0)},
    "another offset": {"updated_at": WHEN.astimezone(timezone(timedelta(hours=5, minutes=30)))},
    "zone": {"created_at": WHEN.astimezone(PARIS), "updated_at": WHEN.astimezone(PARIS)},
    "no lines": {"items": []},
}


def order(**changes: Any) -> OrderSummary:
    fields: dict[str, Any] = {
        "id": uuid4(),
        "customer_id": "c-42",
        "status": OrderStatus.PENDING.value,
        "cancellation_reason": "",
        "items": [line("9.99")],
        "total": Decimal("9.99"),
        "currency": "EUR",
        "placed_by": "user:1",
        "version": 1,
        "created_at": WHEN,
        "updated_at": WHEN + timedelta(seconds=2),
    }
    fields.update(changes)
    return OrderSummary(**fields)


@pytest.mark.parametrize("changes", ORDERS.values(), ids=ORDERS.keys())
@pytest.mark.parametrize("sagas", [[], [saga()], [saga("COMPENSATED"), saga("COMPLETED")]])
def test_a_read_model_row_looks_as_drf_would_show_it(
    changes: dict[str, Any], sagas: list[dict[str, Any]]
) -> None:
    row = order(**changes)
    assert order_representation(row, sagas) == drf_representation(row, sagas)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/New_York"])
def test_times_follow_the_current_time_zone_as_drf_does(zone: str) -> None:
    row = order(created_at=WHEN, updated_at=WHEN.astimezone(PARIS))
    with django_timezone.override(zoneinfo.ZoneInfo(zone)):
        shown = order_representation(row, [saga()])
        assert shown == drf_representation(row, [saga_of(shown)])
    if zone == "UTC":
        assert shown["created_at"] == "2026-11-26T10:15:30.123456Z"


def saga_of(shown: dict[str, Any]) -> dict[str, Any]:
    summary = shown["saga"]
    return {"id": UUID(summary["id"]), "type": summary["type"], "status": summary["status"]}


def test_an_order_as_of_a_version_looks_as_drf_would_show_it() -> None:
    as_of = OrderAsOf(
        id=uuid4(),
        customer_id="c-7",
        status=OrderStatus.PENDING.value,
        cancellation_reason="",
        items=[line("12.50", 2, "25.00")],
        total=Decimal("25.00"),
        currency="EUR",
        version=1,
        created_at=WHEN,
        updated_at=WHEN,
    )
    assert order_representation(as_of, []) == drf_representation(as_of, [])


def test_money_is_a_two_decimal_string_and_a_missing_reason_is_null() -> None:
    row = order(**ORDERS["placed"])
    sagas = [saga("COMPENSATED"), saga("COMPLETED")]
    shown = order_representation(row, sagas)
    assert shown["total"] == "31.97"
    assert shown["cancellation_reason"] is None
    assert shown["items"][1] == {
        "sku": "SKU-1",
        "name": "Widget «deluxe»",
        "quantity": 2,
        "unit_price": "10.99",
        "line_total": "21.98",
    }
    assert shown["saga"] == shown["sagas"][0]
    assert [s["status"] for s in shown["sagas"]] == ["COMPENSATED", "COMPLETED"]


def test_a_list_shows_each_order_with_its_own_sagas() -> None:
    first, second = order(), order(customer_id="c-7")
    sagas = [saga()]
    shown = orders_representation([first, second], {str(first.id): sagas})
    assert shown == [order_representation(first, sagas), order_representation(second, [])]
