"""Re-wrap every customer's data key under the current key-encryption key.

Rotation: set PERSONAL_DATA_KEY to the new key and PERSONAL_DATA_PREVIOUS_KEYS to the old one
(every process), run this, then drop the old key from PERSONAL_DATA_PREVIOUS_KEYS.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from privacy.keyring import KeyUnavailable
from privacy.services import customer_keys_rewrap


class Command(BaseCommand):
    help = (
        "Re-wrap customers' data keys under PERSONAL_DATA_KEY "
        "(the old one in PERSONAL_DATA_PREVIOUS_KEYS)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rewrapped = 0
        try:
            # A batch per transaction: placements wait on a few locked keys at a time only.
            while batch := customer_keys_rewrap():
                rewrapped += batch
        except KeyUnavailable as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"re-wrapped {rewrapped} key(s) under the current key")
