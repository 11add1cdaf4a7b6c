"""The OpenAPI schema generates without warnings and validates, and says what the API does:
throttling's 429 on every operation, strict request bodies, bounded lists and pages.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

from infrastructure.api.params import MAX_INT_PARAM

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(tmp_path: Path) -> dict:
    path = tmp_path / "schema.yaml"
    # --fail-on-warn: a name clash or an unresolvable type makes a wrong schema silently.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return yaml.safe_load(path.read_text())


def operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "responses" in operation
    ]


def test_every_operation_documents_throttling_and_its_errors(schema) -> None:
    assert len(operations(schema)) >= 11
    for path, method, operation in operations(schema):
        assert "429" in operation["responses"], (method, path)
        if path != "/api/health/":
            assert {"401", "403"} <= set(operation["responses"]), (method, path)


def test_request_bodies_refuse_unknown_fields_and_bound_their_lists(schema) -> None:
    components = schema["components"]["schemas"]
    order = components["OrderCreateInputRequest"]
    assert order["additionalProperties"] is False
    items = order["properties"]["items"]
    assert (items["minItems"], items["maxItems"]) == (1, 100)
    line = components["OrderLineInputRequest"]
    assert line["additionalProperties"] is False
    quantity = line["properties"]["quantity"]
    assert (quantity["minimum"], quantity["maximum"]) == (1, 1000)
    # A webhook endpoint subscribes to at least one event type: the schema says so, so a
    # client (or the fuzzer) sending none was told before its 400.
    for name in ("EndpointInputRequest", "PatchedEndpointChangeRequest"):
        assert components[name]["additionalProperties"] is False, name
        event_types = components[name]["properties"]["event_types"]
        assert (event_types["minItems"], event_types["maxItems"]) == (1, 20), name


def test_every_paginated_list_takes_bounded_page_parameters(schema) -> None:
    lists = [
        op
        for _, method, op in operations(schema)
        if method == "get" and any(p["name"] == "page_size" for p in op.get("parameters", []))
    ]
    # products, orders, an order's events, sagas, webhook endpoints, an endpoint's deliveries
    assert len(lists) == 6
    for operation in lists:
        params = {p["name"]: p for p in operation["parameters"]}
        bounded = {"type": "integer", "minimum": 1, "maximum": MAX_INT_PARAM}
        assert params["page"]["schema"] == bounded
        assert params["page_size"]["schema"] == bounded
        assert "400" in operation["responses"]
