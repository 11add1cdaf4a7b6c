"""The one pagination every list endpoint uses: count, next, previous, results."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request

from infrastructure.api.params import MAX_INT_PARAM, int_param

MAX_PAGE_SIZE = 500


class StandardPagination(PageNumberPagination):
    """Page numbers with ``page_size`` up to 500; a malformed ``page`` or ``page_size`` is a 400.

    DRF falls back to the defaults on a malformed value; refusing it instead keeps the
    answers what the schema promises (integers of at least 1). A page past the last is a 404.
    """

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request: Request) -> int:
        size = int_param(request, self.page_size_query_param, minimum=1)
        return self.page_size if size is None else min(size, MAX_PAGE_SIZE)

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        number = int_param(request, self.page_query_param, minimum=1)
        return 1 if number is None else number


def page_parameters(
    prefix: str = "",
    *,
    page: str = "Page number",
    entries: str = "Results",
    page_size: int = StandardPagination.page_size,
) -> list[OpenApiParameter]:
    """Return the query parameters ``{prefix}page`` and ``{prefix}page_size`` of a
    ``StandardPagination`` (or a subclass's, ``page_size`` its default), for
    ``extend_schema(parameters=…)``.

    A list inside a detail (a saga's attempt log) pages with its own prefix; ``page`` and
    ``entries`` open the two descriptions, saying what is paged ("Page of the attempt log",
    "Log entries").
    """

    def bounded() -> dict[str, Any]:
        # A new dict each: no parameter shares its schema with another (or with a later call).
        return {"type": "integer", "minimum": 1, "maximum": MAX_INT_PARAM}

    return [
        OpenApiParameter(
            f"{prefix}page",
            bounded(),
            description=f"{page}, from 1 (a page past the last is a 404).",
        ),
        OpenApiParameter(
            f"{prefix}page_size",
            bounded(),
            description=(
                f"{entries} per page, default {page_size}; larger values "
                f"are capped at {MAX_PAGE_SIZE}."
            ),
        ),
    ]


#: The query parameters every paginated list takes.
PAGE_PARAMETERS = page_parameters()
