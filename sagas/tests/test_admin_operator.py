"""The failed-compensation queue, retry and skip in the admin, their permissions and cost.

Sagas are driven in this process (no worker); the admin calls the same services as the API.
"""

from __future__ import annotations

import re
from uuid import UUID

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from sagas.models import (
    FailedCompensation,
    Saga,
    SagaOperatorAction,
    SagaStep,
    SagaStepExecution,
)
from sagas.statuses import SagaStatus
from sagas.tests.harness import drive, fail_b_compensation, failed_compensation_saga, start
from tests.admin.support import queries_for, staff_client, status_of

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:sagas_saga_changelist")
QUEUE = reverse("admin:sagas_saga_failed_compensations")
RETRY = "retry_failed_compensations"
SKIP = "skip_failed_compensations"


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def action_post(client: Client, url: str, action: str, ids: list[UUID], **extra: str):
    data = {"action": action, "_selected_action": [str(i) for i in ids], **extra}
    return client.post(url, data, follow="post" in extra)


def test_queue_lists_only_failed_compensations_with_failing_step_and_error() -> None:
    client, _ = staff_client()
    stuck = failed_compensation_saga()
    fine = start("test.effects", {})
    drive(fine)

    response = client.get(QUEUE)

    html = response.content.decode()
    assert response.status_code == 200
    assert "Failed compensations" in html
    assert str(stuck) in html and str(fine) not in html
    assert "b (compensation)" in html
    error = SagaStep.objects.get(saga_id=stuck, name="b").last_error
    assert error and error in html
    assert "d: test_failure" in html  # why it compensates


def test_changelist_filters_by_type_status_and_correlation_id() -> None:
    client, _ = staff_client()
    stuck = failed_compensation_saga(correlation_id="corr-stuck")
    other = start("test.local", {}, correlation_id="corr-other")

    by_status = client.get(CHANGELIST, {"status__exact": "COMPENSATION_FAILED"}).content.decode()
    by_type = client.get(CHANGELIST, {"saga_type": "test.local"}).content.decode()
    by_corr = client.get(CHANGELIST, {"correlation_id": "corr-stuck"}).content.decode()

    assert str(stuck) in by_status and str(other) not in by_status
    assert str(other) in by_type and str(stuck) not in by_type
    assert str(stuck) in by_corr and str(other) not in by_corr
    for term in (str(stuck), "corr-stuck"):
        found = client.get(CHANGELIST, {"q": term}).content.decode()
        assert str(stuck) in found and str(other) not in found
    assert 'href="' + QUEUE + '"' in client.get(CHANGELIST).content.decode()


def test_bulk_retry_asks_for_confirmation_then_retries_each_saga() -> None:
    client, user = staff_client("sagas.retry_saga")
    first, second = failed_compensation_saga(), failed_compensation_saga()

    confirm = action_post(client, QUEUE, RETRY, [first, second], index="0")

    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert "Retry failed compensations" in html and "Yes, retry" in html
    assert str(first) in html and str(second) in html
    assert {status_of(first), status_of(second)} == {"COMPENSATION_FAILED"}

    done = action_post(client, QUEUE, RETRY, [first, second], post="yes")

    assert done.status_code == 200 and done.redirect_chain[-1][0].startswith(QUEUE)
    assert {status_of(first), status_of(second)} == {"COMPENSATING"}
    notes = messages_of(done)
    assert any(str(first) in m and "retried" in m for m in notes)
    assert any(str(second) in m and "retried" in m for m in notes)
    action = SagaOperatorAction.objects.get(saga_id=first)
    assert (action.action, action.actor, action.step) == ("retry", f"user:{user.pk}", "b")
    assert drive(first).status == SagaStatus.COMPENSATED


def test_bulk_retry_reports_sagas_that_are_not_waiting_one_by_one() -> None:
    client, _ = staff_client("sagas.retry_saga")
    stuck = failed_compensation_saga()
    done = start("test.effects", {})
    drive(done)

    response = action_post(client, CHANGELIST, RETRY, [stuck, done], post="yes")

    notes = messages_of(response)
    assert any(str(stuck) in m and "retried" in m for m in notes)
    assert any(str(done) in m and "not done" in m and "COMPLETED" in m for m in notes)
    assert status_of(stuck) == "COMPENSATING" and status_of(done) == "COMPLETED"


def test_bulk_skip_requires_a_reason_and_records_it() -> None:
    client, user = staff_client("sagas.skip_compensation")
    first, second = failed_compensation_saga(), failed_compensation_saga()

    ask = action_post(client, CHANGELIST, SKIP, [first, second], index="0")
    assert ask.status_code == 200
    assert 'name="reason"' in ask.content.decode()

    refused = client.post(
        CHANGELIST,
        {
            "action": SKIP,
            "_selected_action": [str(first), str(second)],
            "post": "yes",
            "reason": " ",
        },
    )
    assert refused.status_code == 200
    # A blank reason (the form strips it) is refused on the reason field itself.
    refusal = refused.content.decode()
    assert "Please correct the error below." in refusal
    assert re.search(
        r'<div class="form-row errors">\s*<ul class="errorlist[^"]*"[^>]*>'
        r"\s*<li>This field is required.</li>",
        refusal,
    ), refusal
    assert {status_of(first), status_of(second)} == {"COMPENSATION_FAILED"}

    done = action_post(
        client, CHANGELIST, SKIP, [first, second], post="yes", reason="refunded by hand"
    )

    assert {status_of(first), status_of(second)} == {"COMPENSATING"}
    assert SagaStep.objects.get(saga_id=first, name="b").status == "SKIPPED"
    assert len([m for m in messages_of(done) if "skipped" in m]) == 2
    action = SagaOperatorAction.objects.get(saga_id=second)
    assert (action.action, action.actor, action.reason) == (
        "skip_compensation",
        f"user:{user.pk}",
        "refunded by hand",
    )
    assert drive(first).status == SagaStatus.COMPENSATED
    page = client.get(reverse("admin:sagas_saga_change", args=[first])).content.decode()
    assert "refunded by hand" in page and user.username in page and "skip compensation" in page


def test_single_retry_from_the_saga_page_goes_through_a_confirmation_page() -> None:
    client, _ = staff_client("sagas.retry_saga", "sagas.skip_compensation")
    saga_id = failed_compensation_saga()
    retry_url = reverse("admin:sagas_saga_retry", args=[saga_id])

    page = client.get(reverse("admin:sagas_saga_change", args=[saga_id])).content.decode()
    assert retry_url in page and reverse("admin:sagas_saga_skip", args=[saga_id]) in page

    confirm = client.get(retry_url)
    assert confirm.status_code == 200 and "Yes, retry" in confirm.content.decode()
    assert status_of(saga_id) == "COMPENSATION_FAILED"

    done = client.post(retry_url, {"post": "yes"}, follow=True)
    assert done.redirect_chain[0][0] == reverse("admin:sagas_saga_change", args=[saga_id])
    assert status_of(saga_id) == "COMPENSATING"
    assert any("retried" in m for m in messages_of(done))
    # Once it moves on, the buttons are gone and a second retry is refused with a message.
    page = client.get(reverse("admin:sagas_saga_change", args=[saga_id])).content.decode()
    assert retry_url not in page
    again = client.post(retry_url, {"post": "yes"}, follow=True)
    assert any("not done" in m for m in messages_of(again))


def test_single_skip_asks_for_a_reason() -> None:
    client, _ = staff_client("sagas.skip_compensation")
    saga_id = failed_compensation_saga()
    skip_url = reverse("admin:sagas_saga_skip", args=[saga_id])

    assert 'name="reason"' in client.get(skip_url).content.decode()
    refused = client.post(skip_url, {"post": "yes", "reason": ""})
    assert refused.status_code == 200 and status_of(saga_id) == "COMPENSATION_FAILED"

    client.post(skip_url, {"post": "yes", "reason": "released by hand"})
    assert status_of(saga_id) == "COMPENSATING"
    assert SagaOperatorAction.objects.get(saga_id=saga_id).reason == "released by hand"


@pytest.mark.parametrize(
    ("granted", "denied_action", "denied_url"),
    [
        ("sagas.skip_compensation", RETRY, "admin:sagas_saga_retry"),
        ("sagas.retry_saga", SKIP, "admin:sagas_saga_skip"),
    ],
)
def test_staff_without_the_permission_neither_see_nor_can_post_the_action(
    granted: str, denied_action: str, denied_url: str
) -> None:
    client, _ = staff_client(granted)
    saga_id = failed_compensation_saga()

    queue = client.get(QUEUE).content.decode()
    assert f'value="{denied_action}"' not in queue
    page = client.get(reverse("admin:sagas_saga_change", args=[saga_id])).content.decode()
    assert reverse(denied_url, args=[saga_id]) not in page

    assert action_post(client, QUEUE, denied_action, [saga_id], index="0").status_code == 403
    assert action_post(client, QUEUE, denied_action, [saga_id], post="yes").status_code == 403
    url = reverse(denied_url, args=[saga_id])
    assert client.get(url).status_code == 403
    assert client.post(url, {"post": "yes", "reason": "x"}).status_code == 403
    assert status_of(saga_id) == "COMPENSATION_FAILED"
    assert not SagaOperatorAction.objects.exists()


def test_staff_with_both_permissions_see_both_actions() -> None:
    client, _ = staff_client("sagas.retry_saga", "sagas.skip_compensation")
    failed_compensation_saga()

    queue = client.get(QUEUE).content.decode()

    assert f'value="{RETRY}"' in queue and f'value="{SKIP}"' in queue
    assert 'value="delete_selected"' not in queue


def test_operator_posts_need_a_csrf_token() -> None:
    client, _ = staff_client("sagas.retry_saga", "sagas.skip_compensation", enforce_csrf=True)
    saga_id = failed_compensation_saga()

    bulk = action_post(client, QUEUE, RETRY, [saga_id], post="yes")
    single = client.post(reverse("admin:sagas_saga_retry", args=[saga_id]), {"post": "yes"})
    skip = client.post(
        reverse("admin:sagas_saga_skip", args=[saga_id]), {"post": "yes", "reason": "x"}
    )

    assert (bulk.status_code, single.status_code, skip.status_code) == (403, 403, 403)
    assert status_of(saga_id) == "COMPENSATION_FAILED"


def test_sagas_cannot_be_added_changed_or_deleted() -> None:
    client, _ = staff_client("sagas.retry_saga", "sagas.skip_compensation")
    saga_id = failed_compensation_saga()
    change = reverse("admin:sagas_saga_change", args=[saga_id])

    assert client.get(reverse("admin:sagas_saga_add")).status_code == 403
    assert client.post(change, {"status": "COMPENSATED"}).status_code == 403
    delete = reverse("admin:sagas_saga_delete", args=[saga_id])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert status_of(saga_id) == "COMPENSATION_FAILED"


def test_saga_page_shows_step_timeline_log_and_operator_history() -> None:
    client, _ = staff_client("sagas.retry_saga")
    saga_id = failed_compensation_saga()
    client.post(reverse("admin:sagas_saga_retry", args=[saga_id]), {"post": "yes"})

    html = client.get(reverse("admin:sagas_saga_change", args=[saga_id])).content.decode()

    for text in ("Step timeline", "Step log", "Operator history", "action attempts", "took"):
        assert text in html
    for step in ("a", "b", "c", "d"):
        assert f"<td>{step}</td>" in html
    assert "injected permanent fault in b compensation" in html
    assert ">retry<" in html


# --- no N+1: the same number of queries for few rows and for many ----------------------


@pytest.mark.internals
def test_changelist_and_queue_queries_do_not_grow_with_rows() -> None:
    client, _ = staff_client("sagas.retry_saga", "sagas.skip_compensation")
    for _ in range(3):
        failed_compensation_saga()
    queries_for(client, CHANGELIST)  # warm caches (content types, permissions)
    few = (queries_for(client, CHANGELIST), queries_for(client, QUEUE))
    for _ in range(27):
        failed_compensation_saga()
    many = (queries_for(client, CHANGELIST), queries_for(client, QUEUE))

    print(f"\nsaga changelist, queue: {few} queries with 3 rows, {many} with 30")
    assert Saga.objects.count() == 30
    assert few == many


@pytest.mark.internals
def test_saga_page_queries_do_not_grow_with_attempts_and_operator_actions() -> None:
    client, _ = staff_client("sagas.retry_saga")
    saga_id = failed_compensation_saga()
    url = reverse("admin:sagas_saga_change", args=[saga_id])

    def fail_again_after_retry() -> None:
        # Retry while the fault is still there: the compensation fails again, and waits.
        fail_b_compensation()
        client.post(reverse("admin:sagas_saga_retry", args=[saga_id]), {"post": "yes"})
        assert drive(saga_id).status == SagaStatus.COMPENSATION_FAILED

    fail_again_after_retry()
    queries_for(client, url)
    few = queries_for(client, url)
    log_before = SagaStepExecution.objects.filter(saga_id=saga_id).count()
    for _ in range(5):
        fail_again_after_retry()
    many = queries_for(client, url)

    log_after = SagaStepExecution.objects.filter(saga_id=saga_id).count()
    print(f"\nsaga page: {few} queries with {log_before} attempts, {many} with {log_after}")
    assert SagaOperatorAction.objects.filter(saga_id=saga_id).count() == 6
    assert few == many


def test_the_queue_is_the_failed_compensation_models_own_admin_linking_to_each_sagas_page() -> None:
    client, _ = staff_client("sagas.retry_saga")
    stuck = failed_compensation_saga()
    drive(start("test.effects", {}))

    response = client.get(reverse("admin:sagas_failedcompensation_changelist"))

    assert list(FailedCompensation.objects.values_list("id", flat=True)) == [stuck]
    html = response.content.decode()
    assert response.status_code == 200
    assert reverse("admin:sagas_saga_change", args=[stuck]) in html
    assert reverse("admin:sagas_failedcompensation_change", args=[stuck]) not in html
    assert RETRY in html and "All sagas" in html
