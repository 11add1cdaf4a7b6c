"""Signing secrets: made as Standard Webhooks says, kept encrypted at rest.

A secret signs every delivery, so it must be readable by the sender: it cannot be hashed.
It is encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under a key derived by HKDF from
``WEBHOOK_SECRET_KEY`` (or ``SECRET_KEY`` when that is unset). A database dump alone does not
reveal the secrets; whoever has both the dump and the key does. Rotating the key makes the
stored secrets unreadable: rotate endpoints' secrets with it.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

PREFIX = "whsec_"


def secret_generate() -> str:
    """Return a new secret: ``whsec_`` and 32 random bytes in base64."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _fernet() -> Fernet:
    material = (getattr(settings, "WEBHOOK_SECRET_KEY", "") or settings.SECRET_KEY).encode()
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"backoffice webhook secrets"
    ).derive(material)
    return Fernet(base64.urlsafe_b64encode(key))


def secret_encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def secret_decrypt(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()
