"""The catalogue's services and selectors, and the staff screens for stock."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from inventory.errors import StockBelowReserved, StockChanged, UnknownProduct
from inventory.models import Product, ReservationStatus
from inventory.selectors import (
    ProductInfo,
    product_list,
    products_by_sku,
    reservation_for_order,
)
from inventory.services import (
    NewProduct,
    product_adjust_stock,
    product_create,
    product_create_missing,
    product_update,
    reservation_reserve,
)

pytestmark = pytest.mark.django_db


def reserve(sku: str, quantity: int) -> None:
    reservation_reserve(order_id=uuid4(), lines=[(sku, quantity)], idempotency_key=str(uuid4()))


# --- services --------------------------------------------------------------------------------


def test_product_create_adds_a_product_in_the_configured_currency(settings) -> None:
    settings.BACKOFFICE_CURRENCY = "USD"

    product_id = product_create(sku="SKU-1", name="Mug", price=Decimal("8.00"), stock_on_hand=50)

    product = Product.objects.get(pk=product_id)
    assert (product.sku, product.name, product.price, product.currency) == (
        "SKU-1",
        "Mug",
        Decimal("8.00"),
        "USD",
    )
    assert (product.stock_on_hand, product.stock_reserved) == (50, 0)


def test_product_create_defaults_to_euro() -> None:
    product_id = product_create(sku="SKU-1", name="Mug", price=Decimal("8.00"))

    assert Product.objects.get(pk=product_id).currency == "EUR"


@pytest.mark.parametrize(
    ("fields", "error_field"),
    [
        ({"price": Decimal("0.00")}, "price"),
        ({"price": Decimal("-1.00")}, "price"),
        ({"stock_on_hand": -1}, "stock_on_hand"),
    ],
)
def test_product_create_refuses_impossible_values(fields: dict, error_field: str) -> None:
    arguments = {"sku": "SKU-1", "name": "Mug", "price": Decimal("8.00"), **fields}

    with pytest.raises(ValidationError) as raised:
        product_create(**arguments)

    assert error_field in raised.value.message_dict
    assert not Product.objects.exists()


def test_product_create_refuses_a_taken_sku() -> None:
    product_create(sku="SKU-1", name="Mug", price=Decimal("8.00"))

    with pytest.raises(ValidationError) as raised:
        product_create(sku="SKU-1", name="Other", price=Decimal("9.00"))

    assert "sku" in raised.value.message_dict
    assert Product.objects.get().name == "Mug"


def test_product_create_missing_adds_only_the_missing_and_leaves_the_rest_alone() -> None:
    product_create(sku="SKU-1", name="Mug", price=Decimal("8.00"), stock_on_hand=50)
    reserve("SKU-1", 5)

    added = product_create_missing(
        products=[
            NewProduct(sku="SKU-1", name="Renamed", price=Decimal("1.00"), stock_on_hand=500),
            NewProduct(sku="SKU-2", name="Kettle", price=Decimal("49.00"), stock_on_hand=75),
        ]
    )

    assert added == ("SKU-2",)
    first = Product.objects.get(sku="SKU-1")
    assert (first.name, first.price, first.stock_on_hand, first.stock_reserved) == (
        "Mug",
        Decimal("8.00"),
        50,
        5,
    )
    assert Product.objects.get(sku="SKU-2").stock_on_hand == 75
    assert (
        product_create_missing(
            products=[NewProduct(sku="SKU-2", name="Kettle", price=Decimal("49.00"))]
        )
        == ()
    )


def test_product_adjust_stock_adds_and_removes_units() -> None:
    product_create(sku="SKU-1", name="Mug", price=Decimal("8.00"), stock_on_hand=50)

    assert product_adjust_stock(sku="SKU-1", delta=25) == 75
    assert product_adjust_stock(sku="SKU-1", delta=-70) == 5
    assert Product.objects.get(sku="SKU-1").stock_on_hand == 5


def test_product_adjust_stock_refuses_to_go_below_reserved() -> None:
    product_create(sku="SKU-1", name="Mug", price=Decimal("8.00"), stock_on_hand=50)
    reserve("SKU-1", 20)

    assert product_adjust_stock(sku="SKU-1", delta=-30) == 20
    with pytest.raises(StockBelowReserved) as raised:
        product_adjust_stock(sku="SKU-1", delta=-1)

    assert (raised.value.stock_on_hand, raised.value.stock_reserved) == (19, 20)
    assert Product.objects.get(sku="SKU-1").stock_on_hand == 20
    with pytest.raises(UnknownProduct):
        product_adjust_stock(sku="NOPE", delta=1)


def test_product_update_changes_name_price_and_stock() -> None:
    product_create(sku="SKU-1", name="Mug", price=Decimal("8.00"), stock_on_hand=50)

    product_update(
        sku="SKU-1",
        name="Big mug",
        price=Decimal("9.50"),
        stock_on_hand=60,
        expected_stock_on_hand=50,
    )

    product = Product.objects.get(sku="SKU-1")
    assert (product.name, product.price, product.stock_on_hand) == ("Big mug", Decimal("9.50"), 60)


def test_product_update_refuses_stock_that_moved_since_it_was_read() -> None:
    product_create(sku="SKU-1", name="Mug", price=Decimal("8.00"), stock_on_hand=50)
    product_adjust_stock(sku="SKU-1", delta=-3)

    with pytest.raises(StockChanged) as raised:
        product_update(
            sku="SKU-1",
            name="Mug",
            price=Decimal("8.00"),
            stock_on_hand=60,
            expected_stock_on_hand=50,
        )

    assert (raised.value.expected, raised.value.actual) == (50, 47)
    assert Product.objects.get(sku="SKU-1").stock_on_hand == 47


def test_product_update_refuses_stock_below_reserved() -> None:
    product_create(sku="SKU-1", name="Mug", price=Decimal("8.00"), stock_on_hand=50)
    reserve("SKU-1", 10)

    with pytest.raises(StockBelowReserved):
        product_update(sku="SKU-1", name="Mug", price=Decimal("8.00"), stock_on_hand=9)

    assert Product.objects.get(sku="SKU-1").stock_on_hand == 50


# --- selectors -------------------------------------------------------------------------------


def test_products_by_sku_prices_known_skus_and_leaves_out_unknown_ones() -> None:
    product_create(sku="SKU-1", name="Mug", price=Decimal("8.00"))
    product_create(sku="SKU-2", name="Kettle", price=Decimal("49.00"))

    found = products_by_sku(skus=["SKU-2", "NOPE", "SKU-1", "SKU-2"])

    assert found == {
        "SKU-1": ProductInfo(sku="SKU-1", name="Mug", price=Decimal("8.00"), currency="EUR"),
        "SKU-2": ProductInfo(sku="SKU-2", name="Kettle", price=Decimal("49.00"), currency="EUR"),
    }
    assert products_by_sku(skus=[]) == {}


@pytest.mark.parametrize("count", [1, 2, 5, 64, 100])
def test_products_by_sku_finds_every_sku_of_an_order_of_any_size(count: int) -> None:
    # The lookup's text comes in powers of two, the last sku repeated to fill it.
    Product.objects.bulk_create(
        Product(sku=f"SKU-{n:03d}", name=f"Thing {n}", price=Decimal(n + 1)) for n in range(100)
    )
    wanted = [f"SKU-{n:03d}" for n in range(0, 100, 100 // count)][:count]

    found = products_by_sku(skus=[*wanted, "NOPE"])

    assert sorted(found) == sorted(wanted)
    assert all(found[sku].price == Decimal(int(sku[4:]) + 1) for sku in wanted)


def test_product_list_gives_the_catalogue_in_sku_order_with_availability() -> None:
    product_create(sku="SKU-B", name="Kettle", price=Decimal("49.00"), stock_on_hand=10)
    product_create(sku="SKU-A", name="Mug", price=Decimal("8.00"), stock_on_hand=50)
    reserve("SKU-B", 4)

    rows = [(p.sku, p.stock_on_hand, p.stock_reserved, p.stock_available) for p in product_list()]

    assert rows == [("SKU-A", 50, 0, 50), ("SKU-B", 10, 4, 6)]


def test_reservation_for_order_returns_it_with_its_lines() -> None:
    product_create(sku="SKU-A", name="Mug", price=Decimal("8.00"), stock_on_hand=50)
    order_id = uuid4()
    reservation_reserve(order_id=order_id, lines=[("SKU-A", 2)], idempotency_key="k")

    reservation = reservation_for_order(order_id=order_id)

    assert reservation is not None
    assert reservation.status == ReservationStatus.RESERVED
    assert [(line.product.sku, line.quantity) for line in reservation.lines.all()] == [("SKU-A", 2)]
    assert reservation_for_order(order_id=uuid4()) is None


# --- admin -----------------------------------------------------------------------------------


def test_admin_lists_products_with_on_hand_reserved_and_available(admin_client: Client) -> None:
    product_create(sku="SKU-7", name="Gooseneck kettle", price=Decimal("49.00"), stock_on_hand=75)
    reserve("SKU-7", 5)

    response = admin_client.get("/admin/inventory/product/", {"q": "gooseneck"})

    assert response.status_code == 200
    row = next(r for r in response.context["cl"].result_list if r.sku == "SKU-7")
    assert (row.stock_on_hand, row.stock_reserved, row.stock_available) == (75, 5, 70)
    content = response.content.decode()
    assert "SKU-7" in content and "70" in content


def admin_edit(client: Client, product: Product, **changes: object) -> Any:
    data = {
        "name": product.name,
        "price": str(product.price),
        "stock_on_hand": product.stock_on_hand,
        "expected_stock_on_hand": product.stock_on_hand,
        **changes,
    }
    return client.post(f"/admin/inventory/product/{product.pk}/change/", data)


def test_admin_edits_stock_on_hand_through_the_form(admin_client: Client) -> None:
    product = Product.objects.get(
        pk=product_create(sku="SKU-1", name="Mug", price=Decimal("8.00"), stock_on_hand=50)
    )

    response = admin_edit(admin_client, product, stock_on_hand=80, name="Big mug")

    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.name, product.stock_on_hand) == ("Big mug", 80)


def test_admin_refuses_stock_on_hand_below_reserved(admin_client: Client) -> None:
    product = Product.objects.get(
        pk=product_create(sku="SKU-1", name="Mug", price=Decimal("8.00"), stock_on_hand=50)
    )
    reserve("SKU-1", 10)

    response = admin_edit(admin_client, product, stock_on_hand=9)

    assert response.status_code == 200
    assert "stock_on_hand" in response.context["adminform"].form.errors
    assert Product.objects.get(pk=product.pk).stock_on_hand == 50


def test_admin_refuses_an_edit_made_against_stale_stock(admin_client: Client) -> None:
    product = Product.objects.get(
        pk=product_create(sku="SKU-1", name="Mug", price=Decimal("8.00"), stock_on_hand=50)
    )
    product_adjust_stock(sku="SKU-1", delta=-5)  # an order confirmed while staff edited

    response = admin_edit(admin_client, product, stock_on_hand=60)

    assert response.status_code == 200
    assert "changed from 50 to 45" in str(response.context["adminform"].form.errors)
    assert Product.objects.get(pk=product.pk).stock_on_hand == 45


def test_admin_adds_a_product(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/inventory/product/add/",
        {"sku": "SKU-99", "name": "Tray", "price": "12.00", "stock_on_hand": 40},
    )

    assert response.status_code == 302
    product = Product.objects.get(sku="SKU-99")
    assert (product.name, product.stock_on_hand, product.stock_reserved) == ("Tray", 40, 0)


def test_admin_shows_reservations_read_only_with_their_lines(admin_client: Client) -> None:
    product_create(sku="SKU-1", name="Mug", price=Decimal("8.00"), stock_on_hand=50)
    order_id = uuid4()
    reservation_reserve(order_id=order_id, lines=[("SKU-1", 3)], idempotency_key="k")
    reservation = reservation_for_order(order_id=order_id)
    assert reservation is not None

    listing = admin_client.get("/admin/inventory/reservation/", {"q": str(order_id)})
    detail = admin_client.get(f"/admin/inventory/reservation/{reservation.pk}/change/")
    post = admin_client.post(
        f"/admin/inventory/reservation/{reservation.pk}/change/", {"status": "RELEASED"}
    )

    assert listing.status_code == 200 and str(order_id) in listing.content.decode()
    assert detail.status_code == 200
    assert "SKU-1" in detail.content.decode()
    assert admin_client.get("/admin/inventory/reservation/add/").status_code == 403
    assert post.status_code == 403
    reservation.refresh_from_db()
    assert reservation.status == ReservationStatus.RESERVED


def test_admin_reservation_search_with_text_that_is_not_an_order_id(admin_client: Client) -> None:
    response = admin_client.get("/admin/inventory/reservation/", {"q": "not-a-uuid"})

    assert response.status_code == 200
