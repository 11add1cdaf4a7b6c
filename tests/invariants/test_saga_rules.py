"""The sagas' rules in detail: every saga is judged, and the sweeper's grace is the boundary.

``test_each_rule_fires.py`` shows each rule firing alone on one broken saga. Here: a saga at
rest or waiting for an operator does not stop the next ones from being judged, and a claim
or a due step is flagged only once it is older than ``SAGA_SWEEP_GRACE_SECONDS`` (the
sweeper's own grace), by the clock the check is handed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from django.utils import timezone

from backoffice.invariants import InvariantReport, Violation, invariants_check
from orders.services import PLACE_ORDER, PlacedOrder
from sagas.faults import fault_rule_set
from sagas.models import Saga
from sagas.statuses import FaultMode, Phase, SagaStatus
from tests.factories import make_product
from tests.invariants.real_runs import place_order

# Plain (rolled back) transactions: nothing commits, so no step message reaches any worker.
pytestmark = pytest.mark.django_db

CATALOGUE = ("SAGA-A", "SAGA-B")
GRACE = timedelta(seconds=15)
T = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.get_current_timezone())


@pytest.fixture(autouse=True)
def catalogue(settings: Any) -> None:
    settings.SAGA_SWEEP_GRACE_SECONDS = GRACE.total_seconds()
    for sku in CATALOGUE:
        make_product(sku, stock=50)


def of_kind(report: InvariantReport, kind: str) -> list[Violation]:
    return [v for v in report.violations if v.kind == kind]


def subject(placed: PlacedOrder) -> str:
    return f"saga {PLACE_ORDER} {placed.saga_id}"


def test_every_saga_is_judged_after_one_at_rest() -> None:
    place_order(CATALOGUE)
    running = place_order(CATALOGUE, run=False)

    assert [v.subject for v in of_kind(invariants_check(), "saga")] == [subject(running)]


def test_every_saga_is_judged_after_one_waiting_for_an_operator() -> None:
    for step, phase, times in (
        ("charge_payment", Phase.COMPENSATION, None),
        ("confirm_order", Phase.ACTION, 1),
    ):
        fault_rule_set(
            saga_type=PLACE_ORDER, step=step, phase=phase, mode=FaultMode.PERMANENT, times=times
        )
    waiting = place_order(CATALOGUE)
    assert Saga.objects.get(pk=waiting.saga_id).status == SagaStatus.COMPENSATION_FAILED
    running = place_order(CATALOGUE, run=False)

    assert [v.subject for v in of_kind(invariants_check(), "saga")] == [subject(running)]


def test_every_saga_is_dispatch_checked_after_one_at_rest() -> None:
    place_order(CATALOGUE)
    stuck = place_order(CATALOGUE, run=False)
    Saga.objects.filter(pk=stuck.saga_id).update(due_at=None)

    found = of_kind(invariants_check(allow_in_flight=True), "dispatch")

    assert [v.subject for v in found] == [subject(stuck)]


def test_a_claim_is_stalled_only_once_its_lease_is_past_the_grace() -> None:
    placed = place_order(CATALOGUE, run=False)
    Saga.objects.filter(pk=placed.saga_id).update(
        due_at=None, claim_token=uuid4(), claimed_at=T - timedelta(minutes=1), lease_until=T
    )

    assert of_kind(invariants_check(allow_in_flight=True, now=T + GRACE), "dispatch") == []
    late = of_kind(
        invariants_check(allow_in_flight=True, now=T + GRACE + timedelta(0, 1)), "dispatch"
    )
    assert [v.subject for v in late] == [subject(placed)]


def test_a_due_step_is_unsent_only_once_due_past_the_grace() -> None:
    placed = place_order(CATALOGUE, run=False)
    Saga.objects.filter(pk=placed.saga_id).update(due_at=T, dispatched_at=None)

    assert of_kind(invariants_check(allow_in_flight=True, now=T + GRACE), "dispatch") == []
    late = invariants_check(allow_in_flight=True, now=T + GRACE + timedelta(0, 1))
    assert of_kind(late, "dispatch") == [
        Violation(
            "dispatch",
            subject(placed),
            f"reserve_inventory (action) due since {T.isoformat()}, message sent never: "
            "left unsent",
        )
    ]


def test_a_due_step_sent_within_the_grace_is_not_unsent() -> None:
    placed = place_order(CATALOGUE, run=False)
    sent = T + timedelta(hours=1)
    Saga.objects.filter(pk=placed.saga_id).update(due_at=T, dispatched_at=sent)

    assert of_kind(invariants_check(allow_in_flight=True, now=sent + GRACE), "dispatch") == []
    late = invariants_check(allow_in_flight=True, now=sent + GRACE + timedelta(0, 1))
    assert of_kind(late, "dispatch") == [
        Violation(
            "dispatch",
            subject(placed),
            f"reserve_inventory (action) due since {T.isoformat()}, message sent "
            f"{sent.isoformat()}: left unsent",
        )
    ]
