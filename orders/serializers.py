"""Input and output serializers of the orders API: one parser and one format for an order.

``OrderCreateInputSerializer`` is where a new order's input rules are written: the view
parses with it, its messages are the 400's field errors, and the OpenAPI schema is generated
from it. What only the catalogue knows (unknown SKUs, one currency per order) comes back from
``order_place`` as field errors too. ``OrderSerializer`` is the one format of an order in
every answer. Both build their fields once per class (``infrastructure.api.serializers``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from infrastructure.actors import usernames_of
from infrastructure.api.serializers import PrebuiltSerializer
from orders.domain import MAX_LINES, MAX_ORDER_TOTAL, MAX_QUANTITY, OrderStatus

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


# The longest customer id, SKU and payment token a new order may carry.
CUSTOMER_ID_MAX = 64
SKU_MAX = 64
PAYMENT_TOKEN_MAX = 100


class OrderLineInputSerializer(RefuseUnknownFieldsMixin, PrebuiltSerializer):
    """A line of a new order: a catalogue SKU and a whole quantity from 1 to 1000."""

    sku = PrintableCharField(max_length=SKU_MAX, trim_whitespace=False)
    quantity = StrictIntegerField(min_value=1, max_value=MAX_QUANTITY)


class OrderCreateInputSerializer(RefuseUnknownFieldsMixin, PrebuiltSerializer):
    """A new order: 1 to 100 lines of distinct catalogue SKUs, priced by the catalogue."""

    customer_id = PrintableCharField(
        min_length=1, max_length=CUSTOMER_ID_MAX, trim_whitespace=False
    )
    items = OrderLineInputSerializer(  # type: ignore[call-arg]
        many=True,
        allow_empty=False,
        max_length=MAX_LINES,
        help_text=(
            f"1 to {MAX_LINES} lines of distinct SKUs. Priced by the catalogue, the order's"
            f" total may be at most {MAX_ORDER_TOTAL}; above it the order is refused with a"
            " 400 on `items`."
        ),
    )
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


class OrderCancelInputSerializer(RefuseUnknownFieldsMixin, serializers.Serializer):
    """An empty body, or none: the reason follows from who asks."""


class OrderSagaSerializer(PrebuiltSerializer):
    """A saga acting on an order, as the order shows it: id, type, status."""

    id = serializers.UUIDField()
    type = serializers.CharField()
    status = serializers.CharField()


class OrderLineSerializer(PrebuiltSerializer):
    """A line of an order, priced by the catalogue when the order was placed."""

    sku = serializers.CharField()
    name = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price = serializers.DecimalField(max_digits=14, decimal_places=2)
    line_total = serializers.DecimalField(max_digits=14, decimal_places=2)


class BlankAsNullCharField(serializers.CharField):
    """Show an empty string as null (a cancellation reason an order does not have)."""

    def to_representation(self, value: Any) -> str | None:  # type: ignore[override]
        return str(value) if value else None


@dataclass(frozen=True)
class ShownOrder:
    """Pair an order with the sagas acting on it, newest first: what the API shows of it.

    ``order`` is anything with the read model's fields: its row, an order as of a version,
    or the values ``order_place`` wrote.
    """

    order: Any
    sagas: Sequence[Mapping[str, Any]]

    @property
    def saga(self) -> Mapping[str, Any] | None:
        return self.sagas[0] if self.sagas else None


class OrderSerializer(PrebuiltSerializer):
    """An order as the API shows it (from the read model, or replayed as of a version)."""

    # The instance is a ShownOrder: the order, and its sagas beside it.

    id = serializers.UUIDField(source="order.id")
    customer_id = serializers.CharField(source="order.customer_id")
    status = serializers.ChoiceField(choices=[s.value for s in OrderStatus], source="order.status")
    cancellation_reason = BlankAsNullCharField(allow_null=True, source="order.cancellation_reason")
    items = OrderLineSerializer(many=True, source="order.items")
    total = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        source="order.total",
        help_text=f"The sum of the line totals: at most {MAX_ORDER_TOTAL} per order.",
    )
    currency = serializers.CharField(source="order.currency")
    version = serializers.IntegerField(source="order.version")
    created_at = serializers.DateTimeField(source="order.created_at")
    updated_at = serializers.DateTimeField(source="order.updated_at")
    saga = OrderSagaSerializer(allow_null=True, help_text="The newest saga acting on the order.")
    sagas = OrderSagaSerializer(many=True, help_text="Every saga of the order, newest first.")


def order_representation(order: Any, sagas: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return ``order`` as the API shows it, with its ``sagas`` (newest first)."""
    body: dict[str, Any] = OrderSerializer(ShownOrder(order, sagas)).data
    return body


def orders_representation(
    orders: Iterable[Any], sagas_by_order: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """Return each order as the API shows it; ``sagas_by_order`` is keyed by order id."""
    shown = [ShownOrder(order, sagas_by_order.get(str(order.id), [])) for order in orders]
    body: list[dict[str, Any]] = list(OrderSerializer(shown, many=True).data)
    return body


#: Where an order's events name a user: the metadata's actor, and who placed the order.
_ACTOR_KEYS = {"metadata": "actor", "data": "placed_by"}


class OrderEventSerializer(serializers.Serializer):
    """An order's event, its users named by username (``context["names"]``), not by id."""

    position = serializers.IntegerField()
    version = serializers.IntegerField()
    type = serializers.CharField(source="event_type")
    data = serializers.SerializerMethodField()  # type: ignore[assignment]
    metadata = serializers.SerializerMethodField()
    recorded_at = serializers.DateTimeField()

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_data(self, event: Any) -> dict[str, Any]:
        return event_data_named(event, self.context.get("names", {}))

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_metadata(self, event: Any) -> dict[str, Any]:
        return _named(event.metadata, _ACTOR_KEYS["metadata"], self.context.get("names", {}))


def _named(values: Mapping[str, Any], key: str, names: Mapping[str, str]) -> dict[str, Any]:
    shown = dict(values)
    actor = shown.get(key)
    if isinstance(actor, str) and actor in names:
        shown[key] = names[actor]
    return shown


def event_data_named(event: Any, names: Mapping[str, str]) -> dict[str, Any]:
    """Return the event's data with the user who placed the order shown by ``names``."""
    return _named(event.data, _ACTOR_KEYS["data"], names)


def event_actor_names(events: Iterable[Any]) -> dict[str, str]:
    """Return the usernames of the users ``events`` name, for ``OrderEventSerializer``."""
    return usernames_of(
        str(getattr(e, attribute).get(key, ""))
        for e in events
        for attribute, key in _ACTOR_KEYS.items()
    )
