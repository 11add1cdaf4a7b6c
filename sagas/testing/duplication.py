"""Publish every step message of ``test.duplicated`` sagas twice (a test-only broker quirk).

Connected by this app's ``ready()``, so it acts in the test process and in the test worker
alike: the first step's message (sent by ``saga_start``) and every later one (sent by the
worker) reach the queue twice, as if the broker redelivered each of them.
"""

from __future__ import annotations

from typing import Any

from celery.signals import after_task_publish

from sagas.dispatch import RUN_STEP_TASK

DUPLICATED_TYPE = "test.duplicated"
COPY_HEADER = "sagas_test_copy"


def _publish_copy(
    sender: str | None = None,
    body: Any = None,
    routing_key: str | None = None,
    headers: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    headers = headers or {}
    if sender != RUN_STEP_TASK or headers.get(COPY_HEADER):
        return
    _args, kwargs, _embed = body
    if kwargs.get("saga_type") != DUPLICATED_TYPE:
        return
    from sagas.tasks import run_saga_step

    options: dict[str, Any] = {"headers": {COPY_HEADER: "1"}, "queue": routing_key}
    hard, soft = headers.get("timelimit") or (None, None)
    if hard:
        options["time_limit"] = hard
    if soft:
        options["soft_time_limit"] = soft
    if headers.get("eta"):
        options["eta"] = headers["eta"]
    run_saga_step.apply_async(kwargs=kwargs, **options)


def connect() -> None:
    """Start duplicating (idempotent: Celery keeps one receiver per uid)."""
    after_task_publish.connect(_publish_copy, weak=False, dispatch_uid="sagas-test-duplicate")
