"""Send Celery task messages to a Redis broker with one LPUSH each.

Celery's ``apply_async`` routes the task, takes a producer from its pool, makes sure the queue
is declared, and kombu's Redis channel then builds a new Redis client for every message, a
large share of POST /api/orders/'s CPU that every saga step pays again for the next step's
message (docs/performance.md). :func:`send_task` sends the same message,
built by Celery itself (``app.amqp.as_task_v2``) and wrapped in kombu's Redis envelope, over
one long-lived connection per sending thread. A worker cannot tell it from one sent by
``apply_async``: ``tests/test_broker.py`` compares the two field by field, and every
end-to-end test's worker consumes messages sent this way.

It covers what this project sends (a direct queue, JSON, no compression, priority 0) on a
plain ``redis://`` or ``rediss://`` broker. Anything else (another transport, a key prefix,
sent events) goes through ``apply_async`` unchanged, so a configuration this module does not
know about keeps working, only slower.

A send is bounded: connecting and each reply wait at most ``BROKER_PUBLISH_TIMEOUT_SECONDS``,
and a broker that does not answer in that time is not asked again. Every message sent here
acts on a state already committed to PostgreSQL, and the saga sweeper sends again whatever
was not sent; a request that waited out socket timeouts times retries for a hung broker
would have gained nothing (docs/reliability.md).
"""

from __future__ import annotations

import base64
import os
import threading
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery
from celery.signals import after_task_publish, before_task_publish
from celery.utils.nodenames import anon_nodename
from django.conf import settings
from kombu.utils.json import dumps
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["fast_path_available", "send_task"]

# The transport options this module honours; any other one falls back on apply_async.
_KNOWN_OPTIONS = {
    "visibility_timeout",
    "max_retries",
    "interval_start",
    "interval_step",
    "interval_max",
    "socket_timeout",
    "socket_connect_timeout",
    "retry_on_timeout",
    "health_check_interval",
}

# The messages carry keyword arguments only.
_NO_ARGS_REPR = "()"

_fast_path: weakref.WeakKeyDictionary[Celery, bool] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


@dataclass(frozen=True)
class _Sender:
    """What one process sends an app's messages with: made again after a fork."""

    pid: int
    client: redis.Redis
    # Celery formats it for every message (``gen<pid>@<host>``): fixed for a process.
    origin: str
    # Each sending thread's own connection, outside the client's pool (see _lpush).
    threads: threading.local = field(default_factory=threading.local)


_senders: weakref.WeakKeyDictionary[Celery, _Sender] = weakref.WeakKeyDictionary()


def fast_path_available(app: Celery) -> bool:
    """Tell whether :func:`send_task` may LPUSH itself on ``app``'s broker.

    Decided once per app: Celery's configuration is read at start-up and not changed after.
    """
    known = _fast_path.get(app)
    if known is None:
        known = _fast_path[app] = _decide_fast_path(app)
    return known


def _decide_fast_path(app: Celery) -> bool:
    conf = app.conf
    url = str(conf.broker_write_url or conf.broker_url or "")
    return (
        url.split("://", 1)[0] in ("redis", "rediss")
        and not conf.broker_transport
        and not conf.task_send_sent_event
        and int(conf.task_protocol) == 2
        and conf.task_serializer == "json"
        and not conf.task_compression
        and set(conf.broker_transport_options or {}) <= _KNOWN_OPTIONS
    )


def _sender(app: Celery) -> _Sender:
    """The app's sender in this process (a new one after a fork: sockets are not shared)."""
    pid = os.getpid()
    sender = _senders.get(app)
    if sender is not None and sender.pid == pid:
        return sender
    with _lock:
        sender = _senders.get(app)
        if sender is None or sender.pid != pid:
            sender = _senders[app] = _Sender(pid, _new_client(app), anon_nodename())
        return sender


def _new_client(app: Celery) -> redis.Redis:
    conf = app.conf
    options = conf.broker_transport_options or {}
    # The transport's own socket timeouts and Celery's publish retry policy are the
    # consumers' and apply_async's: a publish here waits for one try of one bound.
    timeout = float(settings.BROKER_PUBLISH_TIMEOUT_SECONDS)
    client: redis.Redis = redis.Redis.from_url(
        str(conf.broker_write_url or conf.broker_url),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=int(options.get("health_check_interval", 0)),
        retry=Retry(NoBackoff(), 0),
    )
    return client


def _lpush(sender: _Sender, key: str, payload: str) -> None:
    """LPUSH on this thread's own connection, straight; once more on a fresh one if it broke.

    redis-py's command path (retry wrapper, deprecation checks, metrics hooks), then taking
    a connection from the pool and giving it back (with their metrics hooks), cost more CPU
    than building the message. A thread keeps one connection of its own (made as the pool
    makes its connections: same class, address, credentials and timeouts) and sends the
    command packed by hand. A connection that fails here is dropped. When it broke (the
    broker restarted, or closed an idle connection) the client's ``lpush`` tries once more
    on a fresh one; when it timed out, the broker is hung and the error reaches the caller
    at once: another try would only wait out another timeout.
    """
    connection: redis.Connection | None = getattr(sender.threads, "connection", None)
    if connection is None:
        pool = sender.client.connection_pool
        connection = sender.threads.connection = pool.connection_class(**pool.connection_kwargs)
    try:
        connection.send_packed_command([_lpush_command(key, payload)], check_health=True)
        connection.read_response()
    except BaseException as exc:
        # Dropped whatever the failure: the connection may hold half a reply. A Redis error
        # reply (a full server, a wrong type), a timeout or an interruption reaches the caller.
        connection.disconnect()
        if isinstance(exc, (redis.TimeoutError, TimeoutError)) or not isinstance(
            exc, (redis.ConnectionError, OSError)
        ):
            raise
    else:
        return
    # The connection broke: once more through the client, on a fresh one.
    sender.client.lpush(key, payload)


def _lpush_command(key: str, payload: str) -> bytes:
    """Return LPUSH key payload in the Redis protocol (RESP), as redis-py would pack it."""
    name, value = key.encode(), payload.encode()
    return b"*3\r\n$5\r\nLPUSH\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
        len(name),
        name,
        len(value),
        value,
    )


def send_task(
    app: Celery,
    name: str,
    *,
    kwargs: dict[str, Any],
    queue: str,
    countdown: float = 0.0,
    time_limit: int | None = None,
    soft_time_limit: int | None = None,
    kwargsrepr: str | None = None,
    ignore_result: bool = True,
) -> str:
    """Send task ``name`` with keyword arguments to ``queue``; return the message's task id.

    Raises what the broker raises (``redis.TimeoutError`` after
    ``BROKER_PUBLISH_TIMEOUT_SECONDS`` without an answer); the message is then not sent.
    """
    if not fast_path_available(app):
        result = app.send_task(
            name,
            kwargs=kwargs,
            queue=queue,
            countdown=countdown,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            argsrepr=_NO_ARGS_REPR,
            kwargsrepr=kwargsrepr,
            ignore_result=ignore_result,
        )
        return str(result.id)

    sender = _sender(app)
    task_id = str(uuid.uuid4())
    # As send_task does: a message sent from inside a task names it as parent, and its root.
    root_id = parent_id = None
    parent = app.current_worker_task
    if parent is not None:
        root_id = parent.request.root_id or parent.request.id
        parent_id = parent.request.id
    headers, properties, body, _ = app.amqp.as_task_v2(
        task_id,
        name,
        (),
        kwargs,
        countdown=countdown or None,
        reply_to=app.thread_oid,
        time_limit=time_limit,
        soft_time_limit=soft_time_limit,
        root_id=root_id,
        parent_id=parent_id,
        argsrepr=_NO_ARGS_REPR,
        kwargsrepr=kwargsrepr,
        ignore_result=ignore_result,
        origin=sender.origin,
    )
    # apply_async passes the reprs on as options, which end up in the properties too.
    properties["argsrepr"] = _NO_ARGS_REPR
    properties["kwargsrepr"] = headers["kwargsrepr"]
    # A direct queue on the default exchange: kombu publishes on the anonymous exchange with
    # the queue's name as the routing key, which is the Redis list the workers read.
    exchange, routing_key = "", queue
    if before_task_publish.receivers:
        before_task_publish.send(
            sender=name,
            body=body,
            exchange=exchange,
            routing_key=routing_key,
            declare=[],
            headers=headers,
            properties=properties,
            retry_policy=app.conf.task_publish_retry_policy,
        )
    payload = dumps(body).encode("utf-8")
    properties.update(
        delivery_mode=2,
        delivery_info={"exchange": exchange, "routing_key": routing_key},
        priority=0,
        body_encoding="base64",
        delivery_tag=str(uuid.uuid4()),
    )
    envelope = {
        "body": base64.b64encode(payload).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    }
    _lpush(sender, queue, dumps(envelope))
    if after_task_publish.receivers:
        after_task_publish.send(
            sender=name, body=body, exchange=exchange, routing_key=routing_key, headers=headers
        )
    return task_id
