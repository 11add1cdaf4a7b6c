"""Idempotency keys for POST requests: the same key and body return the first response.

The action is a service that owns its transaction; the record is written right after it
commits. While the first request with a key is still running, it holds a session-level
advisory lock on that key; a second request with the key sees the lock taken and is told the
first is in flight (409), instead of waiting or doing the work twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection

from orders.models import IdempotencyRecord

MAX_KEY_LENGTH = 255


class RequestInFlight(Exception):
    """Say that a request with this key is still being processed."""


class IdempotencyKeyReused(Exception):
    """Refuse a key already used for a different request."""


class InvalidIdempotencyKey(ValueError):
    """Refuse a key that is empty, too long or not printable ASCII."""


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: Any
    location: str = ""
    replayed: bool = False


def request_fingerprint(*, method: str, path: str, data: Any) -> str:
    """Return a digest of what makes two requests "the same request"."""
    canonical = json.dumps(
        {"method": method, "path": path, "data": data}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidIdempotencyKey(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters."
        )
    return key


def _lock_id(user_id: int, key: str) -> int:
    digest = hashlib.blake2b(f"idem:{user_id}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def idempotent_request(
    *,
    user_id: int,
    key: str,
    fingerprint: str,
    action: Callable[[], StoredResponse],
) -> StoredResponse:
    """Run ``action`` once per (user, key); replay its response for the same request.

    Raises ``RequestInFlight`` while another request holds the key and
    ``IdempotencyKeyReused`` when the key came with a different request. A response whose
    action raised is not stored: nothing was created, so a retry runs it again.
    """
    check_key(key)
    lock = _lock_id(user_id, key)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock])
        row = cursor.fetchone()
    if not (row and row[0]):
        raise RequestInFlight(f"a request with Idempotency-Key {key!r} is still in flight")
    try:
        existing = IdempotencyRecord.objects.filter(user_id=user_id, key=key).first()
        if existing is not None:
            if existing.request_hash != fingerprint:
                raise IdempotencyKeyReused(
                    f"Idempotency-Key {key!r} was already used with a different request"
                )
            return StoredResponse(
                existing.response_status,
                existing.response_body,
                existing.response_location,
                replayed=True,
            )
        response = action()
        IdempotencyRecord.objects.create(
            user_id=user_id,
            key=key,
            request_hash=fingerprint,
            response_status=response.status,
            response_body=response.body,
            response_location=response.location,
        )
        return response
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock])
