"""The order's input serializer, with its fields built once, parses as DRF's own would."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from orders.domain import MAX_QUANTITY
from orders.serializers import OrderCreateInputSerializer

# Near the edges of every rule: lengths, printability, types, bounds, keys, duplicates.
_texts = st.one_of(
    st.text(min_size=0, max_size=3),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=60, max_size=70),
    st.text(min_size=98, max_size=102),
    st.sampled_from(["SKU-1", "SKU-2", " padded ", "tab\there", "", "\x00", "\u200b", "é"]),
)
_scalars: st.SearchStrategy[Any] = st.one_of(
    _texts,
    st.integers(min_value=-2, max_value=MAX_QUANTITY + 2),
    st.sampled_from([True, False, None, 2.0, "2", 10**30, [], {}]),
)
_lines = st.one_of(
    st.fixed_dictionaries({"sku": _scalars, "quantity": _scalars}),
    st.fixed_dictionaries(
        {"sku": _texts, "quantity": st.integers(0, MAX_QUANTITY + 1)},
        optional={"price": st.just("1.00"), "name": _texts},
    ),
    _scalars,
)
_bodies = st.one_of(
    st.fixed_dictionaries(
        {
            "customer_id": _scalars,
            "items": st.one_of(st.lists(_lines, max_size=4), _scalars),
            "payment_token": _scalars,
        },
        optional={"status": st.just("CONFIRMED"), "total": st.just("0.00")},
    ),
    st.lists(_scalars, max_size=2),
    _scalars,
)


class FreshOrderSerializer(OrderCreateInputSerializer):
    """The same serializer with DRF's own fields: deep-copied for each instance."""

    fields = serializers.Serializer.fields


def _outcome(serializer_class: type[serializers.Serializer], body: Any) -> tuple[bool, Any]:
    serializer = serializer_class(data=body)
    if serializer.is_valid():
        return True, json.loads(json.dumps(serializer.validated_data))
    return False, json.loads(json.dumps(serializer.errors))


@settings(max_examples=400, deadline=None)
@given(_bodies)
def test_shared_fields_parse_and_word_errors_as_drfs_own(body: Any) -> None:
    assert _outcome(OrderCreateInputSerializer, body) == _outcome(FreshOrderSerializer, body)


def test_the_fields_are_built_once_and_shared() -> None:
    first = OrderCreateInputSerializer(data={})
    second = OrderCreateInputSerializer(data={})
    assert first.fields is second.fields
    assert not first.is_valid() and not second.is_valid()
    assert set(first.errors) == {"customer_id", "items", "payment_token"}


def test_threads_sharing_the_fields_each_get_their_own_answer() -> None:
    line = {"sku": "SKU-1", "quantity": 1}
    bodies = [
        {"customer_id": f"c-{n}", "items": [line] * (1 + n % 2), "payment_token": "t"}
        for n in range(200)
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda b: _outcome(OrderCreateInputSerializer, b), bodies))
    for n, (valid, data) in enumerate(outcomes):
        if n % 2:
            assert not valid and "repeated: SKU-1" in data["items"][0]
        else:
            assert valid and data["customer_id"] == f"c-{n}"


def test_a_valid_order_is_parsed_to_its_fields() -> None:
    body = {"customer_id": "c-1", "items": [{"sku": "S", "quantity": 3}], "payment_token": "t"}
    assert _outcome(OrderCreateInputSerializer, body) == (True, body)
