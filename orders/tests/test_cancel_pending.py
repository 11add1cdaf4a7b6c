"""Cancelling a PENDING order at each boundary of its placing saga, steps driven one by one.

Real PostgreSQL, the real place_order saga and its participants; the steps run in this
process, one attempt at a time, so the request lands exactly at the boundary each test
names. The request while a step is running, and the race with the confirmation under a real
worker, are in tests/e2e/test_order_flows.py.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from inventory.models import Product
from orders.models import OrderSummary
from orders.sagas import PLACE_ORDER_SAGA
from payments.selectors import payment_totals_for_order
from sagas.claims import Claimed, attempt_claim
from sagas.definitions import StepCall, idempotency_key
from sagas.engine import Succeeded, decide
from sagas.faults import fault_rule_set, fault_rules_clear
from sagas.models import Saga, SagaStep
from sagas.recorder import AttemptRecord, Recorded, outcome_record
from sagas.services import StopVerdict, saga_request_stop
from sagas.statuses import FaultMode, Phase
from sagas.tests.harness import SteppingClock, drive, run_step
from sagas.workers import current_worker
from tests.factories import api_client, make_product, make_user

pytestmark = pytest.mark.django_db

URL = "/api/orders/"


@pytest.fixture
def client() -> APIClient:
    make_product("P-1", price="2.50", stock=10)
    return api_client(make_user())


def place(client: APIClient) -> tuple[str, UUID]:
    body = {
        "customer_id": "c-1",
        "items": [{"sku": "P-1", "quantity": 4}],
        "payment_token": "tok_visa",
    }
    response = client.post(URL, body, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"], UUID(response.json()["saga"]["id"])


def cancel(client: APIClient, order_id: str) -> int:
    return client.post(f"{URL}{order_id}/cancel/", {}, format="json").status_code


def stock() -> tuple[int, int]:
    product = Product.objects.get(sku="P-1")
    return product.stock_on_hand, product.stock_reserved


def money(order_id: str) -> tuple[Decimal, Decimal]:
    return payment_totals_for_order(order_id=UUID(order_id))


def steps(saga_id: UUID) -> dict[str, tuple[str, int]]:
    return {
        s.name: (s.status, s.action_attempts)
        for s in SagaStep.objects.filter(saga_id=saga_id).order_by("position")
    }


def ends_cancelled(order_id: str, saga_id: UUID, reason: str = "cancelled_by_client") -> Saga:
    saga = drive(saga_id)
    order = OrderSummary.objects.get(pk=order_id)
    assert (order.status, order.cancellation_reason) == ("CANCELLED", reason)
    assert saga.status == "COMPENSATED"
    assert (saga.failure_code, saga.stop_code) == (reason, reason)
    return saga


def test_before_the_reservation_nothing_is_reserved_or_charged(client) -> None:
    order_id, saga_id = place(client)

    assert cancel(client, order_id) == 202

    ends_cancelled(order_id, saga_id)
    assert steps(saga_id) == {
        "create_order": ("COMPENSATED", 1),
        "reserve_inventory": ("PENDING", 0),
        "charge_payment": ("PENDING", 0),
        "confirm_order": ("PENDING", 0),
    }
    assert stock() == (10, 0)
    assert money(order_id) == (Decimal("0"), Decimal("0"))


def test_after_the_reservation_it_is_released_and_nothing_charged(client) -> None:
    order_id, saga_id = place(client)
    run_step(saga_id)  # reserve_inventory
    assert stock() == (10, 4)

    assert cancel(client, order_id) == 202

    ends_cancelled(order_id, saga_id)
    assert steps(saga_id)["reserve_inventory"] == ("COMPENSATED", 1)
    assert steps(saga_id)["charge_payment"] == ("PENDING", 0)
    assert stock() == (10, 0)
    assert money(order_id) == (Decimal("0"), Decimal("0"))


def test_after_the_charge_it_is_refunded_and_the_reservation_released(client) -> None:
    order_id, saga_id = place(client)
    clock = SteppingClock()
    run_step(saga_id, clock=clock)  # reserve_inventory
    run_step(saga_id, clock=clock)  # charge_payment
    assert money(order_id) == (Decimal("10.00"), Decimal("0"))

    assert cancel(client, order_id) == 202

    ends_cancelled(order_id, saga_id)
    assert steps(saga_id)["charge_payment"] == ("COMPENSATED", 1)
    assert steps(saga_id)["confirm_order"] == ("PENDING", 0)
    assert stock() == (10, 0)
    assert money(order_id) == (Decimal("10.00"), Decimal("10.00"))


def test_a_request_during_a_retry_undoes_the_step_whose_outcome_is_unknown(client) -> None:
    order_id, saga_id = place(client)
    clock = SteppingClock()
    run_step(saga_id, clock=clock)  # reserve_inventory
    fault_rule_set(
        saga_type="place_order",
        step="charge_payment",
        phase=Phase.ACTION,
        mode=FaultMode.TRANSIENT,
        times=1,
    )
    run_step(saga_id, clock=clock)  # charge_payment fails, its retry waits
    fault_rules_clear()

    assert cancel(client, order_id) == 202

    # The charge may have gone through: its refund runs too (nothing to refund, here).
    ends_cancelled(order_id, saga_id)
    assert steps(saga_id)["charge_payment"] == ("COMPENSATED", 1)
    assert stock() == (10, 0)
    assert money(order_id) == (Decimal("0"), Decimal("0"))


def test_a_cancelled_order_is_a_409_and_a_repeated_request_while_stopping_a_202(client) -> None:
    order_id, saga_id = place(client)
    run_step(saga_id)

    assert cancel(client, order_id) == 202
    assert cancel(client, order_id) == 202  # under way: the first request stands
    assert Saga.objects.count() == 1
    ends_cancelled(order_id, saga_id)

    assert cancel(client, order_id) == 409
    assert Saga.objects.count() == 1


def test_a_placing_saga_that_failed_on_its_own_keeps_its_reason(client) -> None:
    Product.objects.filter(sku="P-1").update(stock_on_hand=1)
    order_id, saga_id = place(client)
    clock = SteppingClock()
    run_step(saga_id, clock=clock)  # out of stock: compensating already

    assert cancel(client, order_id) == 202

    saga = drive(saga_id, clock=clock)
    assert saga.status == "COMPENSATED" and saga.stop_code == ""
    order = OrderSummary.objects.get(pk=order_id)
    assert (order.status, order.cancellation_reason) == ("CANCELLED", "out_of_stock")
    assert cancel(client, order_id) == 409


def test_staff_cancel_someone_elses_pending_order_from_its_admin_page(client) -> None:
    order_id, saga_id = place(client)
    run_step(saga_id)  # reserve_inventory
    staff = make_user(
        staff=True, perms=("orders.cancel_order", "orders.view_ordersummary", "sagas.view_saga")
    )
    browser = Client()
    browser.force_login(staff)
    change = reverse("admin:orders_ordersummary_change", args=[order_id])
    cancel_url = reverse("admin:orders_ordersummary_cancel", args=[order_id])

    assert cancel_url in browser.get(change).content.decode()
    assert browser.post(cancel_url, {"post": "yes"}).status_code == 302

    saga = ends_cancelled(order_id, saga_id, reason="cancelled_by_staff")
    assert saga.stop_actor == f"user:{staff.pk}"
    saga_page = browser.get(reverse("admin:sagas_saga_change", args=[saga_id])).content.decode()
    assert "field-stop_code" in saga_page and f"user:{staff.pk}" in saga_page
    assert stock() == (10, 0)
    assert money(order_id) == (Decimal("0"), Decimal("0"))


def test_a_saga_that_completed_first_is_left_to_the_caller(client) -> None:
    order_id, saga_id = place(client)
    assert drive(saga_id).status == "COMPLETED"

    with transaction.atomic():
        verdict = saga_request_stop(saga_id=saga_id, code="cancelled_by_client", actor="x")

    assert verdict is StopVerdict.COMPLETED
    assert Saga.objects.get(pk=saga_id).stop_code == ""
    # The order is CONFIRMED by then: the service starts its cancel saga instead.
    assert cancel(client, order_id) == 202
    cancel_saga = Saga.objects.get(saga_type="cancel_order")
    assert drive(cancel_saga.pk).status == "COMPLETED"
    order = OrderSummary.objects.get(pk=order_id)
    assert (order.status, order.cancellation_reason) == ("CANCELLED", "cancelled_by_client")
    assert stock() == (10, 0)
    assert money(order_id) == (Decimal("10.00"), Decimal("10.00"))


def claim_confirmation(saga_id: UUID, clock: SteppingClock) -> Claimed:
    """Claim confirm_order as a worker would (loading the saga as it is now)."""
    run_step(saga_id, clock=clock)  # reserve_inventory
    run_step(saga_id, clock=clock)  # charge_payment
    claimed = attempt_claim(
        saga_id=saga_id,
        step="confirm_order",
        phase=Phase.ACTION,
        worker=current_worker("inline"),
        now=clock(),
    )
    assert isinstance(claimed, Claimed)
    return claimed


def confirm(saga_id: UUID, claimed: Claimed) -> None:
    """Run confirm_order's participant for the claimed attempt (the order becomes CONFIRMED)."""
    PLACE_ORDER_SAGA.step("confirm_order").action(
        StepCall(
            saga_id=saga_id,
            saga_type="place_order",
            step="confirm_order",
            phase="action",
            attempt=1,
            idempotency_key=idempotency_key(saga_id=saga_id, step="confirm_order", phase="action"),
            context=claimed.context,
            correlation_id=claimed.correlation_id,
            actor=claimed.loaded.saga.actor,
        )
    )


def record_success(claimed: Claimed, clock: SteppingClock) -> Recorded:
    """Record the claimed attempt's success from the saga as the worker loaded it."""
    return outcome_record(
        claimed.loaded,
        lambda definition, state: decide(definition, state, Succeeded(None), rand=0.5),
        now=clock(),
        attempt=AttemptRecord(attempt=1, started_at=claimed.started_at, worker="inline"),
    )


def ends_cancelled_by_a_cancel_saga(order_id: str, clock: SteppingClock) -> None:
    (cancel_saga,) = Saga.objects.filter(saga_type="cancel_order")
    assert cancel_saga.context["reason"] == "cancelled_by_client"
    assert drive(cancel_saga.pk, clock=clock).status == "COMPLETED"
    order = OrderSummary.objects.get(pk=order_id)
    assert (order.status, order.cancellation_reason) == ("CANCELLED", "cancelled_by_client")
    assert stock() == (10, 0)
    assert money(order_id) == (Decimal("10.00"), Decimal("10.00"))


def test_a_confirmation_running_when_the_request_lands_hands_over_to_a_cancel_saga(
    client,
) -> None:
    # The worker's side of confirm_order, cut in two around the request: it claimed the step
    # (loading the saga before any request), the request lands, the participant confirms,
    # then the outcome is recorded from the saga as the worker loaded it.
    order_id, saga_id = place(client)
    clock = SteppingClock()
    claimed = claim_confirmation(saga_id, clock)

    assert cancel(client, order_id) == 202  # the order is PENDING: the request waits

    saga = Saga.objects.get(pk=saga_id)
    assert (saga.status, saga.current_step, saga.stop_code) == (
        "RUNNING",
        "confirm_order",
        "cancelled_by_client",
    )
    confirm(saga_id, claimed)
    assert OrderSummary.objects.get(pk=order_id).status == "CONFIRMED"
    recorded = record_success(claimed, clock)

    # Decided again with the request seen: completed too late to stop, handed over.
    assert recorded.applied and recorded.transition.stopped_late
    assert Saga.objects.get(pk=saga_id).status == "COMPLETED"
    assert Saga.objects.get(saga_type="cancel_order").actor == claimed.loaded.saga.actor
    ends_cancelled_by_a_cancel_saga(order_id, clock)


def test_a_request_after_the_confirmation_committed_starts_the_cancel_saga_itself(
    client,
) -> None:
    # The order reads CONFIRMED while its placing saga is still RUNNING (its outcome not
    # yet recorded): the request starts the cancel saga; the placing saga completes unasked.
    order_id, saga_id = place(client)
    clock = SteppingClock()
    claimed = claim_confirmation(saga_id, clock)
    confirm(saga_id, claimed)

    assert cancel(client, order_id) == 202

    assert Saga.objects.get(pk=saga_id).stop_code == ""
    recorded = record_success(claimed, clock)
    assert recorded.applied and not recorded.transition.stopped_late
    ends_cancelled_by_a_cancel_saga(order_id, clock)
