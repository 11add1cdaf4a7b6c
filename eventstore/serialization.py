"""Turn event data into the JSON the store keeps, and back.

Domain events become plain JSON-ready dictionaries in ``eventstore.registry`` (by their
dataclass fields); this module is the last step, between those dictionaries and the text
PostgreSQL stores as ``jsonb``. Plain Python: the in-memory store uses it too.
"""

from __future__ import annotations

import json
from typing import Any


def json_text(value: Any) -> str:
    """Return ``value`` as compact JSON text (what a ``jsonb`` parameter is sent as)."""
    return json.dumps(value, separators=(",", ":"))


def json_value(value: Any) -> Any:
    """Return the Python value of a ``jsonb`` column as a cursor handed it over.

    Django's psycopg backend hands ``jsonb`` over as text so that ``JSONField`` can decode it
    itself; a plain psycopg cursor hands over the decoded value.
    """
    return json.loads(value) if isinstance(value, str | bytes) else value


def json_round_trip(value: Any) -> Any:
    """Return ``value`` as storing it and reading it back would give it (the memory store)."""
    return json.loads(json.dumps(value))
