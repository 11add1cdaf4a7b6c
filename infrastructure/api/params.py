"""Query parameters read strictly: given once, and in the form the schema documents."""

from __future__ import annotations

import re
from collections.abc import Iterable

from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

#: A sign and at most 18 digits: every such value fits PostgreSQL's bigint, and no page,
#: size or version comes near it. Longer strings are refused before ``int()`` sees them,
#: which refuses more than 4300 digits with a ValueError (a 500) and is slow below that.
MAX_DIGITS = 18
#: The largest value accepted, for the schema's ``maximum``.
MAX_INT_PARAM = 10**MAX_DIGITS - 1
_WHOLE_NUMBER = re.compile(rf"-?[0-9]{{1,{MAX_DIGITS}}}")


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


def int_param(
    request: Request,
    name: str,
    *,
    minimum: int | None = None,
    below_minimum: str | None = None,
) -> int | None:
    """Return the parameter as an integer of ASCII digits; 400 when it is not one.

    Every API view reads its integer parameters here. A value under ``minimum`` is refused
    with ``below_minimum`` when given (a message in the parameter's own terms), or with the
    generic one.
    """
    value = query_param(request, name)
    if value is None:
        return None
    floor = "" if minimum is None else f" from {minimum}"
    if not _WHOLE_NUMBER.fullmatch(value):
        raise ValidationError(
            {name: [f"Must be a whole number{floor}, of at most {MAX_DIGITS} digits."]}
        )
    number = int(value)
    if minimum is not None and number < minimum:
        raise ValidationError({name: [below_minimum or f"Must be a whole number{floor}."]})
    return number
