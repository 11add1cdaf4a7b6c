"""Send deliveries: claim one, POST it signed, record the outcome and schedule a retry.

At least once: a delivery is claimed by a lease (not a row lock held across the HTTP call),
sent, then its outcome recorded; a sender that dies in between leaves the lease to expire and
the delivery is sent again, with the same ``webhook-id``, as the Standard Webhooks spec
allows. For one order (one stream), deliveries to one endpoint go in event order: a delivery
is not claimed while an earlier one of its stream to its endpoint is unfinished.

Queued once: the dispatch holds each due delivery it queues for ``QUEUED`` and hands the
hold to the send, so the passes every second queue only what has newly become due, rather
than a message per due delivery per pass; a success sends the next event of its order.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from uuid import UUID

import requests
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from webhooks.models import UNFINISHED_STATUSES, DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.signing_secrets import secret_decrypt
from webhooks.targets import TargetRefused, target_check

logger = logging.getLogger(__name__)

#: How much of a receiver's answer is kept (and read at all).
RESPONSE_LIMIT = 1024
#: Connect and total time allowed for one attempt, in seconds.
TIMEOUT_SECONDS = 10.0
#: How long a claimed delivery is held before another sender may take it over.
LEASE = timedelta(seconds=60)
#: How long a queued send holds its delivery: until then no dispatch queues it again, so a
#: backlog is queued once, not once per pass; a message lost (a broker restart) is replaced
#: after it.
QUEUED = timedelta(seconds=30)
RETRY_CAP_SECONDS = 3600.0
#: How many later events of one order a send goes on to deliver before leaving the rest to
#: the dispatch (so one busy order does not hold a worker process for long).
SUCCESSORS_PER_SEND = 10
#: Deliveries one send task takes at most: a task per delivery costs a broker round trip
#: and a task's overhead each, about as much as the POST to a nearby receiver.
SENDS_PER_TASK = 20
#: A backlog shorter than SPREAD x SENDS_PER_TASK is split into this many tasks.
SPREAD = 4


def retry_delay(attempts: int, *, base: float, rand: float) -> float:
    """Return the wait after the ``attempts``-th failed try: exponential, jittered, capped.

    ``rand`` in [0, 1) spreads retries ±20% around ``base * 2**(attempts-1)``, so receivers
    coming back are not hit by every sender at once.
    """
    exponential = base * (2 ** min(max(attempts - 1, 0), 32))
    return min(RETRY_CAP_SECONDS, exponential * (0.8 + 0.4 * rand))


def body_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def signed_headers(*, secret: str, msg_id: str, timestamp: datetime, body: bytes) -> dict[str, str]:
    """Return the Standard Webhooks headers for ``body``."""
    signature = Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": "backoffice-webhooks/1",
    }


def _earlier_unfinished() -> Exists:
    return Exists(
        WebhookDelivery.objects.filter(
            endpoint_id=OuterRef("endpoint_id"),
            stream_type=OuterRef("stream_type"),
            stream_id=OuterRef("stream_id"),
            stream_version__lt=OuterRef("stream_version"),
            status__in=UNFINISHED_STATUSES,
        )
    )


def _unheld(now: datetime, queued: datetime | None) -> Q:
    """Neither claimed nor queued, or queued by the dispatch that handed us ``queued``."""
    unheld = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    return unheld if queued is None else unheld | Q(lease_until=queued)


def due_deliveries(*, now: datetime, queued: datetime | None = None) -> Any:
    """Return the deliveries that may be sent now (a QuerySet, oldest first)."""
    return (
        WebhookDelivery.objects.filter(
            status__in=UNFINISHED_STATUSES,
            next_attempt_at__lte=now,
            endpoint__is_active=True,
        )
        .filter(_unheld(now, queued))
        .exclude(_earlier_unfinished())
        .order_by("next_attempt_at", "id")
    )


@dataclass(frozen=True)
class Claimed:
    delivery: WebhookDelivery
    lease_until: datetime


def delivery_claim(
    *, delivery_id: int, now: datetime, queued: datetime | None = None
) -> Claimed | None:
    """Take the delivery for one attempt if it is due, unheld and first of its order.

    ``queued`` is the hold the dispatch put on it when it queued this send: the send may
    take it over at once; any other send waits for the hold to run out.
    """
    claimed = deliveries_claim(delivery_ids=[delivery_id], now=now, queued=queued)
    return claimed[0] if claimed else None


def deliveries_claim(
    *, delivery_ids: list[int], now: datetime, queued: datetime | None = None
) -> list[Claimed]:
    """Take those of these deliveries that are due, unheld and first of their order.

    One UPDATE ... RETURNING for the lot, in the order given; their endpoints are loaded
    with them (one query), so an attempt costs no further read.
    """
    if not delivery_ids:
        return []
    lease_until = now + LEASE
    taken = due_deliveries(now=now, queued=queued).filter(id__in=delivery_ids).values("id")
    taken_sql, taken_params = taken.query.sql_with_params()
    table = WebhookDelivery._meta.db_table
    unheld = "lease_until IS NULL OR lease_until < %s" + (
        "" if queued is None else " OR lease_until = %s"
    )
    # The row's own conditions are repeated outside the subquery: a sender that waited for
    # another's lock re-checks only those against the row as the other left it (the
    # subquery's answer is from before), so without them both would claim it and the
    # delivery went twice.
    sql = (
        f"UPDATE {table} SET lease_until = %s, attempts = attempts + 1 "  # noqa: S608
        f"WHERE id IN ({taken_sql}) AND status = ANY(%s) AND next_attempt_at <= %s "
        f"AND ({unheld}) RETURNING *"
    )
    params = [
        lease_until,
        *taken_params,
        [str(s) for s in UNFINISHED_STATUSES],
        now,
        now,
        *([] if queued is None else [queued]),
    ]
    rows = {d.id: d for d in WebhookDelivery.objects.raw(sql, params)}
    endpoints = WebhookEndpoint.objects.in_bulk({d.endpoint_id for d in rows.values()})
    claimed = []
    for delivery_id in delivery_ids:
        delivery = rows.get(delivery_id)
        if delivery is not None:
            delivery.endpoint = endpoints[delivery.endpoint_id]
            claimed.append(Claimed(delivery, lease_until))
    return claimed


def _lease_renew(claims: list[Claimed], *, now: datetime) -> list[Claimed]:
    """Hold these claims for another ``LEASE`` from now; return those still ours.

    A batch is claimed at once but sent one after another: against a slow receiver the
    later ones would outlive their lease and be taken over while still to be sent here.
    """
    lease_until = now + LEASE
    kept = []
    for claim in claims:
        renewed = WebhookDelivery.objects.filter(
            id=claim.delivery.id, lease_until=claim.lease_until
        ).update(lease_until=lease_until)
        if renewed:
            kept.append(Claimed(claim.delivery, lease_until))
    return kept


@dataclass(frozen=True)
class Answer:
    status: int | None
    body: str
    error: str

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def http_post(
    url: str, body: bytes, headers: dict[str, str], *, session: requests.Session | None = None
) -> Answer:
    """POST once: no redirect followed, 10 s to connect and in all, the answer's start kept.

    ``session`` (``sender_session``) reuses its connection to the receiver across a batch.
    """
    deadline = time.monotonic() + TIMEOUT_SECONDS
    try:
        response = (session or requests).post(
            url,
            data=body,
            headers=headers,
            timeout=(TIMEOUT_SECONDS, TIMEOUT_SECONDS),
            allow_redirects=False,
            stream=True,
        )
    except requests.RequestException as exc:
        return Answer(None, "", f"{type(exc).__name__}: {exc}"[:1000])
    with response:
        kept = b""
        try:
            for chunk in response.iter_content(256):
                kept += chunk
                if len(kept) >= RESPONSE_LIMIT or time.monotonic() > deadline:
                    break
        except requests.RequestException as exc:
            return Answer(response.status_code, "", f"{type(exc).__name__}: {exc}"[:1000])
    text = kept[:RESPONSE_LIMIT].decode("utf-8", errors="replace")
    error = "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    if 300 <= response.status_code < 400:
        error += " (redirects are not followed)"
    return Answer(response.status_code, text, error)


def sender_session() -> requests.Session:
    """Return a session for one send task: connections kept, no cookies kept.

    Keeping the connection saves a TCP (and TLS) handshake per delivery to one endpoint;
    cookies a receiver sets are not sent back, as they were not with a request apiece.
    Timeouts and "no redirects" are passed with each request (``http_post``).
    """
    session = requests.Session()
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return session


def delivery_send(
    *, delivery_id: int, now: datetime | None = None, queued: datetime | None = None
) -> DeliveryStatus | None:
    """Make one attempt at a delivery; return its new status (None when not claimed).

    Once it is done with, the next events of its order are sent too (``deliveries_send``).
    """
    return deliveries_send(delivery_ids=[delivery_id], now=now, queued=queued).get(delivery_id)


def deliveries_send(
    *, delivery_ids: list[int], queued: datetime | None = None, now: datetime | None = None
) -> dict[int, DeliveryStatus]:
    """Claim these deliveries at once, attempt each in turn; return the claimed ones' status.

    Once one is done with (succeeded, or failed for good), the next event of its order to
    its endpoint, which waited for it alone, is sent in the same task when due: up to
    ``SUCCESSORS_PER_SEND`` rounds of them, the rest at the next pass.
    """
    statuses: dict[int, DeliveryStatus] = {}
    secrets: dict[int, str] = {}
    ids, hold = delivery_ids, queued
    with sender_session() as session:
        for _ in range(SUCCESSORS_PER_SEND + 1):
            claims = deliveries_claim(delivery_ids=ids, now=now or timezone.now(), queued=hold)
            done = []
            while claims:
                current = now or timezone.now()
                if claims[0].lease_until - current < 2 * timedelta(seconds=TIMEOUT_SECONDS):
                    claims = _lease_renew(claims, now=current)
                    continue
                claim, claims = claims[0], claims[1:]
                status = _attempt(claim, session=session, now=now, secrets=secrets)
                statuses[claim.delivery.id] = status
                if status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED):
                    done.append(claim.delivery)
            ids, hold = _successors(done, now=now or timezone.now()), None
            if not ids:
                break
    return statuses


def _successors(done: list[WebhookDelivery], *, now: datetime) -> list[int]:
    """Return the next event's delivery of each of these ones' orders, if due and unheld."""
    if not done:
        return []
    same_order = Q()
    for d in done:
        same_order |= Q(
            endpoint_id=d.endpoint_id,
            stream_type=d.stream_type,
            stream_id=d.stream_id,
            stream_version__gt=d.stream_version,
        )
    # Due ones are the first unfinished of their order: one per order at most.
    return list(
        due_deliveries(now=now)
        .filter(same_order)
        .order_by("stream_version", "id")
        .values_list("id", flat=True)[:SENDS_PER_TASK]
    )


def _attempt(
    claim: Claimed, *, session: requests.Session, now: datetime | None, secrets: dict[int, str]
) -> DeliveryStatus:
    """POST a claimed delivery and record the outcome."""
    delivery = claim.delivery
    endpoint = delivery.endpoint
    body = body_bytes(delivery.payload)
    try:
        target_check(endpoint.url)
    except TargetRefused as exc:
        answer = Answer(None, "", f"refused: {exc}")
    else:
        if endpoint.id not in secrets:
            secrets[endpoint.id] = secret_decrypt(endpoint.secret_encrypted)
        headers = signed_headers(
            secret=secrets[endpoint.id],
            msg_id=str(delivery.event_id),
            timestamp=timezone.now(),
            body=body,
        )
        answer = http_post(endpoint.url, body, headers, session=session)
    return delivery_record(claim, answer, now=timezone.now() if now is None else now)


def delivery_record(claimed: Claimed, answer: Answer, *, now: datetime) -> DeliveryStatus:
    """Write the attempt's outcome, the endpoint's failure count, and the next try."""
    delivery = claimed.delivery
    window = timedelta(seconds=settings.WEBHOOK_RETRY_WINDOW_SECONDS)
    if answer.ok:
        status = DeliveryStatus.SUCCEEDED
        next_at = delivery.next_attempt_at
    elif now - delivery.retry_window_start >= window:
        status = DeliveryStatus.FAILED
        next_at = delivery.next_attempt_at
    else:
        status = DeliveryStatus.RETRYING
        delay = retry_delay(
            delivery.attempts,
            base=settings.WEBHOOK_RETRY_BASE_SECONDS,
            rand=random.random(),  # noqa: S311 (jitter, not a secret)
        )
        next_at = now + timedelta(seconds=delay)
    if answer.ok:
        return _record_success(claimed, answer, now=now)
    with transaction.atomic():
        updated = WebhookDelivery.objects.filter(
            id=delivery.id, lease_until=claimed.lease_until
        ).update(
            status=status,
            response_status=answer.status,
            response_body=answer.body,
            last_error=answer.error,
            next_attempt_at=next_at,
            delivered_at=now if answer.ok else None,
            lease_until=None,
        )
        if not updated:
            # Taken over after the lease ran out: the other sender's outcome stands.
            return DeliveryStatus(delivery.status)
        _endpoint_record(delivery.endpoint_id, ok=answer.ok, error=answer.error)
    return status


def _record_success(claimed: Claimed, answer: Answer, *, now: datetime) -> DeliveryStatus:
    """Write a success and reset its endpoint's failure count, in one statement.

    The common case costs one round trip rather than a transaction of two updates; the
    lease condition is the same (a delivery taken over keeps the other sender's outcome).
    """
    delivery = claimed.delivery
    table = WebhookDelivery._meta.db_table
    endpoints = WebhookEndpoint._meta.db_table
    sql = (
        f"WITH done AS (UPDATE {table} SET status = %s, response_status = %s, "  # noqa: S608
        "response_body = %s, last_error = %s, delivered_at = %s, lease_until = NULL "
        "WHERE id = %s AND lease_until = %s RETURNING endpoint_id), "
        f"reset AS (UPDATE {endpoints} SET consecutive_failures = 0 "
        "WHERE id IN (SELECT endpoint_id FROM done) AND consecutive_failures <> 0) "
        "SELECT count(*) FROM done"
    )
    params = [
        str(DeliveryStatus.SUCCEEDED),
        answer.status,
        answer.body,
        answer.error,
        now,
        delivery.id,
        claimed.lease_until,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (updated,) = cursor.fetchone() or (0,)
    if not updated:
        # Taken over after the lease ran out: the other sender's outcome stands.
        return DeliveryStatus(delivery.status)
    return DeliveryStatus.SUCCEEDED


def _endpoint_record(endpoint_id: int, *, ok: bool, error: str) -> None:
    if ok:
        WebhookEndpoint.objects.filter(id=endpoint_id).exclude(consecutive_failures=0).update(
            consecutive_failures=0
        )
        return
    WebhookEndpoint.objects.filter(id=endpoint_id).update(
        consecutive_failures=F("consecutive_failures") + 1
    )
    threshold = settings.WEBHOOK_DISABLE_AFTER_FAILURES
    disabled = WebhookEndpoint.objects.filter(
        id=endpoint_id, is_active=True, consecutive_failures__gte=threshold
    ).update(
        is_active=False,
        disabled_reason=f"disabled after {threshold} consecutive failed attempts; last: {error}"[
            :500
        ],
    )
    if disabled:
        logger.warning("webhook endpoint %s disabled after %s failures", endpoint_id, threshold)


def _dispatch_next() -> None:
    from webhooks.tasks import dispatch_due

    dispatch_due.delay()


def deliveries_dispatch_due(
    *,
    now: datetime | None = None,
    limit: int = 500,
    send: Callable[[list[int], datetime], None] | None = None,
) -> list[int]:
    """Queue send tasks for the deliveries due now and not queued yet; return their ids.

    Each is held for ``QUEUED`` and its send is handed the hold, so the passes that follow
    (every second) queue only what has become due since. One task takes several deliveries
    to one endpoint (``send_batches``).
    """
    now = now or timezone.now()
    rows, queued = _hold(due_deliveries(now=now), now=now, limit=limit)
    for batch in send_batches(rows):
        (send or _queue_send)(batch, queued)
    return [i for i, _ in rows]


def deliveries_queue_new(
    *, endpoint_ids: list[int], event_ids: list[UUID], now: datetime | None = None
) -> list[int]:
    """Hold and queue (after commit) the sends of these events' deliveries that are due.

    The relay calls this in its own transaction for the deliveries it has just written, so
    their sends are queued as soon as they commit rather than at the dispatch's next pass.
    The rules are the dispatch's: a delivery behind an unfinished earlier one of its order
    is left for the send that finishes that one, and each held one is queued once.
    """
    now = now or timezone.now()
    fresh = due_deliveries(now=now).filter(endpoint_id__in=endpoint_ids, event_id__in=event_ids)
    rows, queued = _hold(fresh, now=now, limit=None)
    if rows:
        batches = send_batches(rows)

        def queue() -> None:
            for batch in batches:
                _queue_send(batch, queued)

        transaction.on_commit(queue)
    return [i for i, _ in rows]


def _hold(
    query: Any, *, now: datetime, limit: int | None
) -> tuple[list[tuple[int, int]], datetime]:
    """Hold the deliveries of ``query`` for ``QUEUED``; return (id, endpoint id) and the hold."""
    queued = now + QUEUED
    with transaction.atomic():
        # SKIP LOCKED: two dispatches at once share the due deliveries out between them.
        rows = list(
            query.select_for_update(skip_locked=True, of=("self",)).values_list(
                "id", "endpoint_id"
            )[:limit]
        )
        if rows:
            WebhookDelivery.objects.filter(id__in=[i for i, _ in rows]).update(lease_until=queued)
    return rows, queued


def send_batches(rows: list[tuple[int, int]]) -> list[list[int]]:
    """Split (delivery id, endpoint id) pairs into the id lists of one send task each.

    Per endpoint, so a slow receiver delays only its own; at most ``SENDS_PER_TASK``, and
    a short backlog is spread over ``SPREAD`` tasks so that the worker processes share it.
    """
    by_endpoint: dict[int, list[int]] = {}
    for delivery_id, endpoint_id in rows:
        by_endpoint.setdefault(endpoint_id, []).append(delivery_id)
    batches: list[list[int]] = []
    for ids in by_endpoint.values():
        size = max(1, min(SENDS_PER_TASK, -(-len(ids) // SPREAD)))
        batches += [ids[n : n + size] for n in range(0, len(ids), size)]
    return batches


def _queue_send(delivery_ids: list[int], queued: datetime) -> None:
    from webhooks.tasks import send_deliveries

    send_deliveries.delay(delivery_ids=delivery_ids, queued=queued.isoformat())


def delivery_redeliver(*, delivery_id: int, now: datetime | None = None) -> WebhookDelivery:
    """Offer a delivery again now, whatever its status (same body, same ``webhook-id``)."""
    now = now or timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(id=delivery_id)
        delivery.status = DeliveryStatus.PENDING
        delivery.next_attempt_at = now
        delivery.lease_until = None
        # The retry window counts from the redelivery.
        delivery.retry_window_start = now
        delivery.save(
            update_fields=["status", "next_attempt_at", "lease_until", "retry_window_start"]
        )
        transaction.on_commit(_dispatch_next)
    return delivery
