"""Customers' data keys and the sealing of personal data under them: the one crypto module.

Each customer's personal data is encrypted with AES-256-GCM (``cryptography``'s AESGCM)
under a data key of their own; the data key is stored wrapped by the key-encryption key
(``settings.PERSONAL_DATA_KEY``), also with AES-GCM, its id as associated data. A sealed
value is an envelope ``{"key": <key id>, "ct": <base64 of nonce + ciphertext>}``: JSON, so
it travels in events, read models and saga contexts as it is, and says which key opens it.

Erasure wins: whether a key still exists is asked of the database each time something is
sealed or opened (one query for a whole page of orders), and no data key is kept in memory
beyond the call that unwrapped it. Unwrapping (AES-GCM of 32 bytes) costs microseconds
beside that query, so caching unwrapped keys would save nothing worth keeping an erased
customer's key alive in a process for.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import connection

from infrastructure.db import server_binding_cursor
from privacy import kek
from privacy.models import CustomerKey

NONCE_BYTES = 12
_TABLE = connection.ops.quote_name(CustomerKey._meta.db_table)

# The live key of a customer, key-share-locked (the lightest lock FOR UPDATE conflicts with;
# placements for one customer do not block each other): an erasure (which locks it for
# update) waits for this transaction, or this one, arriving after the erasure committed,
# finds no live key.
_LIVE_KEY_SQL = f"""
SELECT id, wrapped_key, kek_id FROM {_TABLE}
WHERE customer_id = %s AND erased_at IS NULL FOR KEY SHARE
"""  # noqa: S608
_NEW_KEY_SQL = f"""
INSERT INTO {_TABLE} (id, customer_id, wrapped_key, kek_id, created_at)
VALUES (%s, %s, %s, %s, now())
ON CONFLICT (customer_id) WHERE erased_at IS NULL DO NOTHING
RETURNING id
"""  # noqa: S608


class KeyUnavailable(Exception):
    """Say that a key's wrapping key is not configured (a rotation left it out)."""


@functools.cache
def _keks(current: str, previous: tuple[str, ...]) -> dict[str, AESGCM]:
    ring = {}
    for text in (current, *previous):
        raw = kek.parse_key(text)
        ring[kek.key_id(raw)] = AESGCM(raw)
    return ring


def key_encryption_keys() -> tuple[str, dict[str, AESGCM]]:
    """Return the current KEK's id and every configured KEK by id (current and retired)."""
    current = kek.key_id(kek.parse_key(settings.PERSONAL_DATA_KEY))
    return current, _keks(settings.PERSONAL_DATA_KEY, tuple(settings.PERSONAL_DATA_PREVIOUS_KEYS))


def wrap(data_key: bytes, key_id: str) -> tuple[bytes, str]:
    """Return ``data_key`` wrapped by the current KEK, and that KEK's id."""
    current, ring = key_encryption_keys()
    nonce = os.urandom(NONCE_BYTES)
    return nonce + ring[current].encrypt(nonce, data_key, key_id.encode()), current


def unwrap(key_id: str, wrapped: bytes, kek_id: str) -> bytes:
    """Return the raw data key that ``wrapped`` holds (the KEK named by ``kek_id``)."""
    _, ring = key_encryption_keys()
    wrapping = ring.get(kek_id)
    if wrapping is None:
        raise KeyUnavailable(
            f"data key {key_id} is wrapped by KEK {kek_id}, which is not configured "
            "(PERSONAL_DATA_KEY / PERSONAL_DATA_PREVIOUS_KEYS)"
        )
    return wrapping.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], key_id.encode())


def _unwrapped(key_id: str, wrapped: bytes, kek_id: str) -> AESGCM:
    return AESGCM(unwrap(key_id, wrapped, kek_id))


@dataclass(frozen=True)
class SealingKey:
    """A customer's live data key, key-share-locked by the transaction that asked for it.

    Held wrapped: most orders come without a contact and only need the key's id and its
    lock, so the key is unwrapped only by :meth:`seal`.
    """

    id: str
    wrapped: bytes
    kek_id: str

    def seal(self, value: Any) -> dict[str, str]:
        """Return the envelope of ``value`` (any JSON) under this key."""
        cipher = _unwrapped(self.id, self.wrapped, self.kek_id)
        nonce = os.urandom(NONCE_BYTES)
        plain = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        sealed = nonce + cipher.encrypt(nonce, plain, self.id.encode())
        return {"key": self.id, "ct": base64.b64encode(sealed).decode()}


def sealing_key(customer_id: str) -> SealingKey:
    """Return the customer's live key (made now if they have none), locked until commit.

    Must run inside the transaction that writes what is sealed: the key-share lock is what
    orders it with an erasure of the same customer (``erase_keys``). The result must be read
    at once (pipelined transactions included).
    """
    while True:
        # Server-binding, so that this read (one per order placed) is prepared, as the
        # order's other statements are: planning it (a partial index) costs more than
        # running it.
        with server_binding_cursor() as cursor:
            cursor.execute(_LIVE_KEY_SQL, [customer_id])
            row = cursor.fetchone()
            if row is not None:
                return SealingKey(str(row[0]), bytes(row[1]), row[2])
            key_id = str(uuid.uuid4())
            raw = AESGCM.generate_key(bit_length=256)
            wrapped, kek_id = wrap(raw, key_id)
            cursor.execute(_NEW_KEY_SQL, [key_id, customer_id, wrapped, kek_id])
            if cursor.fetchone() is not None:
                return SealingKey(key_id, wrapped, kek_id)
        # Another transaction made the customer's key first (and committed): use theirs.


def is_envelope(value: Any) -> bool:
    return isinstance(value, Mapping) and "key" in value and "ct" in value


def live_keys(key_ids: Iterable[str]) -> dict[str, AESGCM]:
    """Return the ciphers of the keys among ``key_ids`` not erased (one query)."""
    wanted = sorted({k for k in key_ids if k})
    if not wanted:
        return {}
    rows = CustomerKey.objects.filter(id__in=wanted, wrapped_key__isnull=False).values_list(
        "id", "wrapped_key", "kek_id"
    )
    return {str(i): _unwrapped(str(i), bytes(w or b""), kid) for i, w, kid in rows}


def open_envelope(envelope: Any, ciphers: Mapping[str, AESGCM]) -> Any:
    """Return what ``envelope`` sealed, or None when its key is erased (or it is no envelope).

    ``ciphers`` is ``live_keys`` of the envelopes' keys.
    """
    if not is_envelope(envelope):
        return None
    cipher = ciphers.get(str(envelope["key"]))
    if cipher is None:
        return None
    try:
        sealed = base64.b64decode(envelope["ct"])
        plain = cipher.decrypt(
            sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], str(envelope["key"]).encode()
        )
    except (InvalidTag, binascii.Error, ValueError):
        return None
    return json.loads(plain)
