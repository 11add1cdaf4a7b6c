"""The orders API's idempotency keys: the API kit's, stored in ``IdempotencyRecord``.

A stored answer keeps no contact (personal data is stored only sealed, and erasable): a
replay shows the order's contact as it stands now, null once the customer is erased.
"""

from __future__ import annotations

from typing import Any

from infrastructure.api.idempotency import IdempotencyKeys
from orders.models import IdempotencyRecord, OrderSummary
from orders.personal_data import personal_views, without_contact


def reopened(body: Any) -> Any:
    """Return a stored order body with its personal data as the order's row opens now."""
    if not isinstance(body, dict) or "id" not in body or "contact" not in body:
        return body
    row = (
        OrderSummary.objects.filter(id=body["id"])
        .only("id", "customer_id", "contact", "customer_key")
        .first()
    )
    if row is None:
        return body
    view = personal_views([row])[str(row.id)]
    return {
        **body,
        "contact": view.contact,
        "personal_data_erased": view.personal_data_erased,
    }


order_keys = IdempotencyKeys(records=IdempotencyRecord, stored=without_contact, replayed=reopened)
