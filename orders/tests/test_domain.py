"""The Order aggregate: given events, when a command, then events (or a domain error).

No database: the aggregate is plain Python.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from eventstore.registry import DomainEvent
from orders.domain import (
    MAX_ORDER_TOTAL,
    CancellationReason,
    InvalidOrder,
    Order,
    OrderAlreadyCancelled,
    OrderCancelled,
    OrderConfirmed,
    OrderCreated,
    OrderLine,
    OrderNotCancellable,
    OrderNotPending,
    OrderStatus,
    PricedItem,
    reason_for_failure,
)

OID = "7f1d0c7e-0000-4000-8000-000000000001"
CREATED = OrderCreated(
    order_id=OID,
    customer_id="c-42",
    lines=(OrderLine("SKU-1", "Mug", 2, Decimal("4.50"), Decimal("9.00")),),
    total=Decimal("9.00"),
    currency="EUR",
    placed_by="user:7",
)


def given(*events: DomainEvent) -> Order:
    order = Order(OID)
    for event in events:
        order.replay(event)
    return order


def test_create_prices_lines_and_totals_from_the_catalogue_prices() -> None:
    order = Order.create(
        order_id=OID,
        customer_id="c-42",
        items=[
            PricedItem("SKU-1", "Mug", 2, Decimal("4.5")),
            PricedItem("SKU-2", "Tea", 3, Decimal("1.333")),
        ],
        currency="EUR",
        placed_by="user:7",
    )

    (event,) = order.pending_events
    assert event == OrderCreated(
        order_id=OID,
        customer_id="c-42",
        lines=(
            OrderLine("SKU-1", "Mug", 2, Decimal("4.50"), Decimal("9.00")),
            OrderLine("SKU-2", "Tea", 3, Decimal("1.33"), Decimal("4.00")),
        ),
        total=Decimal("13.00"),
        currency="EUR",
        placed_by="user:7",
    )
    assert (order.status, order.version) == (OrderStatus.PENDING, 1)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "at least one line"),
        ([PricedItem(f"S{i}", "x", 1, Decimal(1)) for i in range(101)], "at most 100 lines"),
        ([PricedItem("S", "x", 1, Decimal(1)), PricedItem("S", "x", 2, Decimal(1))], "repeated: S"),
        ([PricedItem("S", "x", 0, Decimal(1))], "between 1 and 1000"),
        ([PricedItem("S", "x", 1001, Decimal(1))], "between 1 and 1000"),
        ([PricedItem("S", "x", 1, Decimal(0))], "price must be positive"),
        (
            [PricedItem("S", "x", 1, MAX_ORDER_TOTAL), PricedItem("T", "x", 1, Decimal("0.01"))],
            f"The order's total, 10000000000.00, is over the maximum of {MAX_ORDER_TOTAL}",
        ),
    ],
)
def test_create_refuses_orders_that_break_the_rules(items: list[PricedItem], message: str) -> None:
    with pytest.raises(InvalidOrder, match=message) as caught:
        Order.create(order_id=OID, customer_id="c", items=items, currency="EUR", placed_by="u")
    assert "items" in caught.value.errors


def test_create_accepts_an_order_at_every_limit() -> None:
    at_limits = [
        PricedItem("LOW", "x", 1, Decimal("0.01")),
        PricedItem("HIGH", "x", 1000, Decimal("1")),
        *(PricedItem(f"S{i}", "x", 1, Decimal("0.5")) for i in range(98)),
    ]

    order = Order.create(
        order_id=OID, customer_id="c", items=at_limits, currency="EUR", placed_by="u"
    )

    assert len(order.lines) == 100
    assert order.total == Decimal("1049.01")


def test_create_accepts_an_order_of_exactly_the_maximum_total() -> None:
    items = [PricedItem("S", "x", 1, MAX_ORDER_TOTAL - 1), PricedItem("T", "x", 1, Decimal(1))]

    order = Order.create(order_id=OID, customer_id="c", items=items, currency="EUR", placed_by="u")

    assert order.total == MAX_ORDER_TOTAL


@pytest.mark.parametrize(
    ("items", "errors"),
    [
        ([], ["An order needs at least one line."]),
        (
            [PricedItem(sku, "x", 1, Decimal(1)) for sku in ("B", "A", "B", "A", "C")],
            ["Each SKU may appear once; repeated: A, B."],
        ),
        (
            [PricedItem("S", "x", 0, Decimal(0)), PricedItem("T", "x", 1001, Decimal(-1))],
            [
                "S: quantity must be between 1 and 1000.",
                "S: price must be positive.",
                "T: quantity must be between 1 and 1000.",
                "T: price must be positive.",
            ],
        ),
    ],
)
def test_create_names_every_broken_rule(items: list[PricedItem], errors: list[str]) -> None:
    with pytest.raises(InvalidOrder) as caught:
        Order.create(order_id=OID, customer_id="c", items=items, currency="EUR", placed_by="u")
    assert caught.value.errors == {"items": errors}


def test_an_invalid_order_reads_as_each_field_and_its_messages() -> None:
    error = InvalidOrder({"items": ["No lines.", "No SKU."], "currency": ["Unknown."]})
    assert str(error) == "items: No lines. No SKU.; currency: Unknown."


def test_created_order_holds_what_the_event_says() -> None:
    order = given(CREATED)
    assert (
        order.customer_id,
        order.lines,
        order.total,
        order.currency,
        order.placed_by,
        order.status,
        order.cancellation_reason,
    ) == (
        "c-42",
        CREATED.lines,
        Decimal("9.00"),
        "EUR",
        "user:7",
        OrderStatus.PENDING,
        None,
    )


def test_an_order_refuses_an_event_of_another_aggregate() -> None:
    class StockReserved(DomainEvent):
        pass

    order = given(CREATED)
    with pytest.raises(TypeError, match=r"^Order cannot apply StockReserved$"):
        order.replay(StockReserved())


def test_refusals_name_the_order_and_its_status() -> None:
    confirmed = given(CREATED, OrderConfirmed(OID))
    with pytest.raises(OrderNotPending) as not_pending:
        confirmed.confirm()
    assert str(not_pending.value) == f"order {OID} is CONFIRMED, not PENDING"

    cancelled = given(CREATED, OrderCancelled(OID, "step_failed", "PENDING"))
    with pytest.raises(OrderAlreadyCancelled) as twice:
        cancelled.cancel(CancellationReason.CANCELLED_BY_STAFF)
    assert str(twice.value) == f"order {OID} is already cancelled"

    with pytest.raises(OrderNotCancellable) as pending:
        given(CREATED).check_cancellation_request()
    assert str(pending.value) == (
        f"only a CONFIRMED order can be cancelled; order {OID} is PENDING"
    )


def test_confirm_a_pending_order() -> None:
    order = given(CREATED)
    order.confirm()
    assert order.pending_events == (OrderConfirmed(order_id=OID),)
    assert order.status is OrderStatus.CONFIRMED


@pytest.mark.parametrize(
    "history",
    [
        (CREATED, OrderConfirmed(OID)),
        (CREATED, OrderCancelled(OID, "payment_declined", "PENDING")),
    ],
)
def test_confirm_refuses_an_order_that_is_not_pending(history: tuple[DomainEvent, ...]) -> None:
    order = given(*history)
    with pytest.raises(OrderNotPending):
        order.confirm()
    assert order.pending_events == ()


@pytest.mark.parametrize("status_events", [(), (OrderConfirmed(OID),)])
def test_cancel_records_the_reason_and_the_status_it_left(
    status_events: tuple[DomainEvent, ...],
) -> None:
    order = given(CREATED, *status_events)
    before = order.status

    order.cancel(CancellationReason.OUT_OF_STOCK)

    assert order.pending_events == (OrderCancelled(OID, "out_of_stock", before.value),)
    assert order.status is OrderStatus.CANCELLED
    assert order.cancellation_reason is CancellationReason.OUT_OF_STOCK


def test_no_double_cancel() -> None:
    order = given(CREATED, OrderCancelled(OID, "step_failed", "PENDING"))
    with pytest.raises(OrderAlreadyCancelled):
        order.cancel(CancellationReason.CANCELLED_BY_STAFF)


@pytest.mark.parametrize(
    ("history", "allowed"),
    [
        ((CREATED,), False),
        ((CREATED, OrderConfirmed(OID)), True),
        (
            (CREATED, OrderConfirmed(OID), OrderCancelled(OID, "cancelled_by_client", "CONFIRMED")),
            False,
        ),
    ],
)
def test_only_confirmed_orders_take_cancellation_requests(
    history: tuple[DomainEvent, ...], allowed: bool
) -> None:
    order = given(*history)
    if allowed:
        order.check_cancellation_request()
    else:
        with pytest.raises(OrderNotCancellable):
            order.check_cancellation_request()


def test_replay_rebuilds_the_same_state_the_commands_built() -> None:
    order = Order.create(
        order_id=OID,
        customer_id="c-42",
        items=[PricedItem("SKU-1", "Mug", 2, Decimal("4.50"))],
        currency="EUR",
        placed_by="user:7",
    )
    order.confirm()
    order.cancel(CancellationReason.CANCELLED_BY_STAFF)

    replayed = given(*order.pending_events)

    assert vars(replayed) | {"_pending": []} == vars(order) | {"_pending": []}


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("out_of_stock", CancellationReason.OUT_OF_STOCK),
        ("payment_declined", CancellationReason.PAYMENT_DECLINED),
        ("step_failed", CancellationReason.STEP_FAILED),
        ("injected_fault", CancellationReason.STEP_FAILED),
        ("", CancellationReason.STEP_FAILED),
    ],
)
def test_a_failed_placing_saga_names_the_cancellation_reason(
    code: str, reason: CancellationReason
) -> None:
    assert reason_for_failure(code) is reason
