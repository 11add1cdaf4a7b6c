"""Query parameters read strictly: given once, and in the form the schema documents."""

from __future__ import annotations

import re
from collections.abc import Iterable

from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

_WHOLE_NUMBER = re.compile(r"-?[0-9]+")


def query_param(request: Request, name: str) -> str | None:
    """Return the parameter's one value, None when absent; 400 if repeated or holding NUL."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise ValidationError({name: ["Give this parameter once."]})
    value = str(values[0])
    if "\x00" in value:
        # PostgreSQL cannot compare text holding NUL: refused here rather than as a 500.
        raise ValidationError({name: ["Null characters are not allowed."]})
    return value


def choice_param(request: Request, name: str, choices: Iterable[str]) -> str | None:
    """Return the parameter when it is one of ``choices`` (None when absent); 400 otherwise."""
    value = query_param(request, name)
    allowed = list(choices)
    if value is not None and value not in allowed:
        raise ValidationError({name: [f"Must be one of {', '.join(allowed)}."]})
    return value


def int_param(request: Request, name: str, *, minimum: int | None = None) -> int | None:
    """Return the parameter as an integer (ASCII digits only); 400 when it is not one."""
    value = query_param(request, name)
    if value is None:
        return None
    if not _WHOLE_NUMBER.fullmatch(value) or (minimum is not None and int(value) < minimum):
        floor = "" if minimum is None else f" from {minimum}"
        raise ValidationError({name: [f"Must be a whole number{floor}."]})
    return int(value)
