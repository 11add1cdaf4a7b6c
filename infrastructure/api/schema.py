"""OpenAPI generation: what the serializers enforce, written into the schema.

drf-spectacular leaves out a few rules our serializers enforce (lists that may not be empty
or longer than a limit, refused unknown fields, refused NUL characters); without them the
schema promises clients more than the API accepts, and schema-driven fuzzing (schemathesis)
reports the difference. What holds for every operation (429 from throttling, no NUL in query
values) is added in one place, so a new view cannot leave it out.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers

#: What DRF's CharField refuses in every request: NUL characters.
NO_NUL_PATTERN = "^[^\\x00]*$"

TOO_MANY_REQUESTS = {
    "description": "Too many requests: wait for the seconds in the `Retry-After` header",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"detail": {"type": "string"}},
                "required": ["detail"],
            }
        }
    },
}


class AutoSchema(SpectacularAutoSchema):
    """Spectacular's schema, plus the serializer rules it does not write down."""

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and getattr(serializer, "refuses_unknown_fields", False):
            schema["additionalProperties"] = False
        return schema

    def _map_serializer_field(
        self, field: Any, direction: str, bypass_extensions: bool = False
    ) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_serializer_field(field, direction, bypass_extensions)
        if direction != "request" or field.read_only:
            return schema
        if isinstance(field, serializers.ListSerializer):
            if not field.allow_empty:
                schema["minItems"] = max(1, schema.get("minItems", 1))
            min_length = getattr(field, "min_length", None)
            max_length = getattr(field, "max_length", None)
            if min_length is not None:
                schema["minItems"] = min_length
            if max_length is not None:
                schema["maxItems"] = max_length
        elif isinstance(field, serializers.CharField) and schema.get("type") == "string":
            pattern = getattr(field, "schema_pattern", None)
            if pattern:
                schema["pattern"] = pattern
            elif "pattern" not in schema:
                schema["pattern"] = NO_NUL_PATTERN
        return schema


def add_common_rules(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """Add what holds for every operation: the 429 answer, no NUL in string query values."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            operation["responses"].setdefault("429", TOO_MANY_REQUESTS)
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if (
                    parameter.get("in") == "query"
                    and schema.get("type") == "string"
                    and not {"enum", "pattern", "format"} & set(schema)
                ):
                    # infrastructure.api.params refuses NUL: PostgreSQL cannot compare such text.
                    schema["pattern"] = NO_NUL_PATTERN
    return result
