"""The orders API's idempotency keys: the API kit's, stored in ``IdempotencyRecord``."""

from __future__ import annotations

from infrastructure.api.idempotency import IdempotencyKeys
from orders.models import IdempotencyRecord

order_keys = IdempotencyKeys(records=IdempotencyRecord)
