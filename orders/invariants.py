"""The orders' invariants (``check_invariants``): each order agrees with its sagas, money, stock.

- **order**: a PENDING order has an active saga; a COMPLETED placing saga left its order
  CONFIRMED (or a cancel saga cancelled it since), a COMPENSATED one left it CANCELLED; every
  saga acting on an order has its order;
- **money**: per order, settled charges minus refunds is 1 for CONFIRMED, 0 for CANCELLED
  (0 or 1 while PENDING), and no charge is for an unknown order;
- **stock**: each order's reservation matches its status and items, and no reservation is
  for an unknown order.

Checks over one app's own tables (sagas, payments, stock per product, the event store) are
that app's, in its own ``invariants`` module.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from uuid import UUID

from backoffice.invariants import InvariantOptions, InvariantReport, Violation, invariant
from inventory.models import Reservation, ReservationLine, ReservationStatus
from orders.domain import OrderStatus
from orders.models import OrderSummary
from orders.services import CANCEL_ORDER, PLACE_ORDER, order_subject
from payments.models import SETTLED_STATUSES, Payment, Refund
from sagas.models import Saga
from sagas.statuses import MOVING_SAGA_STATUSES, SagaStatus


@invariant("orders")
def check_orders(report: InvariantReport, options: InvariantOptions) -> None:
    """Check every order against its sagas, its payments and its reservation."""
    orders = {o.id: o for o in OrderSummary.objects.all()}
    report.count("orders", (o.status for o in orders.values()))
    _check_orders(report, orders, list(Saga.objects.all().order_by("created_at")))
    _check_money(report, orders)
    _check_stock(report, orders)


def _check_orders(
    report: InvariantReport,
    orders: Mapping[UUID, OrderSummary],
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


def _check_money(report: InvariantReport, orders: Mapping[UUID, OrderSummary]) -> None:
    settled: Counter[UUID] = Counter(
        Payment.objects.filter(status__in=SETTLED_STATUSES).values_list("order_id", flat=True)
    )
    refunds: Counter[UUID] = Counter(Refund.objects.values_list("payment__order_id", flat=True))
    for order_id in set(settled) | set(refunds) | set(orders):
        subject = f"order {order_id}"
        charges, paid_back = settled[order_id], refunds[order_id]
        order = orders.get(order_id)
        if order is None:
            if charges:
                report.violation("money", subject, f"{charges} charge(s) for an unknown order")
            continue
        expected = {OrderStatus.CONFIRMED: {1}, OrderStatus.CANCELLED: {0}}.get(
            OrderStatus(order.status), {0, 1}
        )
        if charges - paid_back not in expected:
            report.violation(
                "money",
                subject,
                f"{order.status} with {charges} charge(s) and {paid_back} refund(s): "
                f"charges minus refunds must be {' or '.join(map(str, sorted(expected)))}",
            )


def _check_stock(report: InvariantReport, orders: Mapping[UUID, OrderSummary]) -> None:
    lines_by_reservation: dict[int, dict[str, int]] = defaultdict(dict)
    for line in ReservationLine.objects.select_related("product"):
        lines_by_reservation[line.reservation_id][line.product.sku] = line.quantity
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
