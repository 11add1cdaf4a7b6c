"""A refund retrying forward past the cancel saga's point of no return needs an operator.

The order back office's own case of the needs-attention queue: the cancel saga's refund is
its point of no return; a gateway that keeps timing out leaves the refund retrying forward
for ever. It shows in the queue and on the dashboard with why; skipping it with a reason
(the refund was made by hand) lets the saga restock and cancel the order. Driven in this
process (``sagas.tests.harness``), no worker.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from orders.domain import CancellationReason
from orders.models import OrderSummary
from orders.services import order_cancel_confirmed
from sagas.faults import fault_rule_set, fault_rules_clear
from sagas.models import NeedsAttention, Saga, SagaOperatorAction
from sagas.statuses import FaultMode, Phase, SagaStatus
from sagas.tests.harness import SteppingClock, drive, run_step, step_statuses
from tests.admin.support import confirmed_order, staff_client
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_a_refund_retrying_forward_is_queued_then_skipped_by_hand_and_the_order_cancelled() -> None:
    order_id = confirmed_order()
    fault_rule_set(
        saga_type="cancel_order",
        step="refund_payment",
        phase=Phase.ACTION,
        mode=FaultMode.TRANSIENT,
        times=None,
    )
    saga_id = order_cancel_confirmed(
        order_id=order_id, reason=CancellationReason.CANCELLED_BY_STAFF, actor="user:test"
    )
    clock = SteppingClock()
    for _ in range(30):
        if NeedsAttention.objects.filter(pk=saga_id).exists():
            break
        assert run_step(saga_id, clock=clock).ran
    saga = Saga.objects.get(pk=saga_id)
    assert (saga.status, saga.current_step) == (SagaStatus.RUNNING, "refund_payment")

    client, _ = staff_client()
    queue = client.get(reverse("admin:sagas_saga_needs_attention")).content.decode()
    assert str(saga_id) in queue
    assert "retrying forward past its point of no return" in queue

    operator = APIClient()
    operator.force_authenticate(
        make_user(staff=True, perms=("sagas.view_saga", "sagas.skip_compensation"))
    )
    skipped = operator.post(
        f"/api/sagas/{saga_id}/skip/", {"reason": "refunded by hand at the bank"}, format="json"
    )

    assert skipped.status_code == 202, skipped.content
    fault_rules_clear()
    assert drive(saga_id).status == SagaStatus.COMPLETED
    assert step_statuses(saga_id) == dict.fromkeys(
        ("check_cancellable", "refund_payment", "restock_items", "mark_cancelled"), "SUCCEEDED"
    )
    action = SagaOperatorAction.objects.get(saga_id=saga_id)
    assert (action.action, action.step, action.reason) == (
        "skip_step",
        "refund_payment",
        "refunded by hand at the bank",
    )
    call_command("run_projections")
    assert OrderSummary.objects.get(id=order_id).status == "CANCELLED"
    assert not NeedsAttention.objects.filter(pk=saga_id).exists()
