"""Fingerprint a payment token: recognise a card again without storing its token."""

from __future__ import annotations

from django.utils.crypto import salted_hmac

_SALT = "payments.tokens.fingerprint"


def token_fingerprint(token: str) -> str:
    """Return a keyed digest (HMAC-SHA256 under the secret key) of ``token``, 64 hex digits.

    Keyed, so a dump of the table does not let anyone try the test tokens' names (or card
    numbers a client sent in their place) against it.
    """
    return salted_hmac(_SALT, token, algorithm="sha256").hexdigest()
