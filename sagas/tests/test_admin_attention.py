"""The admin's "needs attention" queue: who is listed and why, and skipping a step by hand.

Sagas are driven in this process (no worker); the admin calls the same service as the API.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest
from django.contrib.messages import get_messages
from django.db.models.functions import Now
from django.urls import reverse

from sagas.models import Saga, SagaOperatorAction, SagaStep
from sagas.statuses import SagaStatus
from sagas.tests.harness import drive, failed_compensation_saga, start
from sagas.tests.test_needs_attention import retrying_forward_saga
from tests.admin.support import queries_for, staff_client, status_of

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:sagas_saga_changelist")
QUEUE = reverse("admin:sagas_saga_needs_attention")
SKIP_STEP = "skip_steps_needing_attention"


def late_saga() -> UUID:
    saga_id = start("test.effects")
    Saga.objects.filter(pk=saga_id).update(finish_by=Now() - timedelta(minutes=5))
    return saga_id


def test_the_queue_lists_each_saga_needing_attention_with_why() -> None:
    client, _ = staff_client()
    late, failed, forward = late_saga(), failed_compensation_saga(), retrying_forward_saga()
    fine = start("test.effects")

    response = client.get(QUEUE)

    html = response.content.decode()
    assert response.status_code == 200
    assert str(late) in html and str(failed) in html and str(forward) in html
    assert str(fine) not in html
    for why in (
        "past its deadline",
        "compensation failed",
        "retrying forward past its point of no return",
    ):
        assert why in html
    assert "b (action, RUNNING)" in html  # where the forward saga waits
    assert SagaStep.objects.get(saga_id=forward, name="b").last_error in html
    # The queue is linked from the sagas' changelist.
    assert QUEUE in client.get(CHANGELIST).content.decode()


def test_bulk_skip_step_requires_a_reason_then_moves_each_saga_on() -> None:
    client, user = staff_client("sagas.skip_compensation")
    late, fine = late_saga(), start("test.effects")
    data = {"action": SKIP_STEP, "_selected_action": [str(late), str(fine)]}

    ask = client.post(QUEUE, {**data, "index": "0"})
    assert ask.status_code == 200
    assert 'name="reason"' in ask.content.decode()
    refused = client.post(QUEUE, {**data, "post": "yes", "reason": " "})
    assert refused.status_code == 200 and "Please correct the error below." in (
        refused.content.decode()
    )
    assert not SagaOperatorAction.objects.exists()

    done = client.post(CHANGELIST, {**data, "post": "yes", "reason": "done by hand"}, follow=True)

    said = [str(m) for m in get_messages(done.wsgi_request)]
    assert any(f"Saga {late} skipped its step a by hand" in m for m in said), said
    assert any(f"Saga {fine}: not done" in m for m in said), said
    action = SagaOperatorAction.objects.get(saga_id=late)
    assert (action.action, action.actor, action.reason) == (
        "skip_step",
        f"user:{user.pk}",
        "done by hand",
    )
    assert drive(late).status == SagaStatus.COMPLETED
    page = client.get(reverse("admin:sagas_saga_change", args=[late])).content.decode()
    assert "skip step" in page and "done by hand" in page


def test_the_saga_page_offers_skip_step_behind_a_reason() -> None:
    client, _ = staff_client("sagas.skip_compensation")
    saga_id = retrying_forward_saga()
    url = reverse("admin:sagas_saga_skip_step", args=[saga_id])

    page = client.get(reverse("admin:sagas_saga_change", args=[saga_id])).content.decode()
    assert url in page and "retrying forward past its point of no return" in page
    assert 'name="reason"' in client.get(url).content.decode()
    client.post(url, {"post": "yes", "reason": ""})
    assert Saga.objects.get(pk=saga_id).current_step == "b"

    client.post(url, {"post": "yes", "reason": "the charge went through"})

    assert Saga.objects.get(pk=saga_id).current_step == "c"
    assert SagaOperatorAction.objects.get(saga_id=saga_id).reason == "the charge went through"


def test_staff_without_the_skip_permission_neither_see_nor_can_post_skip_step() -> None:
    client, _ = staff_client("sagas.retry_saga")
    saga_id = late_saga()
    url = reverse("admin:sagas_saga_skip_step", args=[saga_id])

    assert f'value="{SKIP_STEP}"' not in client.get(QUEUE).content.decode()
    page = client.get(reverse("admin:sagas_saga_change", args=[saga_id])).content.decode()
    assert url not in page and "past its deadline" in page
    data = {"action": SKIP_STEP, "_selected_action": [str(saga_id)], "post": "yes", "reason": "x"}
    assert client.post(QUEUE, data).status_code == 403
    assert client.post(url, {"post": "yes", "reason": "x"}).status_code == 403
    assert status_of(saga_id) == "RUNNING"
    assert not SagaOperatorAction.objects.exists()


def test_the_queue_queries_do_not_grow_with_rows() -> None:
    client, _ = staff_client("sagas.retry_saga", "sagas.skip_compensation")
    for _ in range(3):
        late_saga()
    queries_for(client, QUEUE)  # warm caches (content types, permissions)
    few = queries_for(client, QUEUE)
    for _ in range(12):
        late_saga()
    failed_compensation_saga()
    many = queries_for(client, QUEUE)

    assert few == many
