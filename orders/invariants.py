"""Check, after any run, that nothing was lost or done twice: what ``check_invariants`` reports.

Every check reads PostgreSQL only (the truth: saga rows, events, payments, reservations) and
lists what it finds wrong as :class:`Violation` rows; an empty list is a clean bill:

- **saga**: every saga is final (COMPLETED, COMPENSATED) or waits for an operator
  (COMPENSATION_FAILED with the failed compensation's error recorded); RUNNING and
  COMPENSATING pass only with ``allow_in_flight``;
- **dispatch**: no saga has an attempt due without a message sent for it, nor a claim
  past its deadline (only moving sagas can: the database refuses either on a resting one);
- **order**: a PENDING order has an active saga; a COMPLETED placing saga left its order
  CONFIRMED (or a cancel saga cancelled it since), a COMPENSATED one left it CANCELLED;
- **money**: per order, settled charges minus refunds is 1 for CONFIRMED, 0 for CANCELLED
  (0 or 1 while PENDING); never two settled charges; a REFUNDED payment has its refund;
  the simulated processor's books agree (every approved charge is ours or was voided);
- **stock**: per product ``stock_reserved`` is the sum of the RESERVED reservations'
  lines; each order's reservation matches its status and items; given the on-hand stock
  at the start (``stock_baseline``), ``stock_on_hand`` is it minus the COMMITTED lines
  (released reservations never left, restocked ones came back);
- **event store**: every stream's versions are contiguous and every projection equals a
  replay (``eventstore.verify``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from eventstore.verify import event_store_verify
from inventory.models import Product, Reservation, ReservationLine, ReservationStatus
from orders.domain import OrderStatus
from orders.models import Order
from orders.services import CANCEL_ORDER, PLACE_ORDER, order_subject
from payments.models import (
    SETTLED_STATUSES,
    Payment,
    PaymentStatus,
    Refund,
    SimulatedCharge,
    SimulatedChargeOutcome,
    SimulatedRefund,
)
from sagas.models import Saga, SagaStep
from sagas.statuses import MOVING_SAGA_STATUSES, SagaStatus, StepStatus

FINAL_SAGA_STATUSES = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED})


@dataclass(frozen=True)
class Violation:
    """Name one broken invariant: its kind, what it is about, and what is wrong."""

    kind: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.subject}: {self.detail}"


@dataclass
class InvariantReport:
    """Count what was checked and list every violation found."""

    sagas: Counter[str] = field(default_factory=Counter)
    orders: Counter[str] = field(default_factory=Counter)
    products: int = 0
    streams: int = 0
    events: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Tell whether no invariant is broken."""
        return not self.violations

    def kinds(self) -> set[str]:
        """Return the kinds of the violations found."""
        return {v.kind for v in self.violations}

    def summary(self) -> str:
        """Describe what was checked in one line."""
        sagas = ", ".join(f"{n} {s}" for s, n in sorted(self.sagas.items())) or "none"
        orders = ", ".join(f"{n} {s}" for s, n in sorted(self.orders.items())) or "none"
        return (
            f"sagas: {sagas}; orders: {orders}; products: {self.products}; "
            f"streams: {self.streams}, events: {self.events}"
        )


def invariants_check(
    *,
    allow_in_flight: bool = False,
    stock_baseline: Mapping[str, int] | None = None,
    now: datetime | None = None,
) -> InvariantReport:
    """Check every invariant over the whole database and report each violation found.

    ``allow_in_flight`` accepts sagas still RUNNING or COMPENSATING (a check during a run);
    their dispatch is still checked. ``stock_baseline`` maps SKUs to the on-hand stock they
    had before any order reserved them; without it on-hand stock is not checked.
    """
    report = InvariantReport()
    now = now or timezone.now()
    sagas = list(Saga.objects.all().order_by("created_at"))
    report.sagas.update(s.status for s in sagas)
    _check_sagas(report, sagas, allow_in_flight=allow_in_flight)
    _check_dispatch(report, sagas, now=now)
    orders = {o.id: o for o in Order.objects.all()}
    report.orders.update(o.status for o in orders.values())
    _check_orders(report, orders, sagas)
    _check_money(report, orders)
    _check_processor(report)
    _check_stock(report, orders, stock_baseline=stock_baseline)
    verification = event_store_verify()
    report.streams, report.events = verification.streams, verification.events
    for problem in verification.problems:
        report.violations.append(Violation("event_store", "event store", problem))
    return report


def _check_sagas(report: InvariantReport, sagas: list[Saga], *, allow_in_flight: bool) -> None:
    failed_steps = {
        step.saga_id: step
        for step in SagaStep.objects.filter(
            saga__status=SagaStatus.COMPENSATION_FAILED, status=StepStatus.COMPENSATION_FAILED
        )
    }
    for saga in sagas:
        status = SagaStatus(saga.status)
        subject = f"saga {saga.saga_type} {saga.id}"
        if status in FINAL_SAGA_STATUSES:
            continue
        if status is SagaStatus.COMPENSATION_FAILED:
            step = failed_steps.get(saga.id)
            if step is None or not step.last_error.strip():
                report.violations.append(
                    Violation(
                        "saga",
                        subject,
                        "waits for an operator (COMPENSATION_FAILED) with no failed "
                        "compensation and error recorded",
                    )
                )
            continue
        if not allow_in_flight:
            report.violations.append(
                Violation(
                    "saga",
                    subject,
                    f"still {status.value} at {saga.current_step} ({saga.current_phase}): "
                    "neither final nor waiting for an operator",
                )
            )


def _check_dispatch(report: InvariantReport, sagas: list[Saga], *, now: datetime) -> None:
    grace = timedelta(seconds=float(settings.SAGA_SWEEP_GRACE_SECONDS))
    moving = {s.value for s in MOVING_SAGA_STATUSES}
    for saga in sagas:
        subject = f"saga {saga.saga_type} {saga.id}"
        if saga.status not in moving:
            if saga.due_at is not None or saga.claim_token is not None:
                report.violations.append(
                    Violation("dispatch", subject, f"{saga.status} but still due or claimed")
                )
            continue
        if saga.claim_token is not None:
            if saga.deadline is not None and saga.deadline < now - grace:
                report.violations.append(
                    Violation(
                        "dispatch",
                        subject,
                        f"{saga.current_step} ({saga.current_phase}) claimed past its deadline "
                        f"{saga.deadline.isoformat()}: stalled and not swept",
                    )
                )
        elif saga.due_at is None:
            report.violations.append(
                Violation(
                    "dispatch",
                    subject,
                    f"{saga.status} with nothing due and nothing running: nobody will move it",
                )
            )
        elif saga.due_at < now - grace and (
            saga.dispatched_at is None or saga.dispatched_at < now - grace
        ):
            sent = saga.dispatched_at.isoformat() if saga.dispatched_at else "never"
            report.violations.append(
                Violation(
                    "dispatch",
                    subject,
                    f"{saga.current_step} ({saga.current_phase}) due since "
                    f"{saga.due_at.isoformat()}, message sent {sent}: left unsent",
                )
            )


def _check_orders(
    report: InvariantReport,
    orders: Mapping[UUID, Order],
    sagas: list[Saga],
) -> None:
    by_subject: dict[str, list[Saga]] = defaultdict(list)
    for saga in sagas:
        by_subject[saga.subject].append(saga)
    # A saga still moving is the saga check's violation (unless in flight), not the order's.
    active = {SagaStatus.COMPENSATION_FAILED.value} | {s.value for s in MOVING_SAGA_STATUSES}
    for order in orders.values():
        subject = f"order {order.id}"
        its_sagas = by_subject.get(order_subject(order.id), [])
        places = [s for s in its_sagas if s.saga_type == PLACE_ORDER]
        cancels = [s for s in its_sagas if s.saga_type == CANCEL_ORDER]
        if len(places) != 1:
            report.violations.append(
                Violation("order", subject, f"has {len(places)} placing sagas, expected 1")
            )
            continue
        place = places[0]
        cancelled_by_saga = any(s.status == SagaStatus.COMPLETED for s in cancels)
        if order.status == OrderStatus.PENDING:
            if not any(s.status in active for s in its_sagas):
                report.violations.append(
                    Violation("order", subject, "PENDING with no saga still acting on it")
                )
        elif place.status == SagaStatus.COMPLETED and order.status != OrderStatus.CONFIRMED:
            if not (order.status == OrderStatus.CANCELLED and cancelled_by_saga):
                report.violations.append(
                    Violation(
                        "order",
                        subject,
                        f"{order.status} although its placing saga COMPLETED and no cancel "
                        "saga completed",
                    )
                )
        elif place.status == SagaStatus.COMPENSATED and order.status != OrderStatus.CANCELLED:
            report.violations.append(
                Violation("order", subject, f"{order.status} although its placing saga COMPENSATED")
            )
        if order.status == OrderStatus.CONFIRMED and cancelled_by_saga:
            report.violations.append(
                Violation("order", subject, "CONFIRMED although a cancel saga completed")
            )
    order_subjects = {order_subject(order_id) for order_id in orders}
    for saga in sagas:
        # A placing saga whose first (local) step committed always has its order row.
        if saga.subject.startswith("order:") and saga.subject not in order_subjects:
            report.violations.append(
                Violation(
                    "order",
                    f"saga {saga.saga_type} {saga.id}",
                    f"acts on {saga.subject}, which has no order",
                )
            )


def _check_money(report: InvariantReport, orders: Mapping[UUID, Order]) -> None:
    settled: Counter[UUID] = Counter()
    refunded_payments: set[UUID] = set()
    for payment in Payment.objects.filter(status__in=SETTLED_STATUSES):
        settled[payment.order_id] += 1
        if payment.status == PaymentStatus.REFUNDED:
            refunded_payments.add(payment.pk)
    refunds: Counter[UUID] = Counter()
    for refund in Refund.objects.select_related("payment"):
        refunds[refund.payment.order_id] += 1
        if refund.payment.status != PaymentStatus.REFUNDED:
            report.violations.append(
                Violation(
                    "money",
                    f"payment {refund.payment_id}",
                    f"has refund {refund.pk} but is {refund.payment.status}",
                )
            )
        refunded_payments.discard(refund.payment_id)
    for payment_id in sorted(refunded_payments):
        report.violations.append(
            Violation("money", f"payment {payment_id}", "REFUNDED without a refund recorded")
        )
    for order_id in set(settled) | set(refunds) | set(orders):
        subject = f"order {order_id}"
        charges, paid_back = settled[order_id], refunds[order_id]
        if charges > 1:
            report.violations.append(
                Violation("money", subject, f"charged {charges} times (settled payments)")
            )
        net = charges - paid_back
        order = orders.get(order_id)
        if order is None:
            if charges:
                report.violations.append(
                    Violation("money", subject, f"{charges} charge(s) for an unknown order")
                )
            continue
        expected = {OrderStatus.CONFIRMED: {1}, OrderStatus.CANCELLED: {0}}.get(
            OrderStatus(order.status), {0, 1}
        )
        if net not in expected:
            report.violations.append(
                Violation(
                    "money",
                    subject,
                    f"{order.status} with {charges} charge(s) and {paid_back} refund(s): "
                    f"charges minus refunds must be {' or '.join(map(str, sorted(expected)))}",
                )
            )


def _check_processor(report: InvariantReport) -> None:
    # The simulated processor's own books: money it took that we do not hold must be back.
    ours = set(
        Payment.objects.filter(status__in=SETTLED_STATUSES).values_list(
            "idempotency_key", flat=True
        )
    )
    refunded = set(SimulatedRefund.objects.values_list("charge_id", flat=True))
    approved = SimulatedCharge.objects.filter(outcome=SimulatedChargeOutcome.APPROVED)
    for charge in approved.filter(~Q(idempotency_key__in=ours)):
        if charge.pk not in refunded:
            report.violations.append(
                Violation(
                    "money",
                    f"processor charge {charge.reference}",
                    f"approved {charge.amount} {charge.currency} (key {charge.idempotency_key}) "
                    "but no payment of ours records it and it was never voided",
                )
            )


def _check_stock(
    report: InvariantReport,
    orders: Mapping[UUID, Order],
    *,
    stock_baseline: Mapping[str, int] | None,
) -> None:
    reserved: Counter[int] = Counter()
    committed: Counter[int] = Counter()
    lines_by_reservation: dict[int, dict[str, int]] = defaultdict(dict)
    for line in ReservationLine.objects.select_related("reservation", "product"):
        status = line.reservation.status
        if status == ReservationStatus.RESERVED:
            reserved[line.product_id] += line.quantity
        elif status == ReservationStatus.COMMITTED:
            committed[line.product_id] += line.quantity
        lines_by_reservation[line.reservation_id][line.product.sku] = line.quantity
    products = list(Product.objects.all())
    report.products = len(products)
    for product in products:
        subject = f"product {product.sku}"
        if product.stock_reserved != reserved[product.pk]:
            report.violations.append(
                Violation(
                    "stock",
                    subject,
                    f"stock_reserved is {product.stock_reserved} but active reservations "
                    f"hold {reserved[product.pk]}",
                )
            )
        if stock_baseline is not None and product.sku in stock_baseline:
            expected = stock_baseline[product.sku] - committed[product.pk]
            if product.stock_on_hand != expected:
                report.violations.append(
                    Violation(
                        "stock",
                        subject,
                        f"stock_on_hand is {product.stock_on_hand}, expected {expected} "
                        f"({stock_baseline[product.sku]} at the start minus "
                        f"{committed[product.pk]} confirmed and not restocked)",
                    )
                )
    allowed: dict[OrderStatus, set[ReservationStatus | None]] = {
        OrderStatus.PENDING: {ReservationStatus.RESERVED, None},
        OrderStatus.CONFIRMED: {ReservationStatus.COMMITTED},
        OrderStatus.CANCELLED: {ReservationStatus.RELEASED, ReservationStatus.RESTOCKED, None},
    }
    reservations = {r.order_id: r for r in Reservation.objects.all()}
    for order in orders.values():
        reservation = reservations.pop(order.id, None)
        held = None if reservation is None else ReservationStatus(reservation.status)
        if held not in allowed[OrderStatus(order.status)]:
            report.violations.append(
                Violation(
                    "stock",
                    f"order {order.id}",
                    f"{order.status} with reservation {held.value if held else 'none'}",
                )
            )
        if reservation is not None:
            items = {item["sku"]: int(item["quantity"]) for item in order.items}
            if lines_by_reservation.get(reservation.pk, {}) != items:
                report.violations.append(
                    Violation(
                        "stock",
                        f"order {order.id}",
                        f"reservation holds {lines_by_reservation.get(reservation.pk, {})} "
                        f"but the order is for {items}",
                    )
                )
    for order_id, reservation in reservations.items():
        report.violations.append(
            Violation(
                "stock",
                f"reservation {reservation.pk}",
                f"{reservation.status} for order {order_id}, which does not exist",
            )
        )
