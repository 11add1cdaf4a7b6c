"""The series the dashboard's charts draw, read from real rows in PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.urls import reverse

from backoffice import dashboard as dashboard_module
from backoffice.dashboard import chart_hours, failed_compensations_chart
from orders.models import OrderSummary
from orders.selectors import orders_per_hour
from sagas.models import Saga, SagaStepExecution
from sagas.operations import saga_skip_compensation
from sagas.selectors import (
    failed_compensation_changes,
    saga_outcomes_since,
    step_latency_percentiles,
)
from sagas.statuses import AttemptStatus, Phase
from tests.admin.support import confirmed_order, place, queries_for, staff_client, stuck_order

pytestmark = pytest.mark.django_db

INDEX = reverse("admin:index")


def _hour(now: datetime, back: int) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=back)


def _values(svg: str, mark: str = "circle") -> list[str]:
    return re.findall(rf'<{mark} class="[^"]+" [^>]*data-value="([^"]+)"', svg)


def test_orders_per_hour_counts_each_hour_by_status_within_the_window() -> None:
    now = datetime.now(UTC)
    confirmed = confirmed_order()
    pending = place().order_id
    earlier = place().order_id
    too_old = place().order_id
    OrderSummary.objects.filter(pk=earlier).update(created_at=_hour(now, 5) + timedelta(minutes=7))
    OrderSummary.objects.filter(pk=too_old).update(created_at=now - timedelta(hours=30))

    counts = orders_per_hour(since=_hour(now, 23), until=_hour(now, -1))

    assert counts == {
        (_hour(now, 0), "CONFIRMED"): 1,
        (_hour(now, 0), "PENDING"): 1,
        (_hour(now, 5), "PENDING"): 1,
    }
    assert OrderSummary.objects.get(pk=confirmed).status == "CONFIRMED"
    assert OrderSummary.objects.get(pk=pending).status == "PENDING"


def test_saga_outcomes_count_the_sagas_started_in_the_window_by_type_and_status() -> None:
    now = datetime.now(UTC)
    stuck_order()
    confirmed_order()
    place()
    old = place()
    Saga.objects.filter(pk=old.saga_id).update(created_at=now - timedelta(days=2))

    assert saga_outcomes_since(since=now - timedelta(hours=24)) == {
        ("place_order", "COMPENSATION_FAILED"): 1,
        ("place_order", "COMPLETED"): 1,
        ("place_order", "RUNNING"): 1,
    }


def _attempt(saga: Saga, step: str, phase: Phase, ms: float | None, *, at: datetime) -> None:
    started = at - timedelta(milliseconds=ms) if ms is not None else None
    SagaStepExecution.objects.create(
        saga=saga,
        step=step,
        position={"reserve_inventory": 1, "charge_payment": 2}[step],
        phase=phase,
        attempt=1,
        status=AttemptStatus.SUCCEEDED,
        started_at=started,
        finished_at=at if ms is not None else None,
        at=at,
    )


def test_step_latency_percentiles_per_step_and_phase_in_the_window() -> None:
    now = datetime.now(UTC)
    saga = Saga.objects.get(pk=place().saga_id)
    SagaStepExecution.objects.filter(saga=saga).delete()  # only the attempts made here
    for ms in range(1, 101):  # 1 ms .. 100 ms
        _attempt(saga, "charge_payment", Phase.ACTION, ms, at=now)
    _attempt(saga, "charge_payment", Phase.ACTION, 5000, at=now - timedelta(hours=30))  # too old
    _attempt(saga, "charge_payment", Phase.ACTION, None, at=now)  # no start: not timed
    for ms in (10, 30):
        _attempt(saga, "reserve_inventory", Phase.ACTION, ms, at=now)
    _attempt(saga, "reserve_inventory", Phase.COMPENSATION, 8, at=now)

    rows = step_latency_percentiles(since=now - timedelta(hours=24))

    # In the steps' order, an action before its compensation.
    assert [(r.step, r.phase, r.attempts) for r in rows] == [
        ("reserve_inventory", "action", 2),
        ("reserve_inventory", "compensation", 1),
        ("charge_payment", "action", 100),
    ]
    reserve, undo, charge = rows
    assert (reserve.p50, reserve.p90) == pytest.approx((0.020, 0.028))
    assert (undo.p50, undo.p99) == pytest.approx((0.008, 0.008))
    # percentile_cont interpolates: 50.5 ms, 90.1 ms and 99.01 ms of 1..100 ms.
    assert (charge.p50, charge.p90, charge.p99) == pytest.approx((0.0505, 0.0901, 0.09901))


def test_step_latency_reads_only_the_newest_attempts() -> None:
    now = datetime.now(UTC)
    saga = Saga.objects.get(pk=place().saga_id)
    SagaStepExecution.objects.filter(saga=saga).delete()
    for ms in (900, 900, 900):
        _attempt(saga, "charge_payment", Phase.ACTION, ms, at=now)
    for ms in (10, 20):
        _attempt(saga, "charge_payment", Phase.ACTION, ms, at=now)

    (row,) = step_latency_percentiles(since=now - timedelta(hours=1), newest=2)

    assert row.attempts == 2
    assert row.p50 == pytest.approx(0.015)


def test_failed_compensations_enter_by_the_recorder_and_leave_by_an_operator() -> None:
    first = stuck_order()
    stuck_order()
    saga_skip_compensation(saga_id=first.saga_id, actor="user:test", reason="refunded by hand")
    now = datetime.now(UTC)

    changes = failed_compensation_changes(since=_hour(now, 23))

    assert changes == {_hour(now, 0): (2, 1)}
    assert failed_compensation_changes(since=now + timedelta(minutes=1)) == {}


def test_the_waiting_line_walks_back_from_the_count_now() -> None:
    first = stuck_order()
    stuck_order()
    saga_skip_compensation(saga_id=first.saga_id, actor="user:test", reason="refunded by hand")
    # Seen from three hours later: the hour of the changes is the fourth from the end.
    hours = chart_hours(datetime.now(UTC) + timedelta(hours=3))

    svg = failed_compensations_chart(hours, waiting_now=1)

    values = _values(svg)
    assert len(values) == 24
    # Nothing waited before that hour; two entered and one left during it; one waits since.
    assert values == ["0"] * 20 + ["1", "1", "1", "1"]


def test_dashboard_shows_the_four_charts_with_what_happened() -> None:
    client, _ = staff_client()
    stuck_order()
    confirmed_order()

    html = client.get(reverse("admin:index")).content.decode()

    charts = html.split('id="dashboard-charts"')[1].split('id="dashboard-projections"')[0]
    keys = re.findall(r'<figure class="backoffice-chart-box" id="chart-([a-z-]+)"', charts)
    assert keys == ["orders-per-hour", "saga-outcomes", "step-latency", "failed-compensations"]
    orders = charts.split('id="chart-orders-per-hour"')[1].split("</figure>")[0]
    drawn = re.findall(r'data-series="(\w+)" data-category="[^"]+" data-value="(\d+)"', orders)
    assert sorted(drawn) == [("CONFIRMED", "1"), ("PENDING", "1")]
    latency = charts.split('id="chart-step-latency"')[1].split("</figure>")[0]
    steps = set(re.findall(r'<rect class="bar" data-series="p50" data-category="([^"]+)"', latency))
    assert {"reserve_inventory", "charge_payment", "reserve_inventory (undo)"} <= steps
    assert len(_values(charts.split('id="chart-failed-compensations"')[1])) == 24


def test_a_process_reuses_its_charts_briefly_but_never_past_a_new_failed_compensation(
    settings: Any,
) -> None:
    settings.DASHBOARD_CHARTS_CACHE_SECONDS = 60
    dashboard_module._drawn.clear()
    client, _ = staff_client()
    confirmed_order()
    first = queries_for(client, INDEX)
    before = client.get(INDEX).content.decode()

    place()  # a new order: the cached orders chart does not show it yet
    again = queries_for(client, INDEX)
    html = client.get(INDEX).content.decode()

    assert again == first - 4  # the four charts' queries
    assert _chart(html, "orders-per-hour") == _chart(before, "orders-per-hour")
    stuck_order()
    html = client.get(INDEX).content.decode()
    assert _values(_chart(html, "failed-compensations"))[-1] == "1"
    dashboard_module._drawn.clear()


def _chart(html: str, key: str) -> str:
    return html.split(f'id="chart-{key}"')[1].split("</figure>", maxsplit=1)[0]
