"""Every user-visible order flow, end to end over HTTP, with a real Celery worker.

A live server (real sockets) serves the API; a real worker process runs the saga steps on
the same PostgreSQL test database and a real Redis broker. Each test places orders as a
client would and waits (bounded) until the saga settles, then checks the order, the saga,
the stock and the money.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
import requests

from inventory.models import Product
from orders.models import OrderSummary
from payments.models import SimulatedCharge, SimulatedRefund
from payments.selectors import payment_totals_for_order
from sagas.models import FaultRule, Saga
from tests.factories import make_product, make_user
from tests.support.worker import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

FINAL_SAGA = {"COMPLETED", "COMPENSATED", "COMPENSATION_FAILED"}


class Http:
    """A client system: token-authenticated JSON over a real socket."""

    def __init__(self, base: str, user: Any) -> None:
        from knox.models import AuthToken

        _, token = AuthToken.objects.create(user=user)
        self.base = base.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(self.base + path, params=params, timeout=30)

    def post(self, path: str, body: Any = None, **headers: str) -> requests.Response:
        return self.session.post(self.base + path, json=body, headers=headers, timeout=30)

    def place(self, sku: str, quantity: int, token: str = "tok_visa") -> dict[str, Any]:
        response = self.post(
            "/api/orders/",
            {
                "customer_id": "c-42",
                "items": [{"sku": sku, "quantity": quantity}],
                "payment_token": token,
            },
        )
        assert response.status_code == 202, response.text
        return response.json()

    def order(self, order_id: str) -> dict[str, Any]:
        response = self.get(f"/api/orders/{order_id}/")
        assert response.status_code == 200, response.text
        return response.json()

    def saga(self, saga_id: str) -> dict[str, Any]:
        response = self.get(f"/api/sagas/{saga_id}/")
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def client_http(live_server, live_worker) -> Http:
    return Http(live_server.url, make_user())


@pytest.fixture
def operator_http(live_server) -> Http:
    operator = make_user(
        staff=True,
        perms=(
            "orders.view_ordersummary",
            "sagas.view_saga",
            "sagas.retry_saga",
            "sagas.skip_compensation",
        ),
    )
    return Http(live_server.url, operator)


def settle(http: Http, operator: Http, order_id: str, *, saga_status: set[str] = FINAL_SAGA):
    """Wait until the order's newest saga reaches a final status; return order and saga."""

    def settled() -> tuple[dict[str, Any], dict[str, Any]] | None:
        saga_id = http.order(order_id)["saga"]["id"]
        saga = operator.saga(saga_id)
        if saga["status"] not in saga_status:
            return None
        # Read the order after the saga settled: everything the saga did is visible by now.
        order = http.order(order_id)
        return (order, saga) if order["saga"]["id"] == saga_id else None

    return wait_for(settled, timeout=60, interval=0.1, message=f"order {order_id}'s saga to settle")


def stock(sku: str) -> tuple[int, int]:
    product = Product.objects.get(sku=sku)
    return product.stock_on_hand, product.stock_reserved


def money(order_id: str) -> tuple[Decimal, Decimal]:
    charged, refunded = payment_totals_for_order(order_id=UUID(order_id))
    return charged, refunded


def fault(step: str, phase: str, mode: str = "permanent", times: int | None = None) -> None:
    from django.utils import timezone

    now = timezone.now()
    FaultRule.objects.update_or_create(
        saga_type="place_order",
        step=step,
        phase=phase,
        defaults={
            "mode": mode,
            "remaining": times,
            "hits": 0,
            "created_at": now,
            "updated_at": now,
        },
    )


def step_of(saga: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in saga["steps"] if s["name"] == name)


def test_an_order_is_confirmed(client_http, operator_http) -> None:
    make_product("E-1", price="4.50", stock=10)

    placed = client_http.place("E-1", 2)
    order, saga = settle(client_http, operator_http, placed["id"])

    assert (order["status"], order["cancellation_reason"]) == ("CONFIRMED", None)
    assert saga["status"] == "COMPLETED"
    assert [s["status"] for s in saga["steps"]] == ["SUCCEEDED"] * 4
    assert stock("E-1") == (8, 0)
    assert money(placed["id"]) == (Decimal("9.00"), Decimal("0"))
    events = client_http.get(f"/api/orders/{placed['id']}/events/").json()["results"]
    assert [e["type"] for e in events] == ["OrderCreated", "OrderConfirmed"]
    assert order["version"] == 2


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("tok_chargeDeclined", "card_declined"),
        ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ],
)
def test_a_declined_card_cancels_the_order_and_releases_the_stock(
    client_http, operator_http, token, code
) -> None:
    make_product("E-2", stock=10)

    placed = client_http.place("E-2", 3, token=token)
    order, saga = settle(client_http, operator_http, placed["id"])

    assert (order["status"], order["cancellation_reason"]) == ("CANCELLED", "payment_declined")
    assert saga["status"] == "COMPENSATED"
    assert saga["failure"]["code"] == "payment_declined"
    assert code in saga["failure"]["message"]
    assert [s["status"] for s in saga["steps"]] == [
        "COMPENSATED",
        "COMPENSATED",
        "FAILED",
        "PENDING",
    ]
    charge = step_of(saga, "charge_payment")
    assert charge["attempts"] == 1  # a business failure is not retried
    assert stock("E-2") == (10, 0)
    assert money(placed["id"]) == (Decimal("0"), Decimal("0"))


def test_out_of_stock_cancels_the_order_without_charging(client_http, operator_http) -> None:
    make_product("E-3", stock=2)

    placed = client_http.place("E-3", 5)
    order, saga = settle(client_http, operator_http, placed["id"])

    assert (order["status"], order["cancellation_reason"]) == ("CANCELLED", "out_of_stock")
    assert saga["status"] == "COMPENSATED"
    assert "E-3 (requested 5, available 2)" in saga["failure"]["message"]
    assert step_of(saga, "charge_payment")["attempts"] == 0
    assert stock("E-3") == (2, 0)
    assert money(placed["id"]) == (Decimal("0"), Decimal("0"))


def test_a_flaky_gateway_is_retried_and_charges_once(client_http, operator_http) -> None:
    make_product("E-4", price="2.00", stock=10)

    placed = client_http.place("E-4", 1, token="tok_flaky")
    order, saga = settle(client_http, operator_http, placed["id"])

    assert order["status"] == "CONFIRMED"
    assert saga["status"] == "COMPLETED"
    charge_log = [e for e in saga["log"] if e["step"] == "charge_payment"]
    assert [e["status"] for e in charge_log] == ["RETRYING", "RETRYING", "SUCCEEDED"]
    assert step_of(saga, "charge_payment")["attempts"] == 3
    assert money(placed["id"]) == (Decimal("2.00"), Decimal("0"))
    assert stock("E-4") == (9, 0)


def test_a_charge_whose_answer_was_lost_is_refunded_and_the_order_cancelled(
    client_http, operator_http
) -> None:
    # The processor takes the money and every answer times out: the charge retries, gives
    # up, and its compensation finds the charge at the processor and pays it back.
    make_product("E-L", price="3.00", stock=10)

    placed = client_http.place("E-L", 2, token="tok_lostResponse")
    order, saga = settle(client_http, operator_http, placed["id"])

    assert (order["status"], order["cancellation_reason"]) == ("CANCELLED", "step_failed")
    assert saga["status"] == "COMPENSATED"
    charge_log = [e for e in saga["log"] if e["step"] == "charge_payment"]
    assert [e["status"] for e in charge_log if e["phase"] == "action"][-1] == "FAILED"
    assert [e["status"] for e in charge_log if e["phase"] == "compensation"] == ["SUCCEEDED"]
    assert step_of(saga, "charge_payment")["status"] == "COMPENSATED"
    assert money(placed["id"]) == (Decimal("6.00"), Decimal("6.00"))
    taken = SimulatedCharge.objects.get(
        idempotency_key=f"{saga['id']}:charge_payment:action", outcome="APPROVED"
    )
    assert [r.amount for r in SimulatedRefund.objects.filter(charge=taken)] == [Decimal("6.00")]
    assert stock("E-L") == (10, 0)


def _failed_refund(client_http, operator_http) -> tuple[dict[str, Any], dict[str, Any]]:
    """Place an order whose confirmation fails after the charge and whose refund fails too."""
    make_product("E-5", price="7.00", stock=10)
    fault("confirm_order", "action", "permanent")
    fault("charge_payment", "compensation", "permanent")

    placed = client_http.place("E-5", 2)
    order, saga = settle(client_http, operator_http, placed["id"])

    assert saga["status"] == "COMPENSATION_FAILED"
    assert step_of(saga, "charge_payment")["status"] == "COMPENSATION_FAILED"
    assert "injected" in step_of(saga, "charge_payment")["last_error"]
    # Earlier compensations wait: the stock is still held, the order still pending.
    assert step_of(saga, "reserve_inventory")["status"] == "SUCCEEDED"
    assert order["status"] == "PENDING"
    assert stock("E-5") == (10, 2)
    assert money(placed["id"]) == (Decimal("14.00"), Decimal("0"))
    failed_list = operator_http.get("/api/sagas/", status="COMPENSATION_FAILED").json()
    assert saga["id"] in [s["id"] for s in failed_list["results"]]
    return order, saga


def test_a_failed_refund_waits_for_an_operator_retry_then_everything_is_undone(
    client_http, operator_http
) -> None:
    order, saga = _failed_refund(client_http, operator_http)
    FaultRule.objects.all().delete()

    response = operator_http.post(f"/api/sagas/{saga['id']}/retry/", {"reason": "gateway back"})
    assert response.status_code == 202, response.text
    order, saga = settle(client_http, operator_http, order["id"], saga_status={"COMPENSATED"})

    assert (order["status"], order["cancellation_reason"]) == ("CANCELLED", "step_failed")
    assert [s["status"] for s in saga["steps"]] == [
        "COMPENSATED",
        "COMPENSATED",
        "COMPENSATED",
        "FAILED",
    ]
    assert stock("E-5") == (10, 0)
    assert money(order["id"]) == (Decimal("14.00"), Decimal("14.00"))
    (action,) = saga["operator_actions"]
    assert action["action"] == "retry"
    assert action["reason"] == "gateway back"
    assert action["actor"].startswith("user:")
    again = operator_http.post(f"/api/sagas/{saga['id']}/retry/", {})
    assert again.status_code == 409


def test_a_failed_refund_skipped_by_an_operator_continues_the_compensation(
    client_http, operator_http
) -> None:
    order, saga = _failed_refund(client_http, operator_http)

    empty = operator_http.post(f"/api/sagas/{saga['id']}/skip/", {"reason": "  "})
    assert empty.status_code == 400
    response = operator_http.post(
        f"/api/sagas/{saga['id']}/skip/", {"reason": "refunded by hand in the gateway console"}
    )
    assert response.status_code == 202, response.text
    order, saga = settle(client_http, operator_http, order["id"], saga_status={"COMPENSATED"})

    assert step_of(saga, "charge_payment")["status"] == "SKIPPED"
    assert step_of(saga, "reserve_inventory")["status"] == "COMPENSATED"
    assert (order["status"], order["cancellation_reason"]) == ("CANCELLED", "step_failed")
    assert stock("E-5") == (10, 0)
    # The refund was done by hand outside the system: our records show the charge only.
    assert money(order["id"]) == (Decimal("14.00"), Decimal("0"))
    (action,) = saga["operator_actions"]
    assert action["action"] == "skip_compensation"
    assert action["reason"] == "refunded by hand in the gateway console"


def test_a_confirmed_order_is_cancelled_with_refund_and_restock(client_http, operator_http) -> None:
    make_product("E-6", price="3.00", stock=5)
    placed = client_http.place("E-6", 2)
    settle(client_http, operator_http, placed["id"])
    assert stock("E-6") == (3, 0)

    response = client_http.post(f"/api/orders/{placed['id']}/cancel/", {})
    assert response.status_code == 202, response.text
    assert response.json()["saga"]["type"] == "cancel_order"
    # Asked again: accepted while the cancel saga is under way (the same saga does the
    # work), a 409 once it has cancelled the order; the worker may finish it in between.
    again = client_http.post(f"/api/orders/{placed['id']}/cancel/", {})
    if again.status_code == 409:
        assert client_http.get(f"/api/orders/{placed['id']}/").json()["status"] == "CANCELLED"
    else:
        assert again.status_code == 202, again.text
        assert again.json()["saga"]["id"] == response.json()["saga"]["id"]
    order, saga = settle(client_http, operator_http, placed["id"])

    assert (order["status"], order["cancellation_reason"]) == ("CANCELLED", "cancelled_by_client")
    assert saga["type"] == "cancel_order" and saga["status"] == "COMPLETED"
    assert [s["type"] for s in order["sagas"]] == ["cancel_order", "place_order"]
    assert stock("E-6") == (5, 0)
    assert money(placed["id"]) == (Decimal("6.00"), Decimal("6.00"))
    assert client_http.post(f"/api/orders/{placed['id']}/cancel/", {}).status_code == 409
    assert Saga.objects.filter(saga_type="cancel_order").count() == 1


@contextlib.contextmanager
def held_at(step: str) -> Iterator[None]:
    """Hold the worker that claims ``step`` of place_order inside that attempt, until the end.

    The step gets a fault rule with one failure left, whose row this holds locked: the worker
    claims the attempt, then waits on the lock when it takes its fault (``sagas.faults``).
    Before letting go the rule is spent, so the attempt then runs normally.
    """
    fault(step, "action", "transient", times=1)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        from django.db import connection, transaction

        try:
            with transaction.atomic():
                rule = FaultRule.objects.select_for_update().get(
                    saga_type="place_order", step=step, phase="action"
                )
                locked.set()
                release.wait(timeout=120)
                FaultRule.objects.filter(pk=rule.pk).update(remaining=0)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(timeout=30)
        yield
    finally:
        release.set()
        holder.join(timeout=60)


def running_at(saga_id: str, step: str) -> Saga:
    """Wait until the saga's attempt at ``step`` is claimed (and held by :func:`held_at`)."""

    def claimed() -> Saga | None:
        saga = Saga.objects.get(pk=saga_id)
        return saga if saga.current_step == step and saga.claim_token else None

    return wait_for(claimed, timeout=30, message=f"saga {saga_id} to run {step}")


@pytest.mark.parametrize(
    ("step", "charged", "undone"),
    [
        # The request lands before the reservation is made: it is made, then released.
        ("reserve_inventory", Decimal("0"), ["COMPENSATED", "COMPENSATED", "PENDING", "PENDING"]),
        # After the reservation, before the charge: the charge is made, refunded.
        ("charge_payment", Decimal("8.00"), ["COMPENSATED"] * 3 + ["PENDING"]),
    ],
)
def test_a_pending_order_cancelled_while_a_step_runs_is_undone_after_it(
    client_http, operator_http, step, charged, undone
) -> None:
    make_product("E-P", price="4.00", stock=10)
    with held_at(step):
        placed = client_http.place("E-P", 2)
        running_at(placed["saga"]["id"], step)

        response = client_http.post(f"/api/orders/{placed['id']}/cancel/", {})

        assert response.status_code == 202, response.text
        assert response.json()["saga"]["type"] == "place_order"
        saga = Saga.objects.get(pk=placed["saga"]["id"])
        # The running step finishes first: the request is recorded and waits for it.
        assert (saga.status, saga.current_step, saga.stop_code) == (
            "RUNNING",
            step,
            "cancelled_by_client",
        )
    order, saga = settle(client_http, operator_http, placed["id"])

    assert (order["status"], order["cancellation_reason"]) == ("CANCELLED", "cancelled_by_client")
    assert saga["status"] == "COMPENSATED" and saga["failure"]["code"] == "cancelled_by_client"
    assert [s["status"] for s in saga["steps"]] == undone
    assert step_of(saga, step)["attempts"] == 1
    assert stock("E-P") == (10, 0)
    assert money(placed["id"]) == (charged, charged)
    assert client_http.post(f"/api/orders/{placed['id']}/cancel/", {}).status_code == 409


def test_a_cancel_racing_the_confirmation_is_followed_by_a_cancel_saga(
    client_http, operator_http
) -> None:
    make_product("E-R", price="4.00", stock=10)
    with held_at("confirm_order"):
        placed = client_http.place("E-R", 2)
        running_at(placed["saga"]["id"], "confirm_order")

        response = client_http.post(f"/api/orders/{placed['id']}/cancel/", {})

        assert response.status_code == 202, response.text
        assert response.json()["status"] == "PENDING"
        assert Saga.objects.get(pk=placed["saga"]["id"]).stop_code == "cancelled_by_client"
    # The confirmation commits first; its outcome sees the request and hands over.
    order, _ = settle(client_http, operator_http, placed["id"])

    assert (order["status"], order["cancellation_reason"]) == ("CANCELLED", "cancelled_by_client")
    assert [(s["type"], s["status"]) for s in order["sagas"]] == [
        ("cancel_order", "COMPLETED"),
        ("place_order", "COMPLETED"),
    ]
    events = client_http.get(f"/api/orders/{placed['id']}/events/").json()["results"]
    assert [e["type"] for e in events] == ["OrderCreated", "OrderConfirmed", "OrderCancelled"]
    assert stock("E-R") == (10, 0)
    assert money(placed["id"]) == (Decimal("8.00"), Decimal("8.00"))
    assert client_http.post(f"/api/orders/{placed['id']}/cancel/", {}).status_code == 409


def test_staff_cancel_a_pending_order_as_staff(client_http, operator_http) -> None:
    make_product("E-S", price="4.00", stock=10)
    staff = Http(
        operator_http.base,
        make_user(staff=True, perms=("orders.view_ordersummary", "orders.cancel_order")),
    )
    with held_at("charge_payment"):
        placed = client_http.place("E-S", 1)
        running_at(placed["saga"]["id"], "charge_payment")
        assert staff.post(f"/api/orders/{placed['id']}/cancel/", {}).status_code == 202
    order, _ = settle(client_http, operator_http, placed["id"])

    assert (order["status"], order["cancellation_reason"]) == ("CANCELLED", "cancelled_by_staff")
    assert stock("E-S") == (10, 0)
    assert money(placed["id"]) == (Decimal("4.00"), Decimal("4.00"))


def test_eight_concurrent_orders_for_the_last_three_units(client_http, operator_http) -> None:
    make_product("E-7", price="1.00", stock=3)
    placed: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)
    lowest = {"on_hand": 3, "available": 3}
    stop = threading.Event()

    def watch_stock() -> None:
        from django.db import connection

        try:
            while not stop.is_set():
                product = Product.objects.get(sku="E-7")
                lowest["on_hand"] = min(lowest["on_hand"], product.stock_on_hand)
                lowest["available"] = min(lowest["available"], product.stock_available)
        finally:
            connection.close()

    def place() -> None:
        barrier.wait(timeout=30)
        body = client_http.place("E-7", 1)
        with lock:
            placed.append(body["id"])

    watcher = threading.Thread(target=watch_stock)
    watcher.start()
    threads = [threading.Thread(target=place) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    outcomes = [settle(client_http, operator_http, oid)[0] for oid in placed]
    stop.set()
    watcher.join(timeout=30)

    statuses = sorted((o["status"], o["cancellation_reason"]) for o in outcomes)
    assert statuses == [("CANCELLED", "out_of_stock")] * 5 + [("CONFIRMED", None)] * 3
    assert stock("E-7") == (0, 0)
    assert lowest["on_hand"] >= 0 and lowest["available"] >= 0
    confirmed = [o["id"] for o in outcomes if o["status"] == "CONFIRMED"]
    assert all(money(oid) == (Decimal("1.00"), Decimal("0")) for oid in confirmed)
    assert OrderSummary.objects.filter(status="CONFIRMED").count() == 3
