"""Headless Chromium against the live server, for the browser tests of the staff admin.

Fixtures (reusable by any test under ``tests/browser``):

- ``chromium`` (package): Debian's ``/usr/bin/chromium`` driven by Playwright's sync API.
  Playwright's own browser download is not used: the browser is the system one that
  ``.ci/run`` installs.
- ``new_page``: a factory of fresh pages (each in its own context, so its own cookies) with a
  1280x900 viewport and bounded waits (``nav_sidebar=False``: the admin's app list folded, as
  its toggle leaves it); ``page`` is one of them.
- ``admin_login``: logs a user in through the admin's login form and returns the page.
- ``screenshot``: saves a PNG of the page under ``test-artifacts/screenshots/`` (git-ignored);
  with ``UPDATE_DOCS_SCREENSHOTS=1`` it also copies it into ``docs/screenshots/``.
- ``failed_compensation``: places an order, over the real worker, whose saga ends in
  COMPENSATION_FAILED (the confirmation fails after the charge, then the refund fails for good,
  both by fault injection) and returns its ids.

A page of a failing test is saved as ``test-artifacts/screenshots/FAILED-<test>.png``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from lab.worker import WorkerHandle
from tests.factories import make_product
from tests.support.worker import wait_for

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT_SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 900}
#: Bound of every Playwright action and expectation (a broken page fails, never hangs).
ACTION_TIMEOUT_MS = 15_000
NAVIGATION_TIMEOUT_MS = 30_000
#: The password tests.factories.make_user gives every user.
PASSWORD = "pw"

#: Bound of waiting for a saga run by the worker to settle.
SAGA_TIMEOUT = 60.0

_PAGES = pytest.StashKey[list[Page]]()


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """Start Playwright's driver for the browser tests of this package."""
    # Playwright's sync API keeps an asyncio event loop marked as running in this thread
    # between its calls (it switches to it with greenlets), so Django's guard sees "async
    # context" and refuses every ORM call in the test, its fixtures and pytest-django's
    # flush with SynchronousOnlyOperation. Nothing runs concurrently with the test's own
    # code (the loop only turns inside a Playwright call), so the guard's worry does not
    # apply; it is switched off for as long as the driver runs, and back on after.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as driver:
            yield driver


@pytest.fixture(scope="package")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    """Launch Debian's headless Chromium once for the package's tests."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    args = ["--disable-dev-shm-usage", "--disable-gpu"]
    if os.geteuid() == 0:
        # Chromium refuses to start its sandbox as root (CI containers run as root).
        args.append("--no-sandbox")
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=args, timeout=60_000
    )
    yield browser
    browser.close()


@pytest.fixture
def new_page(chromium: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., Page]]:
    """Return a factory of fresh pages, each in its own browser context (its own session)."""
    contexts = []
    pages: list[Page] = []
    request.node.stash[_PAGES] = pages

    def make(*, nav_sidebar: bool = True) -> Page:
        context = chromium.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        if not nav_sidebar:
            # What the admin's « toggle remembers: the app list folded away, tables full width.
            context.add_init_script(
                "window.localStorage.setItem('django.admin.navSidebarIsOpen', 'false')"
            )
        contexts.append(context)
        page = context.new_page()
        pages.append(page)
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    """Return a fresh page."""
    return new_page()


@pytest.fixture
def admin_login(live_server: Any, new_page: Callable[..., Page]) -> Callable[..., Page]:
    """Return a function that logs a user in through the admin's form, on a fresh page."""

    def login(user: User, *, next_path: str = "/admin/", nav_sidebar: bool = True) -> Page:
        page = new_page(nav_sidebar=nav_sidebar)
        page.goto(f"{live_server.url}/admin/login/?next={next_path}")
        page.fill("#id_username", user.get_username())
        page.fill("#id_password", PASSWORD)
        with page.expect_navigation():
            page.click("input[type=submit]")
        if "/admin/login/" in page.url:
            error = page.locator(".errornote").all_inner_texts()
            pytest.fail(f"{user.get_username()} could not log in: {error}")
        return page

    return login


@pytest.fixture
def screenshot() -> Callable[..., Path]:
    """Return a function saving a PNG of the page's viewport as a test artefact."""

    def save(page: Page, name: str, *, scroll_to: str | None = None) -> Path:
        ARTIFACT_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACT_SCREENSHOTS / f"{name}.png"
        if scroll_to is not None:
            # The part of a long page worth showing, at the top of the picture.
            page.locator(scroll_to).first.evaluate("el => el.scrollIntoView({block: 'start'})")
        page.screenshot(path=str(path), full_page=False)
        if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)
        return path

    return save


@dataclass(frozen=True)
class FailedCompensation:
    """Name an order whose placing saga waits in COMPENSATION_FAILED at the refund."""

    order_id: UUID
    saga_id: UUID
    sku: str


@pytest.fixture
def failed_compensation(live_worker: WorkerHandle) -> Callable[[], FailedCompensation]:
    """Return a function placing an order whose refund fails for good after a failed step."""
    from orders.services import OrderLineRequest, order_place
    from sagas.faults import fault_rule_set
    from sagas.models import Saga
    from sagas.statuses import FaultMode, Phase, SagaStatus

    def place() -> FailedCompensation:
        product = make_product(price="7.00", stock=10)
        # The charge succeeds, the confirmation after it fails, so the charge is refunded:
        # and the refund fails too, until an operator clears the fault.
        for step, phase in (
            ("confirm_order", Phase.ACTION),
            ("charge_payment", Phase.COMPENSATION),
        ):
            fault_rule_set(
                saga_type="place_order",
                step=step,
                phase=phase,
                mode=FaultMode.PERMANENT,
                times=None,
            )
        placed = order_place(
            customer_id="c-browser",
            lines=[OrderLineRequest(sku=product.sku, quantity=2)],
            payment_token="tok_visa",
            actor="test:browser",
        )

        def settled() -> bool:
            status = Saga.objects.values_list("status", flat=True).get(pk=placed.saga_id)
            return status == SagaStatus.COMPENSATION_FAILED

        wait_for(
            settled,
            timeout=SAGA_TIMEOUT,
            interval=0.1,
            message=f"saga {placed.saga_id} to reach COMPENSATION_FAILED",
        )
        return FailedCompensation(order_id=placed.order_id, saga_id=placed.saga_id, sku=product.sku)

    return place


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Save what a failing browser test's pages showed, to see why it failed."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not (report.failed and report.when == "call"):
        return
    pages: list[Page] = item.stash.get(_PAGES, [])
    for index, page in enumerate(pages):
        if page.is_closed():
            continue
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.name)
        path = ARTIFACT_SCREENSHOTS / f"FAILED-{name}-{index}.png"
        try:
            ARTIFACT_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(path), full_page=True)
        except Exception as exc:  # a failed capture must not hide the test's own failure
            report.sections.append(("browser", f"screenshot failed: {exc}"))
        else:
            report.sections.append(("browser", f"page {page.url} saved as {path}"))
