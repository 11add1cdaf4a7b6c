"""``seed_demo --orders``: a past day of orders through the real services."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from orders.models import OrderSummary
from orders.services import OrderLineRequest, order_place
from sagas.models import Saga, SagaStepExecution

# The history is built by threads, each on its own connection: they see committed rows only.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def debug_on(settings: Any) -> None:
    # pytest-django turns DEBUG off; seed_demo is a development tool.
    settings.DEBUG = True


def test_a_history_spreads_over_the_last_day_with_every_outcome_and_passes_the_checks() -> None:
    out = StringIO()
    began = timezone.now()

    call_command("seed_demo", "--orders", "80", "--jobs", "2", stdout=out)

    output = out.getvalue()
    orders = Counter(OrderSummary.objects.values_list("status", "cancellation_reason"))
    assert sum(orders.values()) == 80
    assert orders[("CONFIRMED", "")] > 40
    assert {"payment_declined", "out_of_stock", "cancelled_by_client"} <= {
        reason for _, reason in orders if reason
    }
    assert Counter(Saga.objects.values_list("status", flat=True)).keys() <= {
        "COMPLETED",
        "COMPENSATED",
    }
    # Spread over the day before the run: events, sagas and step logs alike.
    created = OrderSummary.objects.order_by("created_at").values_list("created_at", flat=True)
    assert began - timedelta(days=1) <= created[0] < began - timedelta(hours=12)
    assert began - timedelta(hours=2) < created[len(created) - 1] <= began
    assert len({at.hour for at in created}) >= 20
    attempts = SagaStepExecution.objects.values_list("at", flat=True)
    assert len(attempts) >= 3 * 80
    assert min(attempts) < began - timedelta(hours=12)
    assert "80/80" in output
    assert "History: 80 orders" in output
    assert "Cancelled by reason: " in output and "payment_declined" in output

    call_command("check_invariants", stdout=StringIO())
    call_command("verify_event_store", stdout=StringIO())

    # The past's time was this command's only: the next order is recorded now.
    placed = order_place(
        customer_id="c-after",
        lines=[OrderLineRequest(sku="SKU-1", quantity=1)],
        payment_token="tok_visa",
        actor="test",
    )
    assert placed.order.created_at >= began


def test_a_negative_count_is_refused() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--orders must not be negative"):
        call_command("seed_demo", "--orders", "-1", stdout=StringIO())
