"""An operator finds a failed compensation in the admin, retries it, and sees it undone.

Everything is real: the live server serves the admin to headless Chromium, a Celery worker
process runs the saga steps, PostgreSQL and Redis hold and carry the state. The tests act as
staff would (links, checkboxes, the action's confirmation page) and read what the pages say.
A screenshot of each main page is kept under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from playwright.sync_api import Page

from sagas.faults import fault_rules_clear
from tests.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

VIEW_PERMS = (
    "orders.view_ordersummary",
    "sagas.view_saga",
    "eventstore.view_storedevent",
    "inventory.view_product",
    "payments.view_payment",
)
RETRY_ACTION = "retry_failed_compensations"
SKIP_ACTION = "skip_failed_compensations"
QUEUE = "/admin/sagas/saga/failed-compensations/"
#: Bound of waiting for the worker to finish the retried compensations.
SETTLE_TIMEOUT = 60.0


def field_text(page: Page, name: str) -> str:
    """Return the text of a read-only field on an admin change page."""
    return page.locator(f".field-{name} .readonly").first.inner_text().strip()


def step_statuses(page: Page) -> dict[str, str]:
    """Read the saga page's step timeline as {step: status}."""
    rows = page.locator("#step-timeline tbody tr").evaluate_all(
        "rows => rows.map(r => [r.cells[1].innerText.trim(), r.cells[2].innerText.trim()])"
    )
    return dict(rows)


def reload_until(page: Page, check: Callable[[], bool], *, what: str) -> None:
    """Reload the page until ``check()`` holds for what it shows (bounded), as staff would."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not check():
        if time.monotonic() >= deadline:
            pytest.fail(f"{page.url} did not show {what} within {SETTLE_TIMEOUT}s")
        page.wait_for_timeout(250)
        page.reload()


def test_an_operator_retries_a_failed_compensation_and_the_order_is_cancelled(
    admin_login, failed_compensation, screenshot, live_server
) -> None:
    failed = failed_compensation()
    saga_id, order_id = str(failed.saga_id), str(failed.order_id)
    operator = make_user(staff=True, perms=(*VIEW_PERMS, "sagas.retry_saga"))

    # The dashboard shows the failed compensation waiting; its count leads to the queue.
    # (The operator keeps the admin's app list folded: the screenshots show whole tables.)
    page = admin_login(operator, nav_sidebar=False)
    waiting = page.locator("#dashboard-failed-compensations a")
    assert waiting.locator("strong").inner_text() == "1"
    screenshot(page, "dashboard")
    waiting.click()
    page.wait_for_url(f"**{QUEUE}")
    row = page.locator("#result_list tbody tr", has=page.locator(f"a[href*='{saga_id}']"))
    assert row.count() == 1
    assert "charge_payment" in row.inner_text()
    assert "injected permanent fault" in row.inner_text()
    screenshot(page, "failed-compensations")

    # The saga's page: the refund failed for good; the earlier steps wait behind it.
    row.locator(f"a[href*='{saga_id}']").first.click()
    page.wait_for_url(f"**/admin/sagas/saga/{saga_id}/change/")
    assert field_text(page, "status") == "COMPENSATION_FAILED"
    assert page.locator("#compensation-failed-note").is_visible()
    assert page.locator("#saga-retry-button").is_visible()
    assert step_statuses(page) == {
        "create_order": "SUCCEEDED",
        "reserve_inventory": "SUCCEEDED",
        "charge_payment": "COMPENSATION_FAILED",
        "confirm_order": "FAILED",
    }
    screenshot(page, "saga-compensation-failed")

    # The operator clears the fault (as `manage.py faults clear` would), then retries the saga
    # from the queue with the admin action, through its confirmation page.
    fault_rules_clear()
    page.goto(live_server.url + QUEUE)
    page.check(f"input.action-select[value='{saga_id}']")
    page.select_option("select[name=action]", RETRY_ACTION)
    with page.expect_navigation():
        page.click("button[name=index]")
    assert saga_id in page.inner_text("#confirmation-sagas")
    screenshot(page, "retry-confirmation")
    confirm = page.locator("#confirm-operator-action")
    assert confirm.get_attribute("value") == "Yes, retry"
    with page.expect_navigation():
        confirm.click()
    assert f"Saga {saga_id} retried" in page.inner_text(".messagelist")

    # The saga page, reloaded until the worker has run the compensations again.
    page.goto(f"{live_server.url}/admin/sagas/saga/{saga_id}/change/")
    undone = {
        "create_order": "COMPENSATED",
        "reserve_inventory": "COMPENSATED",
        "charge_payment": "COMPENSATED",
        "confirm_order": "FAILED",
    }
    reload_until(
        page,
        lambda: field_text(page, "status") == "COMPENSATED" and step_statuses(page) == undone,
        what="the saga COMPENSATED with every step undone",
    )
    history = page.inner_text("#operator-history tbody")
    assert "retry" in history and operator.username in history
    screenshot(page, "saga-step-timeline", scroll_to="#step-timeline")

    # The order's page: cancelled, its events telling how.
    page.goto(f"{live_server.url}/admin/orders/ordersummary/{order_id}/change/")
    events = page.locator("#event-timeline tbody tr td:nth-child(2)")
    reload_until(
        page,
        lambda: (
            field_text(page, "status") == "CANCELLED"
            and events.all_inner_texts() == ["OrderCreated", "OrderCancelled"]
        ),
        what="the order CANCELLED with its OrderCancelled event",
    )
    assert field_text(page, "cancellation_reason") == "step_failed"
    screenshot(page, "order-event-timeline", scroll_to="#order-sagas")
    # As of its first event, the order was still pending.
    page.select_option("#as-of-version", "1")
    with page.expect_navigation():
        page.click("#as-of-submit")
    assert "PENDING" in page.inner_text("#as-of-state")

    page.goto(f"{live_server.url}/admin/orders/ordersummary/")
    assert order_id in page.inner_text("#result_list")
    screenshot(page, "orders-changelist")

    page.goto(f"{live_server.url}/admin/eventstore/storedevent/?q={order_id}")
    listed = page.inner_text("#result_list")
    assert "OrderCreated" in listed and "OrderCancelled" in listed
    screenshot(page, "event-browser")

    # Nothing waits any more.
    page.goto(f"{live_server.url}/admin/")
    assert page.locator("#dashboard-failed-compensations strong").inner_text() == "0"


def test_a_staff_user_without_the_retry_permission_gets_no_retry_action(
    admin_login, failed_compensation, live_server
) -> None:
    failed = failed_compensation()
    saga_id = str(failed.saga_id)
    # May skip, may not retry: the action bar is there, without retry.
    operator = make_user(staff=True, perms=(*VIEW_PERMS, "sagas.skip_compensation"))

    page = admin_login(operator, next_path=QUEUE)
    assert page.locator(f"input.action-select[value='{saga_id}']").count() == 1
    actions = page.locator("select[name=action] option").evaluate_all(
        "options => options.map(o => o.value)"
    )
    assert SKIP_ACTION in actions
    assert RETRY_ACTION not in actions

    page.goto(f"{live_server.url}/admin/sagas/saga/{saga_id}/change/")
    assert field_text(page, "status") == "COMPENSATION_FAILED"
    assert page.locator("#saga-skip-button").count() == 1
    assert page.locator("#saga-retry-button").count() == 0

    # Posting the action anyway, with the session's CSRF token, is refused, and so is the
    # saga page's own retry URL; the same post of the skip action (which only shows its
    # confirmation page) shows the token is good.
    def post(path: str, fields: dict[str, str]) -> int:
        return page.evaluate(
            """async ([url, fields]) => {
                const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
                const body = new URLSearchParams({csrfmiddlewaretoken: token, ...fields});
                const response = await fetch(url, {method: "POST", body: body});
                return response.status;
            }""",
            [f"{live_server.url}{path}", fields],
        )

    def post_action(action: str) -> int:
        return post(QUEUE, {"action": action, "_selected_action": saga_id, "index": "0"})

    assert post_action(SKIP_ACTION) == 200
    assert post_action(RETRY_ACTION) == 403
    assert post(f"/admin/sagas/saga/{saga_id}/retry/", {"post": "yes"}) == 403
    page.reload()
    assert field_text(page, "status") == "COMPENSATION_FAILED"
    assert page.locator("#operator-history tbody").inner_text().startswith("No operator")
