"""The one JSON parser every API view uses: DRF's, with a limit on how deep a body may nest.

Python's parser recurses once per level, and so do everything that later walks the value
(serializers, the idempotency fingerprint, error rendering): a body a thousand levels deep
ends in a RecursionError, a 500, on whichever endpoint receives it. No request this API takes
nests more than a few levels, so anything past ``MAX_JSON_DEPTH`` is refused as a 400 before
any of that code sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

#: The deepest nesting accepted, counting the outermost object or array as 1. An order body
#: is 4 deep (the order, its items, a line); the rest is headroom for clients' extra fields.
MAX_JSON_DEPTH = 32

_TOO_DEEP = f"JSON body is nested more than {MAX_JSON_DEPTH} levels deep."


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Return whether ``value`` nests containers more than ``limit`` deep.

    Iterative, so a deep value cannot exhaust the stack checking itself.
    """
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth + 1 > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


class DepthLimitedJSONParser(JSONParser):
    """Parse as DRF does; refuse a body nested deeper than ``MAX_JSON_DEPTH`` with a 400."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            # The C scanner gives up cleanly past the interpreter's recursion limit.
            raise ParseError(_TOO_DEEP) from None
        if json_depth_exceeds(data, MAX_JSON_DEPTH):
            raise ParseError(_TOO_DEEP)
        return data
