"""The reservation services on real PostgreSQL: all or nothing, idempotent, stock arithmetic."""

from __future__ import annotations

from uuid import uuid4

import pytest
from django.db import IntegrityError, transaction
from django.db.models import F

from inventory.errors import (
    InvalidReservationLines,
    OutOfStock,
    ReservationNotActive,
    UnknownProduct,
)
from inventory.models import Product, Reservation, ReservationLine, ReservationStatus
from inventory.services import (
    ReleaseOutcome,
    ReservedLine,
    reservation_commit,
    reservation_release,
    reservation_reserve,
    reservation_restock,
)
from tests.factories import make_product

pytestmark = pytest.mark.django_db


def stock(sku: str) -> tuple[int, int]:
    """Return (on hand, reserved) of a product, fresh from the database."""
    return Product.objects.values_list("stock_on_hand", "stock_reserved").get(sku=sku)


def key(step: str = "reserve_inventory", phase: str = "action") -> str:
    return f"{uuid4()}:{step}:{phase}"


@pytest.fixture
def catalogue() -> None:
    make_product("SKU-A", stock=10)
    make_product("SKU-B", stock=5)
    make_product("SKU-C", stock=1)


# --- reserve ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("catalogue")
def test_reserve_holds_every_line_and_raises_reserved() -> None:
    order_id = uuid4()

    result = reservation_reserve(
        order_id=order_id, lines=[("SKU-B", 2), ("SKU-A", 3)], idempotency_key=key()
    )

    assert result.order_id == order_id
    assert result.status == ReservationStatus.RESERVED
    assert result.lines == (ReservedLine("SKU-A", 3), ReservedLine("SKU-B", 2))
    assert stock("SKU-A") == (10, 3)
    assert stock("SKU-B") == (5, 2)
    reservation = Reservation.objects.get(order_id=order_id)
    assert reservation.pk == result.reservation_id
    assert sorted(reservation.lines.values_list("product__sku", "quantity")) == [
        ("SKU-A", 3),
        ("SKU-B", 2),
    ]
    assert Product.objects.get(sku="SKU-A").stock_available == 7


@pytest.mark.usefixtures("catalogue")
def test_reserve_adds_up_lines_naming_the_same_sku() -> None:
    result = reservation_reserve(
        order_id=uuid4(), lines=[("SKU-A", 2), ("SKU-A", 3)], idempotency_key=key()
    )

    assert result.lines == (ReservedLine("SKU-A", 5),)
    assert stock("SKU-A") == (10, 5)


@pytest.mark.usefixtures("catalogue")
def test_reserve_may_take_the_last_unit() -> None:
    reservation_reserve(order_id=uuid4(), lines=[("SKU-C", 1)], idempotency_key=key())

    assert stock("SKU-C") == (1, 1)
    assert Product.objects.get(sku="SKU-C").stock_available == 0


@pytest.mark.usefixtures("catalogue")
def test_out_of_stock_names_the_short_skus_and_changes_nothing() -> None:
    order_id = uuid4()

    with pytest.raises(OutOfStock) as raised:
        reservation_reserve(
            order_id=order_id,
            lines=[("SKU-A", 4), ("SKU-B", 6), ("SKU-C", 2)],
            idempotency_key=key(),
        )

    assert raised.value.skus == ("SKU-B", "SKU-C")
    assert raised.value.shortages == {"SKU-B": (6, 5), "SKU-C": (2, 1)}
    assert "SKU-B" in str(raised.value) and "SKU-C" in str(raised.value)
    # All or nothing: the line that could be met was not reserved either.
    assert stock("SKU-A") == (10, 0)
    assert stock("SKU-B") == (5, 0)
    assert stock("SKU-C") == (1, 0)
    assert not Reservation.objects.filter(order_id=order_id).exists()
    assert not ReservationLine.objects.exists()


@pytest.mark.usefixtures("catalogue")
def test_out_of_stock_counts_units_reserved_by_other_orders() -> None:
    reservation_reserve(order_id=uuid4(), lines=[("SKU-B", 4)], idempotency_key=key())

    with pytest.raises(OutOfStock) as raised:
        reservation_reserve(order_id=uuid4(), lines=[("SKU-B", 2)], idempotency_key=key())

    assert raised.value.shortages == {"SKU-B": (2, 1)}
    assert stock("SKU-B") == (5, 4)


@pytest.mark.usefixtures("catalogue")
def test_unknown_sku_is_refused_and_changes_nothing() -> None:
    order_id = uuid4()

    with pytest.raises(UnknownProduct) as raised:
        reservation_reserve(
            order_id=order_id,
            lines=[("SKU-A", 1), ("NOPE-2", 1), ("NOPE-1", 1)],
            idempotency_key=key(),
        )

    assert raised.value.skus == ("NOPE-1", "NOPE-2")
    assert stock("SKU-A") == (10, 0)
    assert not Reservation.objects.filter(order_id=order_id).exists()


@pytest.mark.usefixtures("catalogue")
@pytest.mark.parametrize("lines", [[], [("SKU-A", 0)], [("SKU-A", -1)], [("SKU-A", True)]])
def test_lines_asking_for_nothing_are_refused(lines: list[tuple[str, int]]) -> None:
    with pytest.raises(InvalidReservationLines):
        reservation_reserve(order_id=uuid4(), lines=lines, idempotency_key=key())

    assert stock("SKU-A") == (10, 0)


@pytest.mark.usefixtures("catalogue")
def test_reserve_repeated_with_its_key_returns_the_first_result_and_reserves_once() -> None:
    order_id, step_key = uuid4(), key()
    first = reservation_reserve(order_id=order_id, lines=[("SKU-A", 3)], idempotency_key=step_key)

    again = reservation_reserve(order_id=order_id, lines=[("SKU-A", 3)], idempotency_key=step_key)

    assert again == first
    assert stock("SKU-A") == (10, 3)
    assert Reservation.objects.filter(order_id=order_id).count() == 1


@pytest.mark.usefixtures("catalogue")
def test_reserve_for_an_order_already_reserved_returns_the_existing_reservation() -> None:
    order_id = uuid4()
    first = reservation_reserve(order_id=order_id, lines=[("SKU-A", 3)], idempotency_key=key())

    again = reservation_reserve(order_id=order_id, lines=[("SKU-B", 1)], idempotency_key=key())

    assert again == first
    assert stock("SKU-A") == (10, 3)
    assert stock("SKU-B") == (5, 0)


@pytest.mark.usefixtures("catalogue")
def test_a_late_reserve_after_release_does_not_reserve_again() -> None:
    order_id, step_key = uuid4(), key()
    reservation_reserve(order_id=order_id, lines=[("SKU-A", 3)], idempotency_key=step_key)
    reservation_release(order_id=order_id, idempotency_key=key(phase="compensation"))

    late = reservation_reserve(order_id=order_id, lines=[("SKU-A", 3)], idempotency_key=step_key)

    assert late.status == ReservationStatus.RELEASED
    assert stock("SKU-A") == (10, 0)


@pytest.mark.usefixtures("catalogue")
def test_reserve_records_its_key() -> None:
    order_id, step_key = uuid4(), key()
    reservation_reserve(order_id=order_id, lines=[("SKU-A", 1)], idempotency_key=step_key)

    reservation = Reservation.objects.get(order_id=order_id)
    assert reservation.reserved_key == step_key
    assert reservation.reserved_at is not None


# --- release ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("catalogue")
def test_release_after_reserve_lowers_reserved() -> None:
    order_id = uuid4()
    reservation_reserve(
        order_id=order_id, lines=[("SKU-A", 3), ("SKU-B", 2)], idempotency_key=key()
    )
    release_key = key(phase="compensation")

    result = reservation_release(order_id=order_id, idempotency_key=release_key)

    assert result.outcome is ReleaseOutcome.RELEASED
    assert result.status == ReservationStatus.RELEASED
    assert result.changed_stock
    assert stock("SKU-A") == (10, 0)
    assert stock("SKU-B") == (5, 0)
    reservation = Reservation.objects.get(order_id=order_id)
    assert reservation.status == ReservationStatus.RELEASED
    assert reservation.released_key == release_key
    assert reservation.released_at is not None


@pytest.mark.usefixtures("catalogue")
def test_release_repeated_with_its_key_reports_the_first_result_and_releases_once() -> None:
    order_id, release_key = uuid4(), key(phase="compensation")
    reservation_reserve(order_id=order_id, lines=[("SKU-A", 3)], idempotency_key=key())
    # Another order's reservation: a second release must not eat into it.
    reservation_reserve(order_id=uuid4(), lines=[("SKU-A", 2)], idempotency_key=key())
    first = reservation_release(order_id=order_id, idempotency_key=release_key)

    again = reservation_release(order_id=order_id, idempotency_key=release_key)

    assert again == first
    assert stock("SKU-A") == (10, 2)


@pytest.mark.usefixtures("catalogue")
def test_release_under_another_key_says_it_was_already_released() -> None:
    order_id = uuid4()
    reservation_reserve(order_id=order_id, lines=[("SKU-A", 3)], idempotency_key=key())
    reservation_release(order_id=order_id, idempotency_key=key(phase="compensation"))

    again = reservation_release(order_id=order_id, idempotency_key=key(phase="compensation"))

    assert again.outcome is ReleaseOutcome.ALREADY_RELEASED
    assert not again.changed_stock
    assert stock("SKU-A") == (10, 0)


@pytest.mark.usefixtures("catalogue")
def test_release_without_a_reservation_is_a_no_op_that_says_so() -> None:
    order_id = uuid4()

    result = reservation_release(order_id=order_id, idempotency_key=key(phase="compensation"))

    assert result.outcome is ReleaseOutcome.NOTHING_RESERVED
    assert result.status is None
    assert not Reservation.objects.exists()
    assert stock("SKU-A") == (10, 0)


@pytest.mark.usefixtures("catalogue")
def test_release_after_commit_puts_the_units_back_on_hand() -> None:
    order_id = uuid4()
    reservation_reserve(
        order_id=order_id, lines=[("SKU-A", 3), ("SKU-B", 5)], idempotency_key=key()
    )
    reservation_commit(order_id=order_id, idempotency_key=key("confirm_order"))
    assert stock("SKU-A") == (7, 0)
    assert stock("SKU-B") == (0, 0)
    release_key = key(phase="compensation")

    result = reservation_release(order_id=order_id, idempotency_key=release_key)
    again = reservation_release(order_id=order_id, idempotency_key=release_key)
    other = reservation_release(order_id=order_id, idempotency_key=key(phase="compensation"))

    assert result.outcome is ReleaseOutcome.RESTOCKED
    assert result.status == ReservationStatus.RESTOCKED
    assert again == result
    assert other.outcome is ReleaseOutcome.ALREADY_RESTOCKED
    assert stock("SKU-A") == (10, 0)
    assert stock("SKU-B") == (5, 0)
    assert Reservation.objects.get(order_id=order_id).restocked_key == release_key


# --- commit ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("catalogue")
def test_commit_moves_the_reserved_units_out_of_stock() -> None:
    order_id, other_order = uuid4(), uuid4()
    reservation_reserve(
        order_id=order_id, lines=[("SKU-A", 3), ("SKU-B", 1)], idempotency_key=key()
    )
    reservation_reserve(order_id=other_order, lines=[("SKU-A", 2)], idempotency_key=key())
    commit_key = key("confirm_order")

    reservation_commit(order_id=order_id, idempotency_key=commit_key)

    assert stock("SKU-A") == (7, 2)
    assert stock("SKU-B") == (4, 0)
    reservation = Reservation.objects.get(order_id=order_id)
    assert reservation.status == ReservationStatus.COMMITTED
    assert reservation.committed_key == commit_key
    assert reservation.committed_at is not None


@pytest.mark.usefixtures("catalogue")
def test_commit_repeated_is_a_no_op() -> None:
    order_id, commit_key = uuid4(), key("confirm_order")
    reservation_reserve(order_id=order_id, lines=[("SKU-A", 3)], idempotency_key=key())
    reservation_commit(order_id=order_id, idempotency_key=commit_key)

    reservation_commit(order_id=order_id, idempotency_key=commit_key)
    reservation_commit(order_id=order_id, idempotency_key=key("confirm_order"))

    assert stock("SKU-A") == (7, 0)
    assert Reservation.objects.get(order_id=order_id).committed_key == commit_key


@pytest.mark.usefixtures("catalogue")
def test_commit_of_a_released_reservation_is_refused() -> None:
    order_id = uuid4()
    reservation_reserve(order_id=order_id, lines=[("SKU-A", 3)], idempotency_key=key())
    reservation_release(order_id=order_id, idempotency_key=key(phase="compensation"))

    with pytest.raises(ReservationNotActive) as raised:
        reservation_commit(order_id=order_id, idempotency_key=key("confirm_order"))

    assert raised.value.status == ReservationStatus.RELEASED
    assert raised.value.order_id == order_id
    assert stock("SKU-A") == (10, 0)


def test_commit_without_a_reservation_is_refused() -> None:
    with pytest.raises(ReservationNotActive) as raised:
        reservation_commit(order_id=uuid4(), idempotency_key=key("confirm_order"))

    assert raised.value.status is None


# --- restock ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("catalogue")
def test_restock_puts_a_committed_orders_units_back_on_hand_once() -> None:
    order_id, restock_key = uuid4(), key("restock_items")
    reservation_reserve(
        order_id=order_id, lines=[("SKU-A", 4), ("SKU-C", 1)], idempotency_key=key()
    )
    reservation_commit(order_id=order_id, idempotency_key=key("confirm_order"))
    assert stock("SKU-A") == (6, 0)
    assert stock("SKU-C") == (0, 0)

    reservation_restock(order_id=order_id, idempotency_key=restock_key)
    reservation_restock(order_id=order_id, idempotency_key=restock_key)
    reservation_restock(order_id=order_id, idempotency_key=key("restock_items"))

    assert stock("SKU-A") == (10, 0)
    assert stock("SKU-C") == (1, 0)
    reservation = Reservation.objects.get(order_id=order_id)
    assert reservation.status == ReservationStatus.RESTOCKED
    assert reservation.restocked_key == restock_key


@pytest.mark.usefixtures("catalogue")
def test_restock_of_a_reservation_never_committed_is_refused() -> None:
    order_id = uuid4()
    reservation_reserve(order_id=order_id, lines=[("SKU-A", 4)], idempotency_key=key())

    with pytest.raises(ReservationNotActive) as raised:
        reservation_restock(order_id=order_id, idempotency_key=key("restock_items"))

    assert raised.value.status == ReservationStatus.RESERVED
    assert stock("SKU-A") == (10, 4)
    with pytest.raises(ReservationNotActive):
        reservation_restock(order_id=uuid4(), idempotency_key=key("restock_items"))


# --- stock never negative -------------------------------------------------------------------


@pytest.mark.usefixtures("catalogue")
def test_stock_never_goes_negative_through_the_services() -> None:
    first, second = uuid4(), uuid4()
    reservation_reserve(order_id=first, lines=[("SKU-B", 5)], idempotency_key=key())
    reservation_commit(order_id=first, idempotency_key=key("confirm_order"))
    assert stock("SKU-B") == (0, 0)

    with pytest.raises(OutOfStock):
        reservation_reserve(order_id=second, lines=[("SKU-B", 1)], idempotency_key=key())
    reservation_commit(order_id=first, idempotency_key=key("confirm_order"))

    assert stock("SKU-B") == (0, 0)


@pytest.mark.usefixtures("catalogue")
@pytest.mark.parametrize(
    ("update", "constraint"),
    [
        ({"stock_on_hand": -1, "stock_reserved": 0}, "inventory_product_on_hand_non_negative"),
        ({"stock_reserved": -1}, "inventory_product_reserved_non_negative"),
        ({"stock_reserved": F("stock_on_hand") + 1}, "inventory_product_reserved_within_on_hand"),
    ],
)
def test_the_database_refuses_impossible_stock(update: dict, constraint: str) -> None:
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        Product.objects.filter(sku="SKU-A").update(**update)

    assert stock("SKU-A") == (10, 0)
