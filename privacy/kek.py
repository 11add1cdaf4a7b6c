"""The key-encryption key (KEK): parsed from the environment, or a development one.

Plain Python (settings import it before Django is set up). The KEK is 32 random bytes in
URL-safe base64 (``PERSONAL_DATA_KEY``); it wraps every customer's data key. Development and
test runs without it get one generated once into ``.local/`` (readable by its owner only),
so restarts keep reading the data they wrote; production refuses to start without it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from pathlib import Path

from infrastructure.local_secrets import local_secret

KEY_BYTES = 32
DEV_KEY_FILE_NAME = "personal-data-key"


class InvalidKey(ValueError):
    """Refuse a key-encryption key that is not 32 bytes of URL-safe base64."""


def new_key() -> str:
    """Return a fresh key-encryption key, as ``PERSONAL_DATA_KEY`` holds it."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_key(text: str) -> bytes:
    """Return the 32 bytes of a key given as URL-safe base64; raise InvalidKey otherwise."""
    try:
        # Strict: no stray characters, nothing after the padding.
        raw = base64.b64decode(text.strip().encode(), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKey("not URL-safe base64") from None
    if len(raw) != KEY_BYTES:
        raise InvalidKey(f"{len(raw)} bytes, not {KEY_BYTES}")
    return raw


def key_id(raw: bytes) -> str:
    """Name a key-encryption key without revealing it: what each wrapped key records."""
    return hashlib.sha256(b"personal-data-kek:" + raw).hexdigest()[:16]


def dev_key(local_dir: Path) -> str:
    """Return this checkout's development key, generating it on first use."""
    return local_secret(local_dir / DEV_KEY_FILE_NAME, new_key)
