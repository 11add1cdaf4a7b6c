"""The Order aggregate, its events and its rules.

Plain Python: no Django, no Celery. The aggregate decides; services load it, call one of its
verbs and save the events it recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from eventstore.aggregates import Aggregate
from eventstore.registry import DomainEvent
from eventstore.registry import events as registry

MAX_LINES = 100
MAX_QUANTITY = 1000
CENT = Decimal("0.01")
# The most one order may cost, in its currency: what the narrowest column holding an order's
# money keeps (a payment's or a refund's amount, the simulated gateway's books: 12 digits, 2
# decimals). Above it an order could be placed whose charge can never be recorded.
MAX_ORDER_TOTAL = Decimal("9999999999.99")


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"


class CancellationReason(StrEnum):
    OUT_OF_STOCK = "out_of_stock"
    PAYMENT_DECLINED = "payment_declined"
    STEP_FAILED = "step_failed"
    CANCELLED_BY_STAFF = "cancelled_by_staff"
    CANCELLED_BY_CLIENT = "cancelled_by_client"


_REASON_FOR_FAILURE = {
    "out_of_stock": CancellationReason.OUT_OF_STOCK,
    "payment_declined": CancellationReason.PAYMENT_DECLINED,
    # A cancellation of a pending order stops its placing saga with who asked as the code.
    "cancelled_by_client": CancellationReason.CANCELLED_BY_CLIENT,
    "cancelled_by_staff": CancellationReason.CANCELLED_BY_STAFF,
}


def reason_for_failure(code: str) -> CancellationReason:
    """Say why an order is cancelled when its placing saga failed (or was stopped) with ``code``."""
    return _REASON_FOR_FAILURE.get(code, CancellationReason.STEP_FAILED)


# --- errors -----------------------------------------------------------------------------------


class OrderError(Exception):
    """Base of the Order's domain errors."""


class InvalidOrder(OrderError):
    """Refuse an order that breaks a rule; ``errors`` maps a field to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))


class OrderNotPending(OrderError):
    """Refuse to confirm an order that is not pending."""


class OrderAlreadyCancelled(OrderError):
    """Refuse to cancel an order twice."""


class OrderNotCancellable(OrderError):
    """Refuse a cancel saga for an order that is not confirmed."""


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderLine:
    sku: str
    name: str
    quantity: int
    unit_price: Decimal
    line_total: Decimal


@registry.event("OrderCreated")
@dataclass(frozen=True)
class OrderCreated(DomainEvent):
    order_id: str
    customer_id: str
    lines: tuple[OrderLine, ...]
    total: Decimal
    currency: str
    placed_by: str
    # Personal data, sealed (orders.personal_data): the contact's envelope, encrypted under
    # the customer's data key, or None; and the id of the key the order's personal data
    # lives and dies with (empty in orders placed before personal data was kept).
    contact: Mapping[str, str] | None = None
    customer_key: str = ""


@registry.event("OrderConfirmed")
@dataclass(frozen=True)
class OrderConfirmed(DomainEvent):
    order_id: str


@registry.event("OrderCancelled")
@dataclass(frozen=True)
class OrderCancelled(DomainEvent):
    order_id: str
    reason: str
    previous_status: str


# --- the aggregate ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PricedItem:
    """A line as the catalogue prices it: what ``Order.create`` is given."""

    sku: str
    name: str
    quantity: int
    unit_price: Decimal


class Order(Aggregate):
    """An order: created pending, then confirmed, or cancelled with a reason."""

    stream_type = "order"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.customer_id = ""
        self.status = OrderStatus.PENDING
        self.cancellation_reason: CancellationReason | None = None
        self.lines: tuple[OrderLine, ...] = ()
        self.total = Decimal("0")
        self.currency = ""
        self.placed_by = ""
        # Sealed: the aggregate never holds the plain text, so neither can a snapshot.
        self.contact: Mapping[str, str] | None = None
        self.customer_key = ""

    @classmethod
    def create(
        cls,
        *,
        order_id: str,
        customer_id: str,
        items: list[PricedItem],
        currency: str,
        placed_by: str,
        contact: Mapping[str, str] | None = None,
        customer_key: str = "",
    ) -> Order:
        """Open a pending order for priced items, checking the order's own rules.

        ``contact`` is the contact already sealed under the customer's key ``customer_key``.
        """
        errors: dict[str, list[str]] = {}
        if not items:
            errors["items"] = ["An order needs at least one line."]
        elif len(items) > MAX_LINES:
            errors["items"] = [f"An order has at most {MAX_LINES} lines."]
        skus = [i.sku for i in items]
        duplicates = sorted({s for s in skus if skus.count(s) > 1})
        if duplicates:
            errors.setdefault("items", []).append(
                f"Each SKU may appear once; repeated: {', '.join(duplicates)}."
            )
        for item in items:
            if not 1 <= item.quantity <= MAX_QUANTITY:
                errors.setdefault("items", []).append(
                    f"{item.sku}: quantity must be between 1 and {MAX_QUANTITY}."
                )
            if item.unit_price <= 0:
                errors.setdefault("items", []).append(f"{item.sku}: price must be positive.")
        if errors:
            raise InvalidOrder(errors)
        lines = tuple(
            OrderLine(
                sku=i.sku,
                name=i.name,
                quantity=i.quantity,
                unit_price=i.unit_price.quantize(CENT),
                line_total=(i.unit_price * i.quantity).quantize(CENT),
            )
            for i in items
        )
        total = sum((line.line_total for line in lines), Decimal("0.00"))
        if total > MAX_ORDER_TOTAL:
            raise InvalidOrder(
                {
                    "items": [
                        f"The order's total, {total}, is over the maximum of {MAX_ORDER_TOTAL}"
                        " per order."
                    ]
                }
            )
        order = cls(order_id)
        order._record(
            OrderCreated(
                order_id=order_id,
                customer_id=customer_id,
                lines=lines,
                total=total,
                currency=currency,
                placed_by=placed_by,
                contact=contact,
                customer_key=customer_key,
            )
        )
        return order

    def confirm(self) -> None:
        """Confirm a pending order (stock committed, payment taken)."""
        if self.status is not OrderStatus.PENDING:
            raise OrderNotPending(f"order {self.id} is {self.status}, not PENDING")
        self._record(OrderConfirmed(order_id=self.id))

    def cancel(self, reason: CancellationReason) -> None:
        """Cancel the order for ``reason``, from pending or confirmed."""
        if self.status is OrderStatus.CANCELLED:
            raise OrderAlreadyCancelled(f"order {self.id} is already cancelled")
        self._record(
            OrderCancelled(order_id=self.id, reason=reason.value, previous_status=self.status)
        )

    def check_cancellation_request(self) -> None:
        """Refuse the cancel saga (its first, local step) unless the order is confirmed.

        A pending order is cancelled by stopping its placing saga instead, which undoes what
        it did (``orders.services.order_request_cancellation``).
        """
        if self.status is not OrderStatus.CONFIRMED:
            raise OrderNotCancellable(
                f"only a CONFIRMED order can be cancelled; order {self.id} is {self.status}"
            )

    @property
    def is_confirmed(self) -> bool:
        return self.status is OrderStatus.CONFIRMED

    @property
    def is_cancelled(self) -> bool:
        return self.status is OrderStatus.CANCELLED

    def apply(self, event: DomainEvent) -> None:
        match event:
            case OrderCreated():
                self.customer_id = event.customer_id
                self.lines = event.lines
                self.total = event.total
                self.currency = event.currency
                self.placed_by = event.placed_by
                self.contact = event.contact
                self.customer_key = event.customer_key
                self.status = OrderStatus.PENDING
            case OrderConfirmed():
                self.status = OrderStatus.CONFIRMED
            case OrderCancelled():
                self.status = OrderStatus.CANCELLED
                self.cancellation_reason = CancellationReason(event.reason)
            case _:
                raise TypeError(f"Order cannot apply {type(event).__name__}")
