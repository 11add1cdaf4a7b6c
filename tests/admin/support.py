"""Build what the admin tests look at: staff clients, orders in each status, stuck sagas.

Sagas are driven in this process (``sagas.tests.harness.drive``), so no worker is needed.
"""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from orders.services import OrderLineRequest, PlacedOrder, order_place
from sagas.faults import fault_rule_set, fault_rules_clear
from sagas.models import Saga
from sagas.statuses import FaultMode, Phase, SagaStatus
from sagas.tests.harness import drive
from tests.factories import make_product, make_user

VIEW_ALL = (
    "orders.view_ordersummary",
    "sagas.view_saga",
    "eventstore.view_storedevent",
    "eventstore.view_projectioncheckpoint",
    "payments.view_payment",
    "inventory.view_product",
)


def staff_client(*perms: str, enforce_csrf: bool = False) -> tuple[Client, User]:
    """Return a client logged in as a staff user with the view permissions and ``perms``."""
    user = make_user(staff=True, perms=VIEW_ALL + perms)
    client = Client(enforce_csrf_checks=enforce_csrf)
    client.force_login(user)
    return client, user


def place(
    *,
    token: str = "tok_visa",
    customer: str = "c-1",
    sku: str | None = None,
    actor: str = "user:test",
) -> PlacedOrder:
    """Place an order for one unit of a fresh product (its saga not yet run past creation)."""
    product = make_product(sku)
    return order_place(
        customer_id=customer,
        lines=[OrderLineRequest(product.sku, 1)],
        payment_token=token,
        actor=actor,
    )


def confirmed_order(customer: str = "c-1") -> UUID:
    """Place an order and run its saga to CONFIRMED."""
    placed = place(customer=customer)
    assert drive(placed.saga_id).status == SagaStatus.COMPLETED
    return placed.order_id


def stuck_order() -> PlacedOrder:
    """Place an order whose payment is declined and whose stock release then fails for good.

    Its saga waits in COMPENSATION_FAILED at release_inventory, the order still PENDING.
    """
    fault_rule_set(
        saga_type="place_order",
        step="reserve_inventory",
        phase=Phase.COMPENSATION,
        mode=FaultMode.PERMANENT,
        times=None,
    )
    placed = place(token="tok_chargeDeclined")
    assert drive(placed.saga_id).status == SagaStatus.COMPENSATION_FAILED
    fault_rules_clear()
    return placed


def status_of(saga_id: UUID) -> str:
    return Saga.objects.values_list("status", flat=True).get(pk=saga_id)


def queries_for(client: Client, url: str) -> int:
    """Count the queries one GET of ``url`` makes (asserting it renders)."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(captured.captured_queries)
