"""Every rule of the invariant checker fires on the one state it forbids, and no other rule does.

The checker is the oracle of every fault test and of the soak: a rule never seen to fire may
never fire at all. Each test here starts from rows a real run leaves (orders placed and driven
in this process through the real sagas and participants), breaks exactly one thing, and expects
one violation: the rule's own kind, its subject, and a detail only that rule writes.

``RULES`` names every rule; ``test_every_rule_in_the_checker_has_a_test_here`` counts the
violations the registered checks' modules build (every app's ``invariants`` module), per kind,
and fails when a rule is added there without a test here.

Two rules guard states PostgreSQL already refuses (a resting saga still due or claimed; two
settled payments for one order): their tests drop the constraint inside the
test's transaction (rolled back after it) to show the checker still catches what a missing or
changed constraint would let through.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from django.db.models import F
from django.utils import timezone

from backoffice.invariants import (
    InvariantReport,
    Violation,
    discover,
    invariants_check,
    registered_checks,
)
from eventstore.models import StoredEvent
from inventory.models import Product, Reservation, ReservationLine, ReservationStatus
from orders.models import OrderSummary
from orders.services import (
    PLACE_ORDER,
    PlacedOrder,
    order_subject,
)
from payments.models import Payment, PaymentStatus, Refund, SimulatedCharge
from sagas.faults import fault_rule_set
from sagas.models import Saga, SagaStep
from sagas.statuses import FaultMode, Phase, SagaStatus, StepStatus
from tests.cards import card_of_charge
from tests.factories import make_product
from tests.invariants.real_runs import (
    cancel_order,
    copy_saga,
    drop_constraint,
    place_order,
    place_order_until,
)
from webhooks.services import endpoint_create

# Plain (rolled back) transactions: nothing commits, so no step message reaches any worker.
pytestmark = pytest.mark.django_db

BASELINE = {"EACH-A": 20, "EACH-B": 5}
CATALOGUE = ("EACH-A", "EACH-B")


@dataclass(frozen=True)
class Rule:
    """Tell one rule's violation apart: its kind and a pattern only its detail matches."""

    kind: str
    detail: str


#: Every rule of ``invariants_check``, by a name of its own.
RULES: dict[str, Rule] = {
    "saga.operator_wait_unrecorded": Rule(
        "saga",
        r"^waits for an operator \(COMPENSATION_FAILED\) with no failed compensation and "
        r"error recorded$",
    ),
    "saga.not_at_rest": Rule(
        "saga",
        r"^still (RUNNING|COMPENSATING) at \w+ \((action|compensation)\): neither final nor "
        r"waiting for an operator$",
    ),
    "saga.version_not_registered": Rule(
        "saga", r"^unfinished under definition version \d+, which this code does not register$"
    ),
    "dispatch.resting_but_due": Rule("dispatch", r"^(COMPLETED|COMPENSATED|COMPENSATION_FAILED) "),
    "dispatch.claim_past_lease": Rule("dispatch", r"claimed past its lease"),
    "dispatch.nobody_moves_it": Rule("dispatch", r"with nothing due and nothing running"),
    "dispatch.left_unsent": Rule("dispatch", r"left unsent$"),
    "order.placing_sagas_not_one": Rule("order", r"^has \d+ placing sagas, expected 1$"),
    "order.pending_without_saga": Rule("order", r"^PENDING with no saga still acting on it$"),
    "order.placed_but_not_confirmed": Rule(
        "order", r"^CANCELLED although its placing saga COMPLETED and no cancel saga completed$"
    ),
    "order.compensated_but_not_cancelled": Rule("order", r"although its placing saga COMPENSATED$"),
    "order.confirmed_but_cancelled": Rule("order", r"^CONFIRMED although a cancel saga completed$"),
    "order.saga_without_order": Rule("order", r"^acts on order:.*, which has no order$"),
    "money.refund_of_unrefunded_payment": Rule("money", r"^has refund .* but is "),
    "money.refunded_without_refund": Rule("money", r"^REFUNDED without a refund recorded$"),
    "money.charged_twice": Rule("money", r"^charged \d+ times"),
    "money.charge_for_unknown_order": Rule("money", r"charge\(s\) for an unknown order$"),
    "money.net_charge_wrong": Rule("money", r"charges minus refunds must be"),
    "money.processor_charge_not_ours": Rule("money", r"no payment of ours records it"),
    "stock.reserved_mismatch": Rule("stock", r"^stock_reserved is \d+ but active reservations"),
    "stock.on_hand_not_conserved": Rule("stock", r"^stock_on_hand is -?\d+, expected"),
    "stock.reservation_status_wrong": Rule("stock", r"^(PENDING|CONFIRMED|CANCELLED) with reserv"),
    "stock.reservation_lines_differ": Rule("stock", r"^reservation holds .* but the order is for"),
    "stock.reservation_without_order": Rule("stock", r"for order .*, which does not exist$"),
    "event_store.verify_problem": Rule("event_store", r"^projection orders: "),
    "webhooks.missing_delivery": Rule("webhooks", r"^committed event has no delivery to webhook"),
}

Breaker = Callable[[], tuple[str, InvariantReport]]
CASES: dict[str, Callable[[], tuple[str, InvariantReport]]] = {}


def case(rule: str) -> Callable[[Breaker], Breaker]:
    """Register the test that makes ``rule`` fire; returns the expected subject and report."""
    assert rule in RULES, rule

    def register(build: Breaker) -> Breaker:
        CASES[rule] = build
        return build

    return register


# -- rows a real run leaves ------------------------------------------------------------------


def place(token: str = "tok_visa", *, run: bool = True) -> PlacedOrder:
    """Place an order for both products of the catalogue; run its saga to rest unless not."""
    return place_order(CATALOGUE, token, run=run)


def saga_subject(saga_id: UUID) -> str:
    saga = Saga.objects.get(pk=saga_id)
    return f"saga {saga.saga_type} {saga.id}"


# -- one state per rule ------------------------------------------------------------------


@case("saga.not_at_rest")
def saga_left_running() -> tuple[str, InvariantReport]:
    placed = place(run=False)
    return saga_subject(placed.saga_id), invariants_check()


@case("saga.version_not_registered")
def saga_on_an_unregistered_version() -> tuple[str, InvariantReport]:
    placed = place(run=False)
    Saga.objects.filter(pk=placed.saga_id).update(definition_version=99)
    return saga_subject(placed.saga_id), invariants_check(allow_in_flight=True)


@case("saga.operator_wait_unrecorded")
def operator_wait_without_error() -> tuple[str, InvariantReport]:
    fault_rule_set(
        saga_type=PLACE_ORDER,
        step="charge_payment",
        phase=Phase.COMPENSATION,
        mode=FaultMode.PERMANENT,
        times=None,
    )
    fault_rule_set(
        saga_type=PLACE_ORDER,
        step="confirm_order",
        phase=Phase.ACTION,
        mode=FaultMode.PERMANENT,
        times=1,
    )
    placed = place()
    assert Saga.objects.get(pk=placed.saga_id).status == SagaStatus.COMPENSATION_FAILED
    assert invariants_check().ok
    SagaStep.objects.filter(saga_id=placed.saga_id, status=StepStatus.COMPENSATION_FAILED).update(
        last_error=" "
    )
    return saga_subject(placed.saga_id), invariants_check()


@case("dispatch.resting_but_due")
def resting_saga_still_due() -> tuple[str, InvariantReport]:
    placed = place()
    drop_constraint("sagas_saga", "sagas_saga_rest_is_idle")
    Saga.objects.filter(pk=placed.saga_id).update(due_at=timezone.now())
    return saga_subject(placed.saga_id), invariants_check()


@case("dispatch.claim_past_lease")
def claim_past_its_lease() -> tuple[str, InvariantReport]:
    placed = place(run=False)
    long_ago = timezone.now() - timedelta(hours=1)
    Saga.objects.filter(pk=placed.saga_id).update(
        due_at=None, claim_token=uuid4(), claimed_at=long_ago, lease_until=long_ago
    )
    return saga_subject(placed.saga_id), invariants_check(allow_in_flight=True)


@case("dispatch.nobody_moves_it")
def moving_saga_with_nothing_due() -> tuple[str, InvariantReport]:
    placed = place(run=False)
    Saga.objects.filter(pk=placed.saga_id).update(due_at=None)
    return saga_subject(placed.saga_id), invariants_check(allow_in_flight=True)


@case("dispatch.left_unsent")
def due_step_never_sent() -> tuple[str, InvariantReport]:
    placed = place(run=False)
    Saga.objects.filter(pk=placed.saga_id).update(
        due_at=timezone.now() - timedelta(minutes=5), dispatched_at=None
    )
    return saga_subject(placed.saga_id), invariants_check(allow_in_flight=True)


@case("order.placing_sagas_not_one")
def two_placing_sagas() -> tuple[str, InvariantReport]:
    placed = place()
    copy_saga(placed.saga_id)
    return f"order {placed.order_id}", invariants_check()


@case("order.pending_without_saga")
def pending_order_nobody_acts_on() -> tuple[str, InvariantReport]:
    placed = place(run=False)
    # The placing saga stops at rest (as a bug in the engine could leave it) before its order
    # moved: nothing will ever confirm or cancel the order.
    Saga.objects.filter(pk=placed.saga_id).update(status=SagaStatus.COMPENSATED, due_at=None)
    return f"order {placed.order_id}", invariants_check()


@case("order.placed_but_not_confirmed")
def completed_saga_cancelled_order() -> tuple[str, InvariantReport]:
    placed = place("tok_chargeDeclined")
    Saga.objects.filter(pk=placed.saga_id).update(status=SagaStatus.COMPLETED)
    return f"order {placed.order_id}", invariants_check()


@case("order.compensated_but_not_cancelled")
def compensated_saga_confirmed_order() -> tuple[str, InvariantReport]:
    placed = place()
    Saga.objects.filter(pk=placed.saga_id).update(status=SagaStatus.COMPENSATED)
    return f"order {placed.order_id}", invariants_check()


@case("order.confirmed_but_cancelled")
def confirmed_order_with_completed_cancel_order() -> tuple[str, InvariantReport]:
    confirmed = place()
    cancel_saga = cancel_order(place().order_id)
    copy_saga(cancel_saga, subject=order_subject(confirmed.order_id))
    return f"order {confirmed.order_id}", invariants_check()


@case("order.saga_without_order")
def saga_on_a_missing_order() -> tuple[str, InvariantReport]:
    placed = place()
    orphan = copy_saga(placed.saga_id, subject=order_subject(uuid4()))
    return f"saga {orphan.saga_type} {orphan.id}", invariants_check()


@case("money.refund_of_unrefunded_payment")
def refund_of_a_charged_payment() -> tuple[str, InvariantReport]:
    placed = place()
    cancel_order(placed.order_id)
    payment = Payment.objects.get(order_id=placed.order_id)
    Payment.objects.filter(pk=payment.pk).update(status=PaymentStatus.CHARGED, refunded_at=None)
    return f"payment {payment.pk}", invariants_check()


@case("money.refunded_without_refund")
def refunded_payment_without_refund() -> tuple[str, InvariantReport]:
    # Stop before confirm_order: a PENDING order may hold one charge or none, so only the
    # missing refund row is wrong.
    placed = place_order_until(CATALOGUE, "confirm_order")
    payment = Payment.objects.get(order_id=placed.order_id)
    Payment.objects.filter(pk=payment.pk).update(
        status=PaymentStatus.REFUNDED, refunded_at=timezone.now()
    )
    return f"payment {payment.pk}", invariants_check(allow_in_flight=True)


@case("money.charged_twice")
def two_settled_payments() -> tuple[str, InvariantReport]:
    placed = place()
    drop_constraint("payments_payment", "payments_payment_one_settled_per_order")
    payment = Payment.objects.get(order_id=placed.order_id)
    now = timezone.now()
    second = Payment.objects.create(
        order_id=placed.order_id,
        idempotency_key=f"{uuid4()}:charge_payment:action",
        amount=payment.amount,
        currency=payment.currency,
        status=PaymentStatus.REFUNDED,
        gateway_reference="ch_second",
        created_at=now,
        updated_at=now,
        refunded_at=now,
    )
    # Refunded, so the net is still one charge: only "charged twice" is wrong.
    Refund.objects.create(
        payment=second,
        idempotency_key=f"{uuid4()}:refund",
        amount=second.amount,
        currency=second.currency,
        gateway_reference="re_second",
        created_at=now,
    )
    return f"order {placed.order_id}", invariants_check()


@case("money.charge_for_unknown_order")
def charge_for_a_missing_order() -> tuple[str, InvariantReport]:
    place()
    now = timezone.now()
    stray = uuid4()
    key = f"{uuid4()}:charge_payment:action"
    Payment.objects.create(
        order_id=stray,
        idempotency_key=key,
        amount=Decimal("5.00"),
        currency="EUR",
        status=PaymentStatus.CHARGED,
        gateway_reference="ch_stray",
        created_at=now,
        updated_at=now,
    )
    return f"order {stray}", invariants_check()


@case("money.net_charge_wrong")
def confirmed_order_refunded() -> tuple[str, InvariantReport]:
    placed = place()
    payment = Payment.objects.get(order_id=placed.order_id)
    now = timezone.now()
    Payment.objects.filter(pk=payment.pk).update(status=PaymentStatus.REFUNDED, refunded_at=now)
    Refund.objects.create(
        payment=payment,
        idempotency_key=f"{uuid4()}:manual",
        amount=payment.amount,
        currency=payment.currency,
        gateway_reference="re_manual",
        created_at=now,
    )
    return f"order {placed.order_id}", invariants_check()


@case("money.processor_charge_not_ours")
def processor_charge_nobody_records() -> tuple[str, InvariantReport]:
    placed = place()
    payment = Payment.objects.get(order_id=placed.order_id)
    SimulatedCharge.objects.create(
        reference="ch_twice",
        idempotency_key=f"{uuid4()}:charge_payment:action",
        **card_of_charge(),
        amount=payment.amount,
        currency=payment.currency,
        outcome="APPROVED",
        created_at=timezone.now(),
    )
    return "processor charge ch_twice", invariants_check()


@case("stock.reserved_mismatch")
def reserved_stock_off_by_one() -> tuple[str, InvariantReport]:
    place()
    Product.objects.filter(sku="EACH-B").update(stock_reserved=F("stock_reserved") + 1)
    return "product EACH-B", invariants_check()


@case("stock.on_hand_not_conserved")
def on_hand_stock_appears() -> tuple[str, InvariantReport]:
    place()
    cancel_order(place().order_id)
    place("tok_chargeDeclined")
    assert invariants_check(stock_baseline=BASELINE).ok
    Product.objects.filter(sku="EACH-A").update(stock_on_hand=F("stock_on_hand") + 1)
    return "product EACH-A", invariants_check(stock_baseline=BASELINE)


@case("stock.reservation_status_wrong")
def confirmed_order_with_released_stock() -> tuple[str, InvariantReport]:
    placed = place()
    Reservation.objects.filter(order_id=placed.order_id).update(
        status=ReservationStatus.RELEASED, released_key="manual", released_at=timezone.now()
    )
    return f"order {placed.order_id}", invariants_check()


@case("stock.reservation_lines_differ")
def reservation_for_other_quantities() -> tuple[str, InvariantReport]:
    placed = place()
    ReservationLine.objects.filter(
        reservation__order_id=placed.order_id, product__sku="EACH-A"
    ).update(quantity=3)
    return f"order {placed.order_id}", invariants_check()


@case("stock.reservation_without_order")
def reservation_of_a_missing_order() -> tuple[str, InvariantReport]:
    placed = place("tok_chargeDeclined")
    reservation = Reservation.objects.get(order_id=placed.order_id)
    # Released holds no stock, so only the order it names is wrong.
    Reservation.objects.filter(pk=reservation.pk).update(order_id=uuid4())
    return f"reservation {reservation.pk}", invariants_check()


@case("event_store.verify_problem")
def projection_differs_from_replay() -> tuple[str, InvariantReport]:
    placed = place()
    OrderSummary.objects.filter(pk=placed.order_id).update(total=Decimal("0.01"))
    return "event store", invariants_check()


@case("webhooks.missing_delivery")
def event_without_its_delivery() -> tuple[str, InvariantReport]:
    # Subscribed before the order, but the relay never ran: the confirmation has no delivery.
    endpoint_create(
        url="http://127.0.0.1:9/hook",
        event_types=["order.confirmed"],
        # The test's one transaction stamps its events with its start time.
        now=timezone.now() - timedelta(hours=1),
    )
    placed = place()
    (event_id,) = StoredEvent.objects.filter(
        stream_id=str(placed.order_id), event_type="OrderConfirmed"
    ).values_list("event_id", flat=True)
    return f"event:{event_id}", invariants_check()


# -- the tests -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def catalogue() -> None:
    for sku, stock in BASELINE.items():
        make_product(sku, stock=stock)


def rules_matching(violation: Violation) -> list[str]:
    return [
        name
        for name, rule in RULES.items()
        if rule.kind == violation.kind and re.search(rule.detail, violation.detail)
    ]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_rule_fires_alone_on_the_state_it_forbids(rule: str) -> None:
    subject, report = CASES[rule]()

    assert len(report.violations) == 1, "\n".join(map(str, report.violations))
    (violation,) = report.violations
    assert (violation.kind, violation.subject) == (RULES[rule].kind, subject)
    assert rules_matching(violation) == [rule], str(violation)


def test_a_clean_run_of_every_outcome_breaks_no_rule() -> None:
    place()
    place("tok_chargeDeclined")
    cancel_order(place().order_id)

    report = invariants_check(stock_baseline=BASELINE)

    assert report.violations == []
    assert report.by_kind("orders") == {"CONFIRMED": 1, "CANCELLED": 2}


def test_every_rule_in_the_checker_has_a_test_here() -> None:
    # Each rule is one violation a registered check's module builds: ``Violation(kind, …)``
    # or ``report.violation(kind, …)``, in every app's ``invariants`` module.
    discover()
    modules = {inspect.getmodule(check) for _area, check in registered_checks()}
    built: Counter[str] = Counter()
    for module in modules:
        assert module is not None
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if not isinstance(node, ast.Call):
                continue
            named = isinstance(node.func, ast.Name) and node.func.id == "Violation"
            method = isinstance(node.func, ast.Attribute) and node.func.attr == "violation"
            if named or method:
                kind = node.args[0]
                assert isinstance(kind, ast.Constant) and isinstance(kind.value, str), ast.unparse(
                    node
                )
                built[kind.value] += 1

    assert Counter(rule.kind for rule in RULES.values()) == built
    assert set(CASES) == set(RULES)
    assert len(RULES) == 26
