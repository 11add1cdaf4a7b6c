"""The dashboard's charts drawn in a real browser, from orders a real worker settled.

Orders are placed through the service the API calls; a Celery worker process runs their
sagas (some confirmed, some declined and compensated, one left in COMPENSATION_FAILED). The
staff user then opens the admin index in headless Chromium, which must lay out every chart
(inline SVG: no script, nothing fetched) with the marks the data calls for.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page

from orders.services import OrderLineRequest, order_place
from sagas.faults import fault_rules_clear
from sagas.models import Saga
from sagas.statuses import SagaStatus
from tests.browser.conftest import SAGA_TIMEOUT
from tests.factories import make_product, make_user
from tests.support.worker import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

VIEW_PERMS = ("orders.view_ordersummary", "sagas.view_saga")
CHARTS = ("orders-per-hour", "saga-outcomes", "step-latency", "failed-compensations")


def drawn(page: Page, chart: str, mark: str) -> list[dict[str, Any]]:
    """Return the marks of a chart as the browser laid them out: data and on-screen size."""
    result: list[dict[str, Any]] = page.locator(
        f"#chart-{chart} svg {mark}[data-value]"
    ).evaluate_all(
        """marks => marks.map(m => {
            const box = m.getBoundingClientRect();
            return {series: m.dataset.series, category: m.dataset.category,
                    value: Number(m.dataset.value), width: box.width, height: box.height};
        })"""
    )
    return result


def test_the_dashboard_charts_render_what_the_worker_did(
    admin_login, failed_compensation, screenshot, live_worker
) -> None:
    product = make_product(price="4.00", stock=100)
    placed = [
        order_place(
            customer_id=f"c-chart-{n}",
            lines=[OrderLineRequest(sku=product.sku, quantity=1)],
            payment_token=token,
            actor="test:browser",
        )
        for n, token in enumerate(["tok_visa"] * 4 + ["tok_chargeDeclined"] * 2)
    ]
    wait_for(
        lambda: (
            not Saga.objects.filter(
                pk__in=[p.saga_id for p in placed],
                status__in=[SagaStatus.RUNNING, SagaStatus.COMPENSATING],
            ).exists()
        ),
        timeout=SAGA_TIMEOUT,
        interval=0.1,
        message="the placed orders' sagas to settle",
    )
    failed_compensation()
    fault_rules_clear()
    operator = make_user(staff=True, perms=VIEW_PERMS)

    page = admin_login(operator, nav_sidebar=False)

    boxes = page.locator("#dashboard-charts figure")
    assert [b.get_attribute("id") for b in boxes.all()] == [f"chart-{c}" for c in CHARTS]
    for chart in CHARTS:
        svg = page.locator(f"#chart-{chart} svg").bounding_box()
        assert svg is not None and svg["width"] > 300 and svg["height"] > 100, chart

    # Seven orders this hour: four confirmed, two cancelled after the declined card, and the
    # failed compensation's, still pending.
    orders = {
        m["series"]: m["value"] for m in drawn(page, "orders-per-hour", "rect") if m["height"] > 0
    }
    assert orders == {"CONFIRMED": 4, "CANCELLED": 2, "PENDING": 1}

    outcomes = {m["series"]: m["value"] for m in drawn(page, "saga-outcomes", "rect")}
    assert outcomes == {"COMPLETED": 4, "COMPENSATED": 2, "COMPENSATION_FAILED": 1}

    latency = drawn(page, "step-latency", "rect")
    steps = {m["category"] for m in latency}
    assert {"reserve_inventory", "charge_payment", "confirm_order"} <= steps
    assert {m["series"] for m in latency} == {"p50", "p90", "p99"}
    assert all(m["width"] > 0 for m in latency if m["value"] > 0)

    waiting = drawn(page, "failed-compensations", "circle")
    assert len(waiting) == 24
    assert waiting[-1]["value"] == 1
    # No script ran to draw them, and nothing came from elsewhere.
    assert page.locator("#dashboard-charts script").count() == 0

    # Tall enough for the four charts in one picture.
    page.set_viewport_size({"width": 1280, "height": 1120})
    screenshot(page, "dashboard-charts", scroll_to="#dashboard-charts")
