"""Idempotency keys for POST views: the same key and body get the first answer, once.

A view hands its work to :meth:`IdempotencyKeys.respond` as a function of one argument, a
request id derived from the user and the key. The kit never shares a transaction with that
work (the services run their own durable ones), so each of its steps stands alone:

1. Take a session-level advisory lock on (user, key); when another request holds it, the
   answer is 409 at once: that request is still in flight.
2. Claim the key in its own short transaction: a record with the request's fingerprint and
   no answer yet. A record with another fingerprint is a 422; one with an answer is replayed.
3. Run the work, passing the request id: the same id every time this user sends this key.
4. Store the answer in its own transaction, then release the lock.

A crash between the work's commit and step 4 leaves a claim without an answer. The retry with
the same body runs the work again with the same request id, and the work recognises what it
already did (``order_place`` refuses an order id already placed, and the view answers with the
order as it stands). A retry with another body is a 422, as it would have been. Work that
fails with a client error (4xx) created nothing: its claim is withdrawn and the key is free.

Records expire ``IDEMPOTENCY_TTL_HOURS`` (24 by default) after the key was first used: a key
sent again after that is a new request (its expired record is replaced under the key's lock),
and ``manage.py purge_expired`` deletes expired records. The work still gets the same request
id, so a late retry of an order that was placed finds that order and answers with it.

A record keeps the request's fingerprint (a digest) and the answer, never the request body:
what a client sent that must not be stored (a payment token) is not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, models, transaction
from django.utils import timezone
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response

from infrastructure.api.errors import error_response

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
REPLAYED_HEADER = "Idempotent-Replayed"
#: The status a record holds while its request runs (no HTTP status is 0).
CLAIMED = 0

#: The schema of the header, for a view's ``extend_schema`` parameters: printable ASCII, and
#: no spaces around the value, since HTTP drops them.
KEY_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_KEY_LENGTH,
    "pattern": "^[!-~]([ -~]*[!-~])?$",
}

_REQUEST_ID_NAMESPACE = uuid.UUID("2b0f3c1e-6d5a-4e0e-9a57-3f1d3c9e8b21")

#: How long a record answers replays when ``IDEMPOTENCY_TTL_HOURS`` is not set.
DEFAULT_TTL_HOURS = 24


def expired_before(now: datetime | None = None) -> datetime:
    """Return the moment before which a record was created for it to have expired."""
    hours = int(getattr(settings, "IDEMPOTENCY_TTL_HOURS", DEFAULT_TTL_HOURS))
    return (now or timezone.now()) - timedelta(hours=hours)


class RequestInFlight(Exception):
    """Say that a request with this key is still being processed."""


class IdempotencyKeyReused(Exception):
    """Refuse a key already used for a different request."""


class InvalidIdempotencyKey(ValueError):
    """Refuse a key that is empty, too long or not printable ASCII."""


def check_key(key: str) -> str:
    """Return ``key`` when it is 1 to 255 printable ASCII characters; raise otherwise."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidIdempotencyKey(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters."
        )
    return key


def request_fingerprint(*, method: str, path: str, data: Any) -> str:
    """Return a digest of what makes two requests "the same request"."""
    canonical = json.dumps(
        {"method": method, "path": path, "data": data}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def request_id(*, user_id: int, key: str) -> uuid.UUID:
    """Return the id of the work done for this user's key: the same on every retry.

    Keyed by the secret key, so an id (an order's, say) tells nothing of the key and cannot
    be guessed from it.
    """
    name = hmac.new(
        settings.SECRET_KEY.encode(), f"{user_id}:{key}".encode(), hashlib.sha256
    ).hexdigest()
    return uuid.uuid5(_REQUEST_ID_NAMESPACE, name)


def _lock_id(user_id: int, key: str) -> int:
    digest = hashlib.blake2b(f"idem:{user_id}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class IdempotencyKeys:
    """Run POST views' work once per (user, key), storing the answers in ``records``.

    ``records`` is a model with the fields ``user_id``, ``key``, ``request_hash``,
    ``response_status``, ``response_body``, ``response_location`` and ``created_at`` (set
    on insert), unique on (``user_id``, ``key``). ``stored`` turns an answer's body into
    what is kept of it, and ``replayed`` turns that back into the body a replay answers (an
    app keeping no personal data in the records leaves it out, and fills it in again as it
    stands then).
    """

    records: type[models.Model]
    stored: Callable[[Any], Any] = field(default=lambda body: body)
    replayed: Callable[[Any], Any] = field(default=lambda body: body)

    def purge_expired(self, *, now: datetime | None = None, dry_run: bool = False) -> int:
        """Delete the records that have expired; return how many (would be, with ``dry_run``).

        A claim still in flight is past its TTL only if its request ran for a day: deleting
        it frees the key, which is what expiry means.
        """
        expired = self.records._default_manager.filter(created_at__lt=expired_before(now))
        if dry_run:
            return int(expired.count())
        deleted, _ = expired.delete()
        return int(deleted)

    def respond(self, request: Request, work: Callable[[uuid.UUID | None], Response]) -> Response:
        """Answer ``request``: by ``work`` (given the request id), or by replaying.

        Without the header, ``work`` runs with None and nothing is recorded. A malformed key
        is a 400, a key in flight a 409, a key used with another request a 422.
        """
        key = request.headers.get(HEADER)
        if key is None:
            return work(None)
        try:
            check_key(key)
        except InvalidIdempotencyKey as exc:
            return error_response(400, str(exc))
        user_id = int(request.user.pk or 0)
        fingerprint = request_fingerprint(method="POST", path=request.path, data=request.data)
        try:
            return self._run(user_id, key, fingerprint, work)
        except RequestInFlight as exc:
            return error_response(409, str(exc))
        except IdempotencyKeyReused as exc:
            return error_response(422, str(exc))

    def _run(
        self,
        user_id: int,
        key: str,
        fingerprint: str,
        work: Callable[[uuid.UUID | None], Response],
    ) -> Response:
        lock = _lock_id(user_id, key)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock])
            row = cursor.fetchone()
        if not (row and row[0]):
            raise RequestInFlight(f"a request with {HEADER} {key!r} is still in flight")
        try:
            record = self._claim(user_id, key, fingerprint)
            if record.request_hash != fingerprint:  # type: ignore[attr-defined]
                raise IdempotencyKeyReused(
                    f"{HEADER} {key!r} was already used with a different request"
                )
            if record.response_status != CLAIMED:  # type: ignore[attr-defined]
                return _replay(record, self.replayed)
            try:
                response = work(request_id(user_id=user_id, key=key))
            except APIException as exc:
                if 400 <= exc.status_code < 500:
                    self._withdraw(record)
                raise
            if not 200 <= response.status_code < 300:
                self._withdraw(record)
                return response
            self._store(record, response)
            return response
        finally:
            _unlock(lock)

    def _claim(self, user_id: int, key: str, fingerprint: str) -> models.Model:
        # Under the key's lock: no other request can claim it between the read and the insert.
        with transaction.atomic(durable=True):
            # An expired record answers nothing any more: the key starts afresh.
            self.records._default_manager.filter(
                user_id=user_id, key=key, created_at__lt=expired_before()
            ).delete()
            record, _ = self.records._default_manager.get_or_create(
                user_id=user_id,
                key=key,
                defaults={
                    "request_hash": fingerprint,
                    "response_status": CLAIMED,
                    "response_body": {},
                },
            )
        return record

    def _withdraw(self, record: models.Model) -> None:
        with transaction.atomic(durable=True):
            self.records._default_manager.filter(pk=record.pk, response_status=CLAIMED).delete()

    def _store(self, record: models.Model, response: Response) -> None:
        with transaction.atomic(durable=True):
            self.records._default_manager.filter(pk=record.pk).update(
                response_status=response.status_code,
                response_body=self.stored(response.data),
                response_location=response.get("Location", ""),
            )


def _unlock(lock: int) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock])
    except DatabaseError:
        # The session is unusable; closing it is what releases its locks.
        connection.close()


def _replay(record: Any, replayed: Callable[[Any], Any]) -> Response:
    response = Response(replayed(record.response_body), status=record.response_status)
    if record.response_location:
        response["Location"] = record.response_location
    response[REPLAYED_HEADER] = "true"
    return response
