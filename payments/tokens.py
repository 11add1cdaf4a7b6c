"""Decide what of a payment token may be stored: its name, never anything like card data."""

from __future__ import annotations

import re

#: Twelve or more digits, possibly grouped by spaces or dashes: the shape of a card number.
_CARD_NUMBER_LIKE = re.compile(r"\d(?:[ -]?\d){11,}")
REDACTED = "[redacted]"
MAX_TOKEN_LENGTH = 64


def storable_token(token: str) -> str:
    """Return the token as it may be stored: cut to its name's length, redacted if card-like.

    Tokens are the processor's names for a card ("tok_visa"); a client that sends a card
    number in their place must not have it written to our tables or logs.
    """
    if _CARD_NUMBER_LIKE.search(token):
        return REDACTED
    return token.strip()[:MAX_TOKEN_LENGTH]
