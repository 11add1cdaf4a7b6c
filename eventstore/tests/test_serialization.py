"""The JSON text the store sends PostgreSQL and reads back (eventstore.serialization)."""

from __future__ import annotations

from typing import Any

import pytest

from eventstore.serialization import json_round_trip, json_text, json_value


def test_json_text_is_compact() -> None:
    assert json_text({"a": [1, "b"], "c": None}) == '{"a":[1,"b"],"c":null}'


@pytest.mark.parametrize(
    "handed_over", ['{"a":[1,2]}', b'{"a":[1,2]}', {"a": [1, 2]}], ids=["text", "bytes", "value"]
)
def test_json_value_decodes_text_and_keeps_a_decoded_value(handed_over: Any) -> None:
    assert json_value(handed_over) == {"a": [1, 2]}


def test_a_round_trip_gives_what_storing_and_reading_back_would() -> None:
    kept = json_round_trip({"t": (1, 2), 3: "three", "n": None})

    assert kept == {"t": [1, 2], "3": "three", "n": None}
