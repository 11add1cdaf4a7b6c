"""An order's personal data (its ``contact``): sealed on the way in, opened on the way out.

The one place where orders meet the keyring (``privacy.keyring``). What is stored (the
``OrderCreated`` event, the read model's row, the placing saga's context) holds the contact
sealed under the customer's data key, and every order names that key (``customer_key``),
contact or not: once the key is erased, every order of that customer reads ``contact:
null`` and ``personal_data_erased: true``. Orders from before personal data was kept name no
key; theirs counts as erased once the customer has an erasure on record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from privacy.keyring import AESGCM, live_keys, open_envelope, sealing_key
from privacy.services import customers_erased

#: The event whose data holds a sealed contact.
SEALED_EVENT = "OrderCreated"


@dataclass(frozen=True)
class Sealed:
    """A new order's personal data as it is stored: the envelope (or None) and its key."""

    contact: dict[str, str] | None
    customer_key: str


def seal_for_customer(customer_id: str, contact: Mapping[str, Any] | None) -> Sealed:
    """Seal ``contact`` under the customer's live key; run in the placing transaction."""
    key = sealing_key(customer_id)
    return Sealed(contact=None if contact is None else key.seal(dict(contact)), customer_key=key.id)


@dataclass(frozen=True)
class PersonalView:
    """What the API and the admin show of an order's personal data."""

    contact: Any
    personal_data_erased: bool


NOTHING_ERASED = PersonalView(contact=None, personal_data_erased=False)


def personal_views(orders: Iterable[Any]) -> dict[str, PersonalView]:
    """Open the personal data of ``orders`` (anything with the read model's fields).

    Keyed by ``str(order.id)``; two queries at most, whatever the number of orders.
    """
    orders = list(orders)
    ciphers = live_keys(getattr(o, "customer_key", "") for o in orders)
    legacy = [o.customer_id for o in orders if not getattr(o, "customer_key", "")]
    erased_customers = customers_erased(legacy) if legacy else set()
    views = {}
    for order in orders:
        key = getattr(order, "customer_key", "")
        erased = key not in ciphers if key else order.customer_id in erased_customers
        contact = None if erased else open_envelope(getattr(order, "contact", None), ciphers)
        views[str(order.id)] = PersonalView(contact=contact, personal_data_erased=erased)
    return views


def event_ciphers(events: Iterable[Any]) -> dict[str, AESGCM]:
    """Return the live keys that open the contacts of ``events`` (one query)."""
    return live_keys(
        str(e.data.get("customer_key", "")) for e in events if e.event_type == SEALED_EVENT
    )


def event_data_opened(event: Any, ciphers: Mapping[str, AESGCM]) -> dict[str, Any]:
    """Return the event's data with its contact opened (None once erased)."""
    data = dict(event.data)
    if event.event_type == SEALED_EVENT and "contact" in data:
        data["contact"] = open_envelope(data["contact"], ciphers)
    return data


def without_contact(body: Any) -> Any:
    """Return an order's API body with its contact left out: what is stored of an answer."""
    if isinstance(body, dict) and body.get("contact") is not None:
        return {**body, "contact": None}
    return body
