"""infrastructure.broker sends the very message Celery's apply_async sends, in one LPUSH."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis
from celery import Celery
from celery.signals import after_task_publish
from django.conf import settings
from redis import Redis

from config.celery import app
from infrastructure import broker
from sagas.dispatch import RUN_STEP_TASK
from sagas.tasks import run_saga_step
from tests.support.worker import delete_queue

# Differ between any two messages: fresh ids, the sender's time and process.
PER_MESSAGE = {"id", "root_id", "eta", "origin"}


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"test-broker-{uuid.uuid4().hex[:8]}"
    yield name
    delete_queue(name)


def _kwargs() -> dict[str, str]:
    return {"saga_id": str(uuid.uuid4()), "saga_type": "t", "step": "s", "phase": "action"}


def _sent_by_celery(queue: str, kwargs: dict[str, str], countdown: float) -> None:
    # How sagas.dispatch called Celery before infrastructure.broker existed.
    run_saga_step.apply_async(
        kwargs=kwargs,
        argsrepr="()",
        kwargsrepr=repr(kwargs),
        queue=queue,
        countdown=countdown,
        soft_time_limit=30,
        time_limit=35,
    )


def _sent_by_us(queue: str, kwargs: dict[str, str], countdown: float) -> str:
    return broker.send_task(
        app,
        RUN_STEP_TASK,
        kwargs=kwargs,
        queue=queue,
        countdown=countdown,
        soft_time_limit=30,
        time_limit=35,
        kwargsrepr=repr(kwargs),
    )


def _pop(queue: str) -> dict[str, Any]:
    raw = Redis.from_url(str(settings.CELERY_BROKER_URL)).rpop(queue)
    assert isinstance(raw, bytes), f"no message in {queue}"
    message: dict[str, Any] = json.loads(raw)
    return message


@pytest.mark.parametrize("countdown", [0.0, 2.5])
def test_the_message_is_the_one_apply_async_sends(queue: str, countdown: float) -> None:
    assert broker.fast_path_available(app)
    kwargs = _kwargs()
    _sent_by_celery(queue, kwargs, countdown)
    theirs = _pop(queue)
    task_id = _sent_by_us(queue, kwargs, countdown)
    ours = _pop(queue)

    assert ours["headers"]["id"] == ours["headers"]["root_id"] == task_id
    assert ours["properties"]["correlation_id"] == task_id
    assert ours["properties"]["delivery_tag"] != theirs["properties"]["delivery_tag"]
    # The same envelope, key for key and in the same order, bar what differs per message.
    assert list(ours) == list(theirs)
    assert list(ours["headers"]) == list(theirs["headers"])
    assert list(ours["properties"]) == list(theirs["properties"])
    for part in ("headers", "properties"):
        for key in PER_MESSAGE | {"correlation_id", "delivery_tag"}:
            ours[part].pop(key, None)
            theirs[part].pop(key, None)
    assert ours == theirs  # the body too: same kwargs, same encoding
    assert json.loads(base64.b64decode(ours["body"]))[1] == kwargs


def test_a_countdown_becomes_the_same_eta(queue: str) -> None:
    _sent_by_celery(queue, _kwargs(), 2.5)
    theirs = datetime.fromisoformat(_pop(queue)["headers"]["eta"])
    _sent_by_us(queue, _kwargs(), 2.5)
    ours = datetime.fromisoformat(_pop(queue)["headers"]["eta"])
    assert timedelta(0) <= ours - theirs < timedelta(seconds=2)


def test_publish_signals_are_sent_as_celery_sends_them(queue: str) -> None:
    seen: list[dict[str, Any]] = []

    def receiver(sender: str | None = None, **kwargs: Any) -> None:
        seen.append({"sender": sender, **kwargs})

    after_task_publish.connect(receiver, weak=False, dispatch_uid="test-broker")
    try:
        kwargs = _kwargs()
        _sent_by_celery(queue, kwargs, 0.0)
        _sent_by_us(queue, kwargs, 0.0)
    finally:
        after_task_publish.disconnect(dispatch_uid="test-broker")
    assert len(seen) == 2
    theirs, ours = seen
    assert set(ours) == set(theirs)
    assert ours["sender"] == theirs["sender"] == RUN_STEP_TASK
    assert ours["routing_key"] == theirs["routing_key"] == queue
    assert ours["exchange"] == theirs["exchange"]
    assert ours["body"] == theirs["body"]


def _app(**conf: Any) -> Celery:
    other = Celery("test-broker", set_as_current=False)
    other.conf.update({"broker_url": str(settings.CELERY_BROKER_URL), **conf})
    return other


@pytest.mark.parametrize(
    "conf",
    [
        {"broker_url": "memory://"},
        {"task_send_sent_event": True},
        {"task_compression": "gzip"},
        {"broker_transport_options": {"global_keyprefix": "x:"}},
    ],
    ids=["another transport", "sent events", "compression", "an unknown transport option"],
)
def test_what_it_does_not_cover_goes_through_celery(conf: dict[str, Any]) -> None:
    assert broker.fast_path_available(_app()) is True
    assert broker.fast_path_available(_app(**conf)) is False


def test_a_broker_that_refuses_connections_raises_its_connection_error() -> None:
    unreachable = _app(broker_url="redis://127.0.0.1:9/0")  # the discard port: nothing listens
    with pytest.raises(redis.exceptions.ConnectionError):
        broker.send_task(unreachable, RUN_STEP_TASK, kwargs=_kwargs(), queue="nowhere")


@contextmanager
def hung_broker() -> Iterator[tuple[int, Callable[[], int]]]:
    """Listen on a loopback port and never answer, as a Redis stopped with SIGSTOP does.

    The kernel completes the connections (the listener is never asked to accept them), so a
    client connects, sends and then waits for a reply that never comes. Yields the port and a
    function that counts the connections made so far.
    """
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listener:
        listener.setblocking(False)
        accepted: list[socket.socket] = []

        def connections() -> int:
            with contextlib.suppress(BlockingIOError):
                while True:
                    accepted.append(listener.accept()[0])
            return len(accepted)

        try:
            yield listener.getsockname()[1], connections
        finally:
            for connection in accepted:
                connection.close()


def test_a_broker_that_does_not_answer_is_asked_once_within_the_publish_timeout(
    settings: Any,
) -> None:
    settings.BROKER_PUBLISH_TIMEOUT_SECONDS = 0.2
    with hung_broker() as (port, connections):
        hung = _app(
            broker_url=f"redis://127.0.0.1:{port}/0",
            # The transport's timeouts and Celery's retry policy are the consumers' and
            # apply_async's: a publish here does not wait for them.
            broker_transport_options={"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
            task_publish_retry_policy={"max_retries": 3, "interval_step": 0.01},
        )
        with pytest.raises(redis.exceptions.TimeoutError):
            broker.send_task(hung, RUN_STEP_TASK, kwargs=_kwargs(), queue="nowhere")

        assert connections() == 1


@pytest.mark.internals
def test_the_publish_timeout_comes_from_its_setting(settings: Any) -> None:
    settings.BROKER_PUBLISH_TIMEOUT_SECONDS = 0.7
    kwargs = broker._sender(_app()).client.connection_pool.connection_kwargs

    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.7, 0.7)


@pytest.mark.internals
def test_a_connection_the_broker_dropped_is_replaced_and_the_message_still_sent(
    queue: str,
) -> None:
    fresh = _app()
    broker.send_task(fresh, RUN_STEP_TASK, kwargs=_kwargs(), queue=queue)
    own = broker._sender(fresh).threads.connection
    own.send_command("CLIENT", "ID")
    connection_id = own.read_response()
    # As a broker restart or an idle timeout would: this thread's socket is now dead.
    Redis.from_url(str(settings.CELERY_BROKER_URL)).client_kill_filter(_id=connection_id)

    broker.send_task(fresh, RUN_STEP_TASK, kwargs=_kwargs(), queue=queue)

    assert Redis.from_url(str(settings.CELERY_BROKER_URL)).llen(queue) == 2


@pytest.mark.internals
def test_a_send_that_fails_midway_goes_again_once_on_a_fresh_connection(queue: str) -> None:
    fresh = _app()
    broker.send_task(fresh, RUN_STEP_TASK, kwargs=_kwargs(), queue=queue)
    sender = broker._sender(fresh)
    client, own = sender.client, sender.threads.connection

    def broken(*args: Any, **kwargs: Any) -> None:
        raise redis.ConnectionError("injected: connection reset mid-command")

    own.send_packed_command = broken
    retried: list[str] = []
    lpush = client.lpush

    def counted(key: str, *values: Any) -> Any:
        retried.append(key)
        return lpush(key, *values)

    client.lpush = counted  # type: ignore[method-assign,assignment]
    broker.send_task(fresh, RUN_STEP_TASK, kwargs=_kwargs(), queue=queue)

    assert retried == [queue]
    assert Redis.from_url(str(settings.CELERY_BROKER_URL)).llen(queue) == 2


@pytest.mark.internals
def test_each_sending_thread_keeps_one_connection_of_its_own(queue: str) -> None:
    fresh = _app()
    sender = broker._sender(fresh)
    seen: dict[str, list[int]] = {}

    def send_twice(label: str) -> None:
        for _ in range(2):
            broker.send_task(fresh, RUN_STEP_TASK, kwargs=_kwargs(), queue=queue)
            connection = sender.threads.connection
            connection.send_command("CLIENT", "ID")
            seen.setdefault(label, []).append(connection.read_response())

    threads = [threading.Thread(target=send_twice, args=(label,)) for label in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Reused by its thread, never shared between threads: redis-py connections are not
    # thread-safe.
    assert seen["a"][0] == seen["a"][1]
    assert seen["b"][0] == seen["b"][1]
    assert seen["a"][0] != seen["b"][0]
    assert Redis.from_url(str(settings.CELERY_BROKER_URL)).llen(queue) == 4


def test_a_redis_error_reply_reaches_the_caller_and_the_connection_recovers(queue: str) -> None:
    fresh = _app()
    plain = Redis.from_url(str(settings.CELERY_BROKER_URL))
    plain.set(queue, "not a list")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        broker.send_task(fresh, RUN_STEP_TASK, kwargs=_kwargs(), queue=queue)
    plain.delete(queue)

    broker.send_task(fresh, RUN_STEP_TASK, kwargs=_kwargs(), queue=queue)

    assert plain.llen(queue) == 1
