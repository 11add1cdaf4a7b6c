"""The saga flows on RabbitMQ: a real worker on ``amqp://``, the test process publishing there too.

The same flows run on Redis in ``tests/e2e/test_order_flows.py`` (orders placed and declined),
``sagas/tests/test_worker.py`` (a worker child SIGKILLed mid-step) and
``tests/faults/test_duplicates.py`` (duplicated messages). Here: the RabbitMQ leg of each,
and a broker restart mid-flow on a private RabbitMQ node (``lab.rabbitmq``),
with the same guarantees asserted. Needs RabbitMQ on ``RABBITMQ_URL`` (default
``amqp://guest:guest@127.0.0.1:5672//``; CI checks it answers).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from config.celery import app
from infrastructure import broker
from lab.rabbitmq import PrivateRabbitMQ
from lab.worker import ARTIFACTS, WorkerHandle
from orders.models import OrderSummary
from orders.services import OrderLineRequest, order_place
from payments.selectors import payment_totals_for_order
from sagas.models import Saga, SagaStep
from sagas.statuses import AttemptStatus, SagaStatus
from sagas.sweeper import sagas_sweep
from sagas.tasks import run_saga_step
from sagas.testing.models import Call
from sagas.tests.harness import calls, effects, log_of, start, wait_status
from tests.factories import make_product
from tests.support.worker import wait_for, worker_env

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
ACTIONS = Counter({("a", "action"): 1, ("b", "action"): 1, ("c", "action"): 1, ("d", "action"): 1})
TERMINAL = (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.COMPENSATION_FAILED)


def _switch_broker(url: str) -> None:
    """Point this process's Celery app (and its step publisher) at ``url``."""
    # Celery's typed settings are read-only properties; its conf is a mapping underneath.
    app.conf.update(broker_url=url, broker_write_url=None)
    # Connections are pooled per app: dropped, the next publish takes one on the new URL.
    app._after_fork()  # type: ignore[attr-defined]
    broker._fast_path.pop(app, None)
    settings.CELERY_BROKER_URL = url


@contextlib.contextmanager
def worker_on(url: str) -> Iterator[WorkerHandle]:
    """Publish to the RabbitMQ at ``url`` under queues of our own, and run a worker on them."""
    previous_url = str(settings.CELERY_BROKER_URL)
    previous = (
        settings.CELERY_QUEUE_PREFIX,
        settings.SAGA_QUEUE_ROUTES,
        settings.CELERY_TASK_DEFAULT_QUEUE,
        app.conf.task_default_queue,
    )
    prefix = f"rmq-{os.getpid()}-{uuid.uuid4().hex[:8]}-"
    routes = {p: prefix + q.removeprefix(previous[0]) for p, q in previous[1].items()}
    default = prefix + "maintenance"
    settings.CELERY_QUEUE_PREFIX, settings.SAGA_QUEUE_ROUTES = prefix, routes
    settings.CELERY_TASK_DEFAULT_QUEUE = app.conf.task_default_queue = default
    queues = (default, *sorted(set(routes.values())))
    _switch_broker(url)
    env = worker_env(CELERY_BROKER_URL=url, CELERY_QUEUE_PREFIX=prefix)
    handle = WorkerHandle(
        queue=default,
        queues=queues,
        nodename=f"{default}@{os.uname().nodename}",
        env=env,
        log_path=ARTIFACTS / f"worker-{default}.log",
    )
    try:
        handle.start()
        yield handle
    finally:
        handle.stop()
        with contextlib.suppress(Exception), app.connection_for_write() as conn:
            channel: Any = conn.default_channel
            for queue in queues:
                channel.queue_delete(queue)
        _switch_broker(previous_url)
        (
            settings.CELERY_QUEUE_PREFIX,
            settings.SAGA_QUEUE_ROUTES,
            settings.CELERY_TASK_DEFAULT_QUEUE,
            app.conf.task_default_queue,
        ) = previous


@pytest.fixture(scope="module")
def rabbitmq_worker(django_db_setup: None, django_db_blocker: Any) -> Iterator[WorkerHandle]:
    """A worker on the machine's RabbitMQ, this process publishing there too."""
    with worker_on(RABBITMQ_URL) as handle:
        yield handle


@pytest.fixture
def restartable_rabbitmq(django_db_setup: None) -> Iterator[tuple[PrivateRabbitMQ, WorkerHandle]]:
    """A RabbitMQ node of this test's own (the machine's is shared), and a worker on it."""
    node = PrivateRabbitMQ()
    try:
        node.start()
        with worker_on(node.url) as handle:
            yield node, handle
    finally:
        node.close()


def place(token: str) -> tuple[Any, Any]:
    product = make_product(stock=5, price="12.00")
    placed = order_place(
        customer_id="c-rmq",
        lines=[OrderLineRequest(product.sku, 2)],
        payment_token=token,
        actor="user:rmq",
    )
    return placed, product


def test_an_order_is_confirmed_on_rabbitmq(rabbitmq_worker: WorkerHandle) -> None:
    placed, product = place("tok_visa")

    saga = wait_status(placed.saga_id, *TERMINAL)

    assert saga.status == SagaStatus.COMPLETED
    assert OrderSummary.objects.get(id=placed.order_id).status == "CONFIRMED"
    assert payment_totals_for_order(order_id=placed.order_id) == (Decimal("24.00"), Decimal(0))
    product.refresh_from_db()
    assert (product.stock_on_hand, product.stock_reserved) == (3, 0)


def test_a_declined_card_cancels_the_order_on_rabbitmq(rabbitmq_worker: WorkerHandle) -> None:
    placed, product = place("tok_chargeDeclined")

    saga = wait_status(placed.saga_id, *TERMINAL)

    assert saga.status == SagaStatus.COMPENSATED
    assert OrderSummary.objects.get(id=placed.order_id).status == "CANCELLED"
    assert payment_totals_for_order(order_id=placed.order_id) == (Decimal(0), Decimal(0))
    product.refresh_from_db()
    assert (product.stock_on_hand, product.stock_reserved) == (5, 0)


def test_duplicated_step_messages_run_each_step_once_on_rabbitmq(
    rabbitmq_worker: WorkerHandle,
) -> None:
    saga_id = start("test.effects")
    for step in "abcd":
        for _ in range(2):
            run_saga_step.apply_async(
                kwargs={
                    "saga_id": str(saga_id),
                    "saga_type": "test.effects",
                    "step": step,
                    "phase": "action",
                }
            )

    saga = wait_status(saga_id, *TERMINAL)

    assert saga.status == SagaStatus.COMPLETED
    assert effects(saga_id) == ACTIONS


def test_a_worker_child_killed_mid_step_finishes_once_on_rabbitmq(
    rabbitmq_worker: WorkerHandle,
) -> None:
    saga_id = start("test.effects", {"slow": ["b:action"], "slow_seconds": 20})
    first = wait_for(
        lambda: Call.objects.filter(saga_id=saga_id, step="b", phase="action").first(),
        message="step b to start",
    )

    rabbitmq_worker.kill_child(first.pid)

    saga = wait_status(saga_id, *TERMINAL)
    assert saga.status == SagaStatus.COMPLETED
    assert effects(saga_id) == ACTIONS
    assert calls(saga_id)[("b", "action")] == 2
    assert log_of(saga_id, "b") == [AttemptStatus.WORKER_LOST.value, AttemptStatus.SUCCEEDED.value]
    assert SagaStep.objects.get(saga_id=saga_id, name="b").action_attempts == 1
    assert Saga.objects.get(pk=saga_id).redeliveries == 0


def test_a_broker_restart_mid_flow_loses_no_saga(
    restartable_rabbitmq: tuple[PrivateRabbitMQ, WorkerHandle], settings: Any
) -> None:
    node, worker = restartable_rabbitmq
    # The sweeper (run here, as beat would) sends again what the outage kept from being sent.
    settings.SAGA_SWEEP_GRACE_SECONDS = 1
    slow = {"slow": ["b:action"], "slow_seconds": 3}
    before = [start("test.effects", slow) for _ in range(4)]
    wait_for(
        lambda: Call.objects.filter(saga_id__in=before, step="b").exists(),
        message="a saga to be mid-flow, at its slow step",
    )

    node.stop()
    # Started while the broker is down: their first step's message cannot be sent.
    during = [start("test.effects") for _ in range(2)]
    node.start()

    saga_ids = [*before, *during]

    def settled() -> bool:
        sagas_sweep()
        if Saga.objects.filter(pk__in=saga_ids, status__in=TERMINAL).count() == len(saga_ids):
            return True
        time.sleep(0.5)
        return False

    wait_for(
        settled,
        timeout=180,
        message=lambda: f"every saga to settle after the restart\n{worker.log_tail(limit=6000)}",
    )
    sagas = Saga.objects.filter(pk__in=saga_ids)
    assert {saga.status for saga in sagas} == {SagaStatus.COMPLETED}
    for saga_id in saga_ids:
        assert effects(saga_id) == ACTIONS, saga_id


def test_the_health_check_reports_rabbitmq_up(rabbitmq_worker: WorkerHandle, client: Any) -> None:
    response = client.get("/api/health/")

    assert response.status_code == 200, response.content
    assert response.json()["checks"]["broker"]["status"] == "ok"


def test_with_rabbitmq_as_broker_the_cache_stays_on_redis() -> None:
    probe = "from django.conf import settings; print(settings.CACHES['default']['LOCATION'])"
    env = {
        **os.environ,
        "CELERY_BROKER_URL": RABBITMQ_URL,
        "REDIS_URL": "redis://cache-host:6379/3",
    }
    env.pop("CACHE_URL", None)
    finished = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {probe}"],
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert finished.stdout.strip() == "redis://cache-host:6379/3"
