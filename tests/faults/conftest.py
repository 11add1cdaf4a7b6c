"""The fault lab shared by the fault tests: the back office on private servers they may kill."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from lab.servers import Lab, LabProduct
from lab.worker import delete_queue

#: Plenty of stock, so only the scarce product runs out.
PRODUCTS = [LabProduct(f"FLT-{n}", 100_000, price=f"{n}.50") for n in range(1, 5)] + [
    LabProduct("FLT-SCARCE", 2)
]


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """Start the lab once for every fault test (stopped and deleted at the end)."""
    with Lab(PRODUCTS, worker_app="lab.chaos") as running:
        yield running


@pytest.fixture
def unconsumed_queue(settings: Any) -> Iterator[str]:
    """Send this test's step messages to a queue no worker reads, and delete it afterwards.

    Tests that play the worker in-process (``drive``) must be the only ones running the
    steps: the session's live worker, started by other tests, would otherwise take them.
    """
    queue = f"faults-inline-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    settings.SAGA_QUEUE_ROUTES = {}
    yield queue
    delete_queue(queue)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the lab's process logs to a failing fault test's report."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    running = getattr(item, "funcargs", {}).get("lab")
    if report.failed and isinstance(running, Lab):
        report.sections.append(("fault lab logs", running.logs()))
