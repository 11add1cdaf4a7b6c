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
from orders.countries import COUNTRY_CODES
from orders.domain import MAX_LINES, MAX_ORDER_TOTAL, MAX_QUANTITY, OrderStatus
from orders.personal_data import PersonalView, event_data_opened, personal_views

# Fields a client might send hoping to set what only the catalogue or the saga decides.
SERVER_OWNED_FIELDS = {
    "id",
    "status",
    "total",
    "currency",
    "cancellation_reason",
    "personal_data_erased",
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


# Each text of a contact (personal data, see orders.personal_data).
CONTACT_TEXT_MAX = 200


def contact_text(*, required: bool = True) -> PrintableCharField:
    return PrintableCharField(min_length=1, max_length=CONTACT_TEXT_MAX, required=required)


class CountryField(PrintableCharField):
    """An ISO 3166-1 alpha-2 country code, upper case (``PT``)."""

    default_error_messages = {
        "country": "Must be an ISO 3166-1 alpha-2 country code, such as PT or US.",
    }
    schema_pattern = "^[A-Z]{2}$"

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if value not in COUNTRY_CODES:
            self.fail("country")
        return value


class ShippingAddressInputSerializer(RefuseUnknownFieldsMixin, PrebuiltSerializer):
    """Where to ship: ``line2`` is optional; the country is ISO 3166-1 alpha-2."""

    line1 = contact_text()
    line2 = contact_text(required=False)
    city = contact_text()
    postal_code = contact_text()
    country = CountryField(min_length=2, max_length=2)


class ContactInputSerializer(RefuseUnknownFieldsMixin, PrebuiltSerializer):
    """Who the order is for: personal data, kept encrypted and erasable (``phone`` optional)."""

    email = serializers.EmailField(max_length=CONTACT_TEXT_MAX)
    name = contact_text()
    phone = contact_text(required=False)
    shipping_address = ShippingAddressInputSerializer()


@extend_schema_field(ContactInputSerializer)
class ContactField(serializers.JSONField):
    """An order's contact as shown: the object as given (the schema says its shape), or null."""


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
    contact = ContactInputSerializer(
        required=False,
        allow_null=True,
        help_text=(
            "Personal data: stored encrypted under the customer's key, shown to those who"
            " may see the order, and erased with the customer"
            " (POST /api/customers/{customer_id}/erase/)."
        ),
    )

    def validate_items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        skus = [item["sku"] for item in items]
        repeated = sorted({s for s in skus if skus.count(s) > 1})
        if repeated:
            raise serializers.ValidationError(
                f"Each SKU may appear once per order; repeated: {', '.join(repeated)}."
            )
        return items


class CustomerEraseInputSerializer(RefuseUnknownFieldsMixin, serializers.Serializer):
    """Why a customer's personal data is erased: recorded with the erasure."""

    reason = serializers.RegexField(
        r"^[^\x00]*[^\s\x00][^\x00]*$",
        max_length=2000,
        trim_whitespace=False,
        error_messages={"invalid": "An erasure needs a non-empty reason (a string)."},
    )

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and "reason" in data and not isinstance(data["reason"], str):
            raise serializers.ValidationError(
                {"reason": ["An erasure needs a non-empty reason (a string)."]}
            )
        return super().to_internal_value(data)


class CustomerErasureSerializer(serializers.Serializer):
    """What an erasure answers."""

    customer_id = serializers.CharField()
    orders = serializers.IntegerField(help_text="How many of the customer's orders it covers.")
    erased_at = serializers.DateTimeField()


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
    personal: PersonalView

    @property
    def saga(self) -> Mapping[str, Any] | None:
        return self.sagas[0] if self.sagas else None


class OrderSerializer(PrebuiltSerializer):
    """An order as the API shows it (from the read model, or replayed as of a version)."""

    # The instance is a ShownOrder: the order, and its sagas beside it.

    id = serializers.UUIDField(source="order.id")
    customer_id = serializers.CharField(source="order.customer_id")
    contact = ContactField(
        source="personal.contact",
        allow_null=True,
        help_text="The contact as given, or null (none given, or erased).",
    )
    personal_data_erased = serializers.BooleanField(
        source="personal.personal_data_erased",
        help_text="True once the customer's personal data was erased.",
    )
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


def order_representation(
    order: Any, sagas: Sequence[Mapping[str, Any]], personal: PersonalView | None = None
) -> dict[str, Any]:
    """Return ``order`` as the API shows it, with its ``sagas`` (newest first).

    Its personal data is opened from the keyring unless ``personal`` gives it.
    """
    if personal is None:
        personal = personal_views([order])[str(order.id)]
    body: dict[str, Any] = OrderSerializer(ShownOrder(order, sagas, personal)).data
    return body


def orders_representation(
    orders: Iterable[Any], sagas_by_order: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """Return each order as the API shows it; ``sagas_by_order`` is keyed by order id."""
    orders = list(orders)
    personal = personal_views(orders)
    shown = [
        ShownOrder(order, sagas_by_order.get(str(order.id), []), personal[str(order.id)])
        for order in orders
    ]
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
        return event_data_named(
            event, self.context.get("names", {}), self.context.get("ciphers", {})
        )

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_metadata(self, event: Any) -> dict[str, Any]:
        return _named(event.metadata, _ACTOR_KEYS["metadata"], self.context.get("names", {}))


def _named(values: Mapping[str, Any], key: str, names: Mapping[str, str]) -> dict[str, Any]:
    shown = dict(values)
    actor = shown.get(key)
    if isinstance(actor, str) and actor in names:
        shown[key] = names[actor]
    return shown


def event_data_named(
    event: Any, names: Mapping[str, str], ciphers: Mapping[str, Any]
) -> dict[str, Any]:
    """Return the event's data with the user who placed the order shown by ``names``.

    Its contact is opened with ``ciphers`` (``orders.personal_data.event_ciphers``): null
    once erased.
    """
    return _named(event_data_opened(event, ciphers), _ACTOR_KEYS["data"], names)


def event_actor_names(events: Iterable[Any]) -> dict[str, str]:
    """Return the usernames of the users ``events`` name, for ``OrderEventSerializer``."""
    return usernames_of(
        str(getattr(e, attribute).get(key, ""))
        for e in events
        for attribute, key in _ACTOR_KEYS.items()
    )
