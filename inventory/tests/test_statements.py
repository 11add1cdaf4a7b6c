"""The inventory's SQL stays in step with its models (the drift tests of its tables)."""

from __future__ import annotations

import re
from typing import Any
from uuid import uuid4

import pytest
from django.db import models
from django.utils import timezone

from inventory.models import Reservation, ReservationLine
from inventory.statements import (
    _INSERT_RESERVATION_SQL,
    insert_values,
    inserted_fields,
    lock_stock,
    reservation_insert,
)
from tests.factories import make_product


def _columns_of(model: type[models.Model]) -> set[str]:
    return {f.column for f in model._meta.concrete_fields if f is not model._meta.pk}


def _inserted_columns(table: str) -> set[str]:
    match = re.search(rf'INSERT INTO "{table}" \(([^)]*)\)', _INSERT_RESERVATION_SQL)
    assert match, table
    return {column.strip().strip('"') for column in match.group(1).split(",")}


@pytest.mark.parametrize("model", [Reservation, ReservationLine])
def test_the_reservation_insert_writes_every_concrete_field(model: type[models.Model]) -> None:
    assert _inserted_columns(model._meta.db_table) == _columns_of(model)
    assert {f.column for f in inserted_fields(model)} == _columns_of(model)


def test_a_field_not_given_gets_its_default_as_the_orm_would_write_it() -> None:
    note: models.CharField[Any, Any] = models.CharField(max_length=10, default="none")
    note.set_attributes_from_name("note")
    when: models.DateTimeField[Any, Any] = models.DateTimeField(null=True)
    when.set_attributes_from_name("noted_at")

    values = insert_values([*inserted_fields(Reservation), note, when], {"status": "RESERVED"})

    assert (values["note"], values["noted_at"], values["status"]) == ("none", None, "RESERVED")
    assert values["released_key"] == "" and values["released_at"] is None


@pytest.mark.django_db
def test_a_reservation_written_by_its_statement_reads_back_through_the_orm() -> None:
    product = make_product("SKU-1", price="2.00", stock=5)
    at = timezone.now()
    order_id = uuid4()

    reservation_id = reservation_insert(
        order_id=order_id, key="reserve-1", at=at, lines=[(product.pk, 3)]
    )

    row = Reservation.objects.get(pk=reservation_id)
    assert (row.order_id, row.status, row.reserved_key, row.reserved_at) == (
        order_id,
        "RESERVED",
        "reserve-1",
        at,
    )
    assert (row.released_key, row.released_at, row.updated_at) == ("", None, at)
    (line,) = row.lines.all()
    assert (line.product_id, line.quantity) == (product.pk, 3)
    assert lock_stock(["SKU-1"])["SKU-1"].on_hand == 5
