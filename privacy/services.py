"""Write services of personal data: erase a customer's keys, re-wrap keys under a new KEK."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models.functions import Now

from privacy.keyring import key_encryption_keys, unwrap, wrap
from privacy.models import CustomerKey, Erasure


@dataclass(frozen=True)
class ErasureDone:
    """What an erasure answers: the customer, how many of their orders, when."""

    customer_id: str
    orders: int
    erased_at: datetime
    #: False when the customer was already erased and nothing new was (a repeat).
    erased_now: bool


def erase_keys(
    *, customer_id: str, reason: str, actor: str, count_orders: Callable[[str], int]
) -> ErasureDone:
    """Destroy the customer's data keys and record the erasure; idempotent.

    One durable transaction. The live key is locked for update first, so a placement
    sealing under it (key-share lock) either commits before (its order is erased with the rest)
    or finds no live key once this commits (and starts a new one). ``count_orders`` counts
    the customer's orders, read after the lock. A customer already erased, with no key made
    since, gets the last erasure's answer and nothing is recorded again.
    """
    with transaction.atomic(durable=True):
        live = list(
            CustomerKey.objects.select_for_update()
            .filter(customer_id=customer_id, erased_at__isnull=True)
            .values_list("id", flat=True)
        )
        last = Erasure.objects.filter(customer_id=customer_id).order_by("-erased_at", "-id").first()
        if not live and last is not None:
            return ErasureDone(customer_id, last.orders, last.erased_at, erased_now=False)
        CustomerKey.objects.filter(id__in=live).update(wrapped_key=None, erased_at=Now())
        record = Erasure.objects.create(
            customer_id=customer_id,
            actor=actor,
            reason=reason,
            erased_at=Now(),
            orders=count_orders(customer_id),
            keys=len(live),
        )
        record.refresh_from_db(fields=["erased_at"])
    return ErasureDone(customer_id, record.orders, record.erased_at, erased_now=True)


def customers_erased(customer_ids: list[str]) -> set[str]:
    """Return those of ``customer_ids`` with an erasure on record (one query)."""
    return set(
        Erasure.objects.filter(customer_id__in=set(customer_ids)).values_list(
            "customer_id", flat=True
        )
    )


def customer_keys_rewrap(*, batch_size: int = 500) -> int:
    """Re-wrap up to ``batch_size`` live data keys under the current KEK; return how many.

    Keys wrapped by a retired KEK (``PERSONAL_DATA_PREVIOUS_KEYS``) are unwrapped and wrapped
    again, each row locked (a placement sealing under it waits, or is waited for); the data
    they encrypt is untouched. 0 when every live key is under the current KEK.
    """
    current, _ = key_encryption_keys()
    with transaction.atomic(durable=True):
        batch = list(
            CustomerKey.objects.select_for_update()
            .filter(wrapped_key__isnull=False)
            .exclude(kek_id=current)
            .values_list("id", "wrapped_key", "kek_id")[:batch_size]
        )
        for key_id, wrapped, kek_id in batch:
            raw = unwrap(str(key_id), bytes(wrapped or b""), kek_id)
            new_wrapped, new_kek = wrap(raw, str(key_id))
            CustomerKey.objects.filter(id=key_id).update(wrapped_key=new_wrapped, kek_id=new_kek)
    return len(batch)
