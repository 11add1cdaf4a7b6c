"""Input and output serializers of the orders API.

Input serializers only parse and check shapes; the order's rules (lines, quantities, SKUs,
prices) are the domain's and the catalogue's, and their errors come back as field errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Context, Decimal
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from orders.domain import MAX_LINES, MAX_QUANTITY, OrderStatus

# Fields a client might send hoping to set what only the catalogue or the saga decides.
SERVER_OWNED_FIELDS = {
    "id",
    "status",
    "total",
    "currency",
    "cancellation_reason",
    "version",
    "created_at",
    "updated_at",
    "saga",
    "sagas",
    "unit_price",
    "line_total",
    "price",
    "name",
}


class StrictIntegerField(serializers.IntegerField):
    """Accept JSON integers only: not "2", not 2.0, not true."""

    default_error_messages = {"strict": "Must be a whole number (a JSON integer, not a string)."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("strict")
        return super().to_internal_value(data)


class RefuseUnknownFieldsMixin:
    """Refuse fields the serializer does not declare, naming them."""

    # infrastructure.api.schema writes `additionalProperties: false` for serializers saying this.
    refuses_unknown_fields = True

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            declared = set(self.fields)  # type: ignore[attr-defined]
            unknown = sorted(set(data) - declared)
            if unknown:
                owned = [f for f in unknown if f in SERVER_OWNED_FIELDS]
                message = f"Unknown field(s): {', '.join(unknown)}."
                if owned:
                    message += (
                        " Prices, totals and statuses come from the catalogue and the order's"
                        " saga, never from the request."
                    )
                raise serializers.ValidationError({"non_field_errors": [message]})
        return super().to_internal_value(data)  # type: ignore[misc]


class PrintableCharField(serializers.CharField):
    """Accept a string of printable characters only (Python's ``str.isprintable``)."""

    default_error_messages = {"printable": "Must contain printable characters only."}
    # For the schema: no control characters. The check itself is stricter (it also refuses
    # format, separator and unassigned code points), which a JSON Schema pattern cannot say.
    schema_pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if not value.isprintable():
            self.fail("printable")
        return value


# The longest customer id, SKU and payment token a new order may carry (the serializers
# below and plainly_valid_order share them).
CUSTOMER_ID_MAX = 64
SKU_MAX = 64
PAYMENT_TOKEN_MAX = 100


class OrderLineInputSerializer(RefuseUnknownFieldsMixin, serializers.Serializer):
    """A line of a new order: a catalogue SKU and a whole quantity from 1 to 1000."""

    sku = PrintableCharField(max_length=SKU_MAX, trim_whitespace=False)
    quantity = StrictIntegerField(min_value=1, max_value=MAX_QUANTITY)


class OrderCreateInputSerializer(RefuseUnknownFieldsMixin, serializers.Serializer):
    """A new order: 1 to 100 lines of distinct catalogue SKUs, priced by the catalogue."""

    customer_id = PrintableCharField(
        min_length=1, max_length=CUSTOMER_ID_MAX, trim_whitespace=False
    )
    items = OrderLineInputSerializer(many=True, allow_empty=False, max_length=MAX_LINES)  # type: ignore[call-arg]
    payment_token = PrintableCharField(
        min_length=1, max_length=PAYMENT_TOKEN_MAX, trim_whitespace=False
    )

    def validate_items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        skus = [item["sku"] for item in items]
        repeated = sorted({s for s in skus if skus.count(s) > 1})
        if repeated:
            raise serializers.ValidationError(
                f"Each SKU may appear once per order; repeated: {', '.join(repeated)}."
            )
        return items


_ORDER_KEYS = frozenset(("customer_id", "items", "payment_token"))
_LINE_KEYS = frozenset(("sku", "quantity"))


def _printable(value: object, longest: int) -> bool:
    return type(value) is str and 0 < len(value) <= longest and value.isprintable()


def plainly_valid_order(data: object) -> dict[str, Any] | None:
    """Return a new order's fields when the body is plainly valid, else None.

    The same rules as :class:`OrderCreateInputSerializer`, checked directly: DRF deep-copies
    the serializer's fields, the nested line serializer's included, for every request, which
    cost a twentieth of an order's CPU. Only the answer "valid" is given here; on None the
    caller runs the serializer, which words the errors. ``orders/tests/test_input.py``
    checks that the two agree.
    """
    if type(data) is not dict or data.keys() != _ORDER_KEYS:
        return None
    customer_id, items, token = data["customer_id"], data["items"], data["payment_token"]
    if not (_printable(customer_id, CUSTOMER_ID_MAX) and _printable(token, PAYMENT_TOKEN_MAX)):
        return None
    if type(items) is not list or not 0 < len(items) <= MAX_LINES:
        return None
    lines = []
    for item in items:
        if type(item) is not dict or item.keys() != _LINE_KEYS:
            return None
        sku, quantity = item["sku"], item["quantity"]
        if not _printable(sku, SKU_MAX) or type(quantity) is not int:
            return None
        if not 1 <= quantity <= MAX_QUANTITY:
            return None
        lines.append({"sku": sku, "quantity": quantity})
    if len({line["sku"] for line in lines}) != len(lines):
        return None
    return {"customer_id": customer_id, "items": lines, "payment_token": token}


class OrderCancelInputSerializer(RefuseUnknownFieldsMixin, serializers.Serializer):
    """An empty body, or none: the reason follows from who asks."""


class OrderSagaSerializer(serializers.Serializer):
    """A saga acting on an order, as the order shows it: id, type, status."""

    id = serializers.UUIDField()
    type = serializers.CharField()
    status = serializers.CharField()


class OrderLineSerializer(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price = serializers.DecimalField(max_digits=14, decimal_places=2)
    line_total = serializers.DecimalField(max_digits=14, decimal_places=2)


class OrderSerializer(serializers.Serializer):
    """An order as the API shows it (from the read model, or replayed as of a version)."""

    id = serializers.UUIDField()
    customer_id = serializers.CharField()
    status = serializers.ChoiceField(choices=[s.value for s in OrderStatus])
    cancellation_reason = serializers.CharField(allow_null=True)
    items = OrderLineSerializer(many=True)
    total = serializers.DecimalField(max_digits=14, decimal_places=2)
    currency = serializers.CharField()
    version = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    saga = OrderSagaSerializer(allow_null=True, help_text="The newest saga acting on the order.")
    sagas = OrderSagaSerializer(many=True, help_text="Every saga of the order, newest first.")

    def to_representation(self, instance: Any) -> dict[str, Any]:
        sagas = self.context.get("sagas_by_order", {}).get(str(instance.id), [])
        return order_representation(instance, sagas)


# What OrderSerializer's fields make of an order, written out: DRF's generic path (copying
# the declared fields, then one field object per value, ~110 us) was a sixth of a POST's own
# Python time, for a dozen values whose formats are fixed. orders/tests/test_representation.py
# checks that the two give the same answer for every kind of order.
_CENT = Decimal("0.01")
# DecimalField(max_digits=14, decimal_places=2): the default context's rounding, 14 digits.
_MONEY_CONTEXT = Context(prec=14)
_STATUSES = {s.value: s.value for s in OrderStatus}


def _money(value: Any) -> str:
    if not isinstance(value, Decimal):
        value = Decimal(str(value).strip())
    return f"{value.quantize(_CENT, context=_MONEY_CONTEXT):f}"


def _timestamp(value: Any) -> str | None:
    if not value:
        return None
    if isinstance(value, str) or not timezone.is_aware(value):
        # Strings pass through, naive times get DRF's own handling (neither occurs here).
        stamp: str | None = serializers.DateTimeField().to_representation(value)
        return stamp
    stamp = value.astimezone(timezone.get_current_timezone()).isoformat()
    return stamp[:-6] + "Z" if stamp.endswith("+00:00") else stamp


def _line(line: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "sku": _text(line["sku"]),
        "name": _text(line["name"]),
        "quantity": None if line["quantity"] is None else int(line["quantity"]),
        "unit_price": None if line["unit_price"] is None else _money(line["unit_price"]),
        "line_total": None if line["line_total"] is None else _money(line["line_total"]),
    }


def _saga(saga: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": _text(saga["id"]), "type": _text(saga["type"]), "status": _text(saga["status"])}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def order_representation(order: Any, sagas: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return ``order`` (a read-model row, or an order as of a version) as the API shows it.

    ``sagas`` are the order's sagas, newest first (``orders.selectors.saga_summaries``).
    """
    status = order.status
    return {
        "id": _text(order.id),
        "customer_id": _text(order.customer_id),
        "status": None if status is None else _STATUSES.get(str(status), status),
        "cancellation_reason": _text(order.cancellation_reason or None),
        "items": None if order.items is None else [_line(line) for line in order.items],
        "total": None if order.total is None else _money(order.total),
        "currency": _text(order.currency),
        "version": None if order.version is None else int(order.version),
        "created_at": _timestamp(order.created_at),
        "updated_at": _timestamp(order.updated_at),
        "saga": _saga(sagas[0]) if sagas else None,
        "sagas": [_saga(saga) for saga in sagas],
    }


class OrderEventSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    version = serializers.IntegerField()
    type = serializers.CharField(source="event_type")
    data = serializers.JSONField()  # type: ignore[assignment]
    metadata = serializers.JSONField()
    recorded_at = serializers.DateTimeField()
