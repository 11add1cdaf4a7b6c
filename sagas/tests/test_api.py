"""The saga API: staff read sagas through the selectors; operators retry and skip."""

from __future__ import annotations

from uuid import uuid4

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from sagas.api import CanRetrySagas, CanSkipCompensations, SagaRetryView, SagaSkipView
from sagas.models import SagaStepExecution
from sagas.operations import RETRY, SKIP_STEP
from sagas.statuses import SagaStatus
from sagas.tests.harness import drive, failed_compensation_saga, start

pytestmark = pytest.mark.django_db


def test_the_list_filters_by_status_and_type_newest_first(operator) -> None:
    failed = failed_compensation_saga()
    done = start("test.effects", {})
    assert drive(done).status == SagaStatus.COMPLETED

    listed = operator.get("/api/sagas/").json()
    assert [s["id"] for s in listed["results"]] == [str(done), str(failed)]
    only_failed = operator.get("/api/sagas/", {"status": "COMPENSATION_FAILED"}).json()
    assert [s["id"] for s in only_failed["results"]] == [str(failed)]
    assert operator.get("/api/sagas/", {"type": "other"}).json()["count"] == 0
    assert operator.get("/api/sagas/", {"status": "NOPE"}).status_code == 400


def test_the_detail_shows_steps_log_and_failure(operator) -> None:
    saga_id = failed_compensation_saga()

    body = operator.get(f"/api/sagas/{saga_id}/").json()

    assert body["status"] == "COMPENSATION_FAILED"
    assert [step["name"] for step in body["steps"]] == ["a", "b", "c", "d"]
    assert body["log"] and body["failure"]["step"] == "d"
    assert body["operator_actions"] == []


def test_unknown_and_malformed_ids_are_404(operator) -> None:
    for path in (f"/api/sagas/{uuid4()}/", "/api/sagas/not-a-uuid/"):
        assert operator.get(path).status_code == 404
    assert operator.post(f"/api/sagas/{uuid4()}/retry/", {}, format="json").status_code == 404
    skip = operator.post(f"/api/sagas/{uuid4()}/skip/", {"reason": "x"}, format="json")
    assert skip.status_code == 404


def test_retry_and_skip_answer_with_the_detail_and_409_when_not_failed(operator) -> None:
    saga_id = failed_compensation_saga()

    skipped = operator.post(
        f"/api/sagas/{saga_id}/skip/", {"reason": "refunded by hand"}, format="json"
    )

    assert skipped.status_code == 202, skipped.content
    assert skipped.json()["operator_actions"][0]["reason"] == "refunded by hand"
    again = operator.post(f"/api/sagas/{saga_id}/retry/", {}, format="json")
    assert again.status_code == 409


def test_the_api_offers_the_described_operator_actions(operator) -> None:
    assert (SagaRetryView.operator_action, SagaSkipView.operator_action) == (RETRY, SKIP_STEP)
    assert (CanRetrySagas.perm, CanSkipCompensations.perm) == (
        RETRY.permission,
        SKIP_STEP.permission,
    )
    viewer = APIClient()
    viewer.force_authenticate(
        get_user_model().objects.create_user(username="viewer", is_staff=True)
    )
    refused = viewer.post(f"/api/sagas/{uuid4()}/skip/", {"reason": "x"}, format="json")
    assert (refused.status_code, refused.json()["detail"]) == (403, SKIP_STEP.denied)


def test_the_detail_pages_through_the_attempt_log(operator) -> None:
    saga_id = failed_compensation_saga()
    everything = list(
        SagaStepExecution.objects.filter(saga_id=saga_id)
        .order_by("at", "id")
        .values_list("step", "phase", "attempt")
    )
    assert len(everything) > 3

    first = operator.get(f"/api/sagas/{saga_id}/", {"log_page_size": 2}).json()
    second = operator.get(first["log_next"]).json()

    def entries(body: dict) -> list[tuple[str, str, int]]:
        return [(e["step"], e["phase"], e["attempt"]) for e in body["log"]]

    assert first["log_count"] == second["log_count"] == len(everything)
    assert (entries(first), entries(second)) == (everything[:2], everything[2:4])
    assert first["log_previous"] is None and "log_page=2" in first["log_next"]
    assert second["log_previous"] is not None
    # The rest of the detail is whole on every page.
    assert [s["name"] for s in second["steps"]] == ["a", "b", "c", "d"]
    assert operator.get(f"/api/sagas/{saga_id}/", {"log_page": 99}).status_code == 404
    assert operator.get(f"/api/sagas/{saga_id}/", {"log_page": "x"}).status_code == 400
