"""Log lines: JSON with the bound ids, one order followed across web and worker, no secrets."""

from __future__ import annotations

import json
import logging
import logging.config
from typing import Any

import pytest
import requests
from django.conf import settings
from django.utils import timezone

from infrastructure.logs import (
    ContextFilter,
    JsonLineFormatter,
    log_bind,
    log_context,
    logging_config,
)
from orders.models import OrderSummary
from sagas.models import FaultRule, Saga
from tests.factories import make_product, make_user
from tests.support.worker import wait_for

SECRET_TOKEN = "tok_MarkerSecret7c1e"
CUSTOMER = "cust-PersonalMarker-42"


def _json_line(record: logging.LogRecord) -> dict[str, Any]:
    ContextFilter().filter(record)
    return dict(json.loads(JsonLineFormatter().format(record)))


def test_a_json_line_has_the_contract_fields_and_the_bound_ids() -> None:
    with log_context(request_id="r-1", order_id="o-1"):
        log_bind(saga_id="s-1", step=None)
        record = logging.LogRecord(
            "orders.api", logging.WARNING, __file__, 1, "hello %s", ("x",), None
        )
        line = _json_line(record)
    assert line["message"] == "hello x"
    assert line["level"] == "WARNING"
    assert line["logger"] == "orders.api"
    assert line["timestamp"].startswith(str(timezone.now().year))
    assert {k: line[k] for k in ("request_id", "order_id", "saga_id")} == {
        "request_id": "r-1",
        "order_id": "o-1",
        "saga_id": "s-1",
    }
    assert "step" not in line
    assert "ids" not in line
    # Outside the block nothing stays bound.
    after = _json_line(logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None))
    assert "order_id" not in after


def test_text_lines_show_the_ids_after_the_message() -> None:
    handler_format = logging.Formatter("%(levelname)s %(message)s%(ids)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "placed", (), None)
    with log_context(order_id="o-9", phase="action"):
        ContextFilter().filter(record)
    assert handler_format.format(record) == "INFO placed [order_id=o-9 phase=action]"


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_one_orders_lines_are_found_by_its_id_in_web_and_worker_and_hold_no_secret(
    live_server: Any, live_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The console handler's filter, on the handler that captures this process's lines.
    caplog.handler.addFilter(ContextFilter())
    caplog.set_level(logging.INFO)
    since = live_worker.log_size()
    make_product(sku="L-1", stock=10)
    from knox.models import AuthToken

    _, api_token = AuthToken.objects.create(user=make_user())
    now = timezone.now()
    # A release that fails for good: a declined order ends COMPENSATION_FAILED (an ERROR).
    FaultRule.objects.create(
        saga_type="place_order",
        step="reserve_inventory",
        phase="compensation",
        mode="permanent",
        created_at=now,
        updated_at=now,
    )

    def place(token: str) -> str:
        response = requests.post(
            f"{live_server.url}/api/orders/",
            json={
                "customer_id": CUSTOMER,
                "items": [{"sku": "L-1", "quantity": 1}],
                "payment_token": token,
            },
            headers={"Authorization": f"Token {api_token}"},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    confirmed, flaky, declined = place("tok_visa"), place("tok_flaky"), place(SECRET_TOKEN)
    wait_for(
        lambda: (
            OrderSummary.objects.filter(id__in=[confirmed, flaky], status="CONFIRMED").count() == 2
            and Saga.objects.filter(
                subject=f"order:{declined}", status="COMPENSATION_FAILED"
            ).exists()
        ),
        timeout=90,
        message="two orders confirmed and the third's saga COMPENSATION_FAILED",
    )
    worker_text = wait_for(
        lambda: (
            (text := live_worker.log_tail(since=since, limit=10**7))
            and f'"order_id": "{declined}"' in text
            and "COMPENSATION_FAILED" in text
            and text
        ),
        message="the worker's lines about the declined order",
    )
    worker_lines = [json.loads(line) for line in worker_text.splitlines() if line.startswith("{")]

    def worker_story(order_id: str) -> list[dict[str, Any]]:
        return [line for line in worker_lines if line.get("order_id") == order_id]

    web_story = [r for r in caplog.records if getattr(r, "order_id", None) == confirmed]
    assert [r.getMessage() for r in web_story if r.name == "orders.api"], "the web's placing line"
    assert all(getattr(r, "request_id", "") for r in web_story)
    steps = {(line["step"], line["phase"]) for line in worker_story(confirmed)}
    assert {
        ("reserve_inventory", "action"),
        ("charge_payment", "action"),
        ("confirm_order", "action"),
    } <= steps
    saga_ids = {line["saga_id"] for line in worker_story(confirmed)}
    assert saga_ids == {getattr(web_story[0], "saga_id", None)}
    # The correlation id bound by the web is the one the worker's lines carry.
    assert {line["correlation_id"] for line in worker_story(confirmed)} == {
        getattr(web_story[0], "correlation_id", None)
    }

    retries = [line for line in worker_story(flaky) if line["level"] == "WARNING"]
    assert retries and all(line["step"] == "charge_payment" for line in retries)
    failed = [line for line in worker_story(declined) if line["level"] == "ERROR"]
    assert failed and "COMPENSATION_FAILED" in failed[-1]["message"]
    assert failed[-1]["saga_id"] and failed[-1]["step"] == "reserve_inventory"

    everything = worker_text + "\n".join(
        logging.Formatter("%(message)s %(ids)s").format(r) for r in caplog.records
    )
    assert SECRET_TOKEN not in everything
    assert CUSTOMER not in everything


def test_celerys_own_per_task_lines_are_left_to_the_attempts_line() -> None:
    # One line per attempt (sagas.telemetry), not three: Celery's "received" and "succeeded"
    # lines repeat it without the saga's ids. Their failures still reach the log.
    logging.config.dictConfig(logging_config(log_format="json", level="INFO"))
    try:
        for name in ("celery.worker.strategy", "celery.app.trace"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO)
            assert logging.getLogger(name).isEnabledFor(logging.ERROR)
        assert logging.getLogger("sagas").isEnabledFor(logging.INFO)
    finally:
        logging.config.dictConfig(settings.LOGGING)
