"""Admin pages: sagas are read-only with their steps and log; the fault plan is editable."""

from __future__ import annotations

import re
from datetime import timedelta
from uuid import uuid4

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from sagas.models import FaultRule, Saga, SagaStepExecution
from sagas.tests.harness import drive, start

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client: Client) -> Client:
    user = User.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def test_saga_pages_show_steps_and_log_and_allow_no_changes(staff: Client) -> None:
    saga_id = start("test.effects", {"fail_at": "c"}, subject="order:42")
    drive(saga_id)

    listing = staff.get(reverse("admin:sagas_saga_changelist"), {"status": "COMPENSATED"})
    assert listing.status_code == 200
    assert str(saga_id) in listing.content.decode()

    page = staff.get(reverse("admin:sagas_saga_change", args=[saga_id]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "test_failure" in html and "COMPENSATED" in html and "step log" in html.lower()
    assert 'name="_save"' not in html
    assert staff.get(reverse("admin:sagas_saga_add")).status_code == 403
    assert (
        staff.post(reverse("admin:sagas_saga_delete", args=[saga_id]), {"post": "yes"}).status_code
        == 403
    )
    assert Saga.objects.filter(pk=saga_id).exists()


def test_a_sagas_page_tells_the_attempts_lease_from_the_sagas_deadline(staff: Client) -> None:
    saga_id = start("test.effects")
    lease_until = timezone.now() + timedelta(seconds=40)
    Saga.objects.filter(pk=saga_id).update(
        due_at=None, claim_token=uuid4(), claimed_at=timezone.now(), lease_until=lease_until
    )

    html = staff.get(reverse("admin:sagas_saga_change", args=[saga_id])).content.decode()

    labels = re.findall(r"<label>([^<]*):</label>", html)
    assert "Attempt lease until" in labels and "Finish by" in labels
    assert "Deadline" not in labels


def test_fault_rules_are_edited_in_the_admin_with_validation(staff: Client) -> None:
    add = reverse("admin:sagas_faultrule_add")
    bad = staff.post(
        add, {"saga_type": "test.effects", "step": "zz", "phase": "action", "mode": "transient"}
    )
    assert bad.status_code == 200
    assert "has no step" in bad.content.decode()

    good = staff.post(
        add,
        {
            "saga_type": "test.effects",
            "step": "b",
            "phase": "action",
            "mode": "transient",
            "remaining": "2",
        },
    )
    assert good.status_code == 302
    rule = FaultRule.objects.get()
    assert (rule.step, rule.mode, rule.remaining, rule.hits) == ("b", "transient", 2, 0)
    assert rule.created_at is not None


def test_each_attempt_is_drawn_to_scale_within_the_sagas_span(staff: Client) -> None:
    saga_id = start("test.effects", {}, subject="order:43")
    drive(saga_id)
    saga = Saga.objects.get(pk=saga_id)
    t0 = saga.created_at
    Saga.objects.filter(pk=saga_id).update(finished_at=t0 + timedelta(seconds=10))
    SagaStepExecution.objects.filter(saga=saga).delete()
    for attempt, (begin, end, status) in enumerate(
        [(1, 3, "RETRYING"), (5, 5, "SUCCEEDED"), (None, 8, "WORKER_LOST")], start=1
    ):
        SagaStepExecution.objects.create(
            saga=saga,
            step="a",
            position=0,
            phase="action",
            attempt=attempt,
            status=status,
            started_at=t0 + timedelta(seconds=begin) if begin is not None else None,
            finished_at=t0 + timedelta(seconds=end) if begin is not None else None,
            at=t0 + timedelta(seconds=end),
        )

    html = staff.get(reverse("admin:sagas_saga_change", args=[saga_id])).content.decode()

    log = html.split('id="step-log"')[1].split("</table>")[0]
    spans = re.findall(r'class="span (\w+)" data-start="([\d.]+)" data-end="([\d.]+)"', log)
    # Seconds 1-3, 5 and 8 of a saga that ran for 10: an attempt with no start is an instant.
    assert spans == [
        ("RETRYING", "0.1000", "0.3000"),
        ("SUCCEEDED", "0.5000", "0.5000"),
        ("WORKER_LOST", "0.8000", "0.8000"),
    ]


def test_a_sagas_page_shows_its_log_a_page_at_a_time(staff: Client, monkeypatch) -> None:
    monkeypatch.setattr("sagas.admin.LOG_PER_PAGE", 2)
    saga_id = start("test.effects")
    drive(saga_id)  # steps a, b, c, d: four attempts logged
    url = reverse("admin:sagas_saga_change", args=[saga_id])

    def logged_steps(html: str) -> list[str]:
        log = html.split('id="step-log"')[1].split('id="operator-history"', maxsplit=1)[0]
        return re.findall(r"<td>([abcd])</td><td>action</td>", log)

    first = staff.get(url).content.decode()
    second = staff.get(url, {"log_page": 2}).content.decode()

    assert (logged_steps(first), logged_steps(second)) == (["a", "b"], ["c", "d"])
    assert "page 1 of 2 (4 attempts)" in first and "?log_page=2#step-log" in first
    assert "?log_page=1#step-log" in second
    # A page out of range or not a number shows the nearest page, never an error.
    assert logged_steps(staff.get(url, {"log_page": "99"}).content.decode()) == ["c", "d"]
    assert logged_steps(staff.get(url, {"log_page": "x"}).content.decode()) == ["a", "b"]
