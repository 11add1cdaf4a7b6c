"""Each saga step goes to its participant's queue, and a worker runs only the queues it is given.

Real Redis lists and a real Celery worker: the session's queues (``celery_test_queues``) are
the deployment's, under a prefix of the session's own.
"""

from __future__ import annotations

import json
import os
import uuid
from base64 import b64decode
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from redis import Redis

from lab.worker import ARTIFACTS, WorkerHandle
from orders.sagas import CANCEL_ORDER_SAGA, PLACE_ORDER_SAGA
from orders.services import OrderLineRequest, order_place
from payments.models import SimulatedCharge
from sagas.dispatch import StepMessage, publish
from sagas.models import Saga, SagaStep
from sagas.statuses import Phase
from sagas.tasks import run_saga_step
from tests.factories import make_product
from tests.support.worker import wait_for, worker_env

PARTICIPANT_QUEUES = {
    (saga.name, step.name): step.participant
    for saga in (PLACE_ORDER_SAGA, CANCEL_ORDER_SAGA)
    for step in saga.steps
    if not step.local
}


def broker() -> Redis:
    return Redis.from_url(str(settings.CELERY_BROKER_URL))


def queued_steps(queue: str, saga_id: uuid.UUID | None = None) -> list[str]:
    """Return the steps of the saga step messages waiting on ``queue`` (a Redis list)."""
    steps = []
    for raw in broker().lrange(queue, 0, -1):
        envelope = json.loads(raw)
        _, kwargs, _ = json.loads(b64decode(envelope["body"]))
        if saga_id is None or kwargs["saga_id"] == str(saga_id):
            steps.append(kwargs["step"])
    return steps


def test_the_contract_s_participants_name_every_step() -> None:
    assert set(PARTICIPANT_QUEUES.values()) == {"orders", "inventory", "payments"}
    assert PARTICIPANT_QUEUES[("place_order", "charge_payment")] == "payments"
    assert PARTICIPANT_QUEUES[("place_order", "reserve_inventory")] == "inventory"
    assert PARTICIPANT_QUEUES[("place_order", "confirm_order")] == "orders"


@pytest.mark.parametrize(("saga_type", "step"), sorted(PARTICIPANT_QUEUES))
@pytest.mark.parametrize("sender", ["publish", "apply_async"])
def test_a_step_message_lands_on_its_participant_s_queue(
    saga_type: str, step: str, sender: str, celery_test_queues: list[str]
) -> None:
    definition = PLACE_ORDER_SAGA if saga_type == PLACE_ORDER_SAGA.name else CANCEL_ORDER_SAGA
    saga_id = uuid.uuid4()
    if sender == "publish":
        publish(StepMessage(saga_id, saga_type, definition.step(step), Phase.ACTION))
    else:
        kwargs = {"saga_id": str(saga_id), "saga_type": saga_type, "step": step}
        run_saga_step.apply_async(kwargs={**kwargs, "phase": "action"})

    expected = settings.SAGA_QUEUE_ROUTES[PARTICIPANT_QUEUES[(saga_type, step)]]
    assert expected.endswith(PARTICIPANT_QUEUES[(saga_type, step)])
    for queue in celery_test_queues:
        assert queued_steps(queue, saga_id) == ([step] if queue == expected else []), queue


def test_routing_is_a_setting(settings: Any, celery_test_queues: list[str]) -> None:
    slow = f"{settings.CELERY_QUEUE_PREFIX}payments-slow"
    settings.SAGA_QUEUE_ROUTES = {**settings.SAGA_QUEUE_ROUTES, "payments": slow}
    try:
        publish(
            StepMessage(
                uuid.uuid4(), "place_order", PLACE_ORDER_SAGA.step("charge_payment"), Phase.ACTION
            )
        )
        assert queued_steps(slow) == ["charge_payment"]
    finally:
        broker().delete(slow)


@pytest.fixture
def inventory_worker(django_db_setup: None) -> Iterator[WorkerHandle]:
    """Start a worker consuming the session's ``inventory`` queue and nothing else."""
    env = worker_env()
    queue = settings.SAGA_QUEUE_ROUTES["inventory"]
    handle = WorkerHandle(
        queue=queue,
        nodename=f"{queue}@{os.uname().nodename}",
        env=env,
        log_path=ARTIFACTS / f"worker-{queue}.log",
    )
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()
        for name in settings.SAGA_QUEUE_ROUTES.values():
            broker().delete(name)


@pytest.mark.slow
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_given_only_the_inventory_queue_does_not_run_payment_steps(
    inventory_worker: WorkerHandle,
) -> None:
    product = make_product(stock=5)
    placed = order_place(
        customer_id="c-1",
        lines=[OrderLineRequest(product.sku, 2)],
        payment_token="tok_visa",
        actor="user:1",
    )

    # The reservation ran on the inventory worker, and the charge waits on the payments queue.
    payments = settings.SAGA_QUEUE_ROUTES["payments"]
    wait_for(
        lambda: queued_steps(payments) == ["charge_payment"],
        message="the charge's message on the payments queue",
    )
    saga = Saga.objects.get(pk=placed.saga_id)
    assert (saga.current_step, saga.claim_token) == ("charge_payment", None)
    assert SagaStep.objects.get(saga_id=placed.saga_id, name="reserve_inventory").status == (
        "SUCCEEDED"
    )
    assert SagaStep.objects.get(saga_id=placed.saga_id, name="charge_payment").status == "PENDING"
    assert not SimulatedCharge.objects.exists()
