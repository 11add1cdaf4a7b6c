"""The quick check of a new order's body agrees with the input serializer it stands in for."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from orders.domain import MAX_LINES, MAX_QUANTITY
from orders.serializers import OrderCreateInputSerializer, plainly_valid_order

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


def _serializer(body: Any) -> dict[str, Any] | None:
    serializer = OrderCreateInputSerializer(data=body)
    if not serializer.is_valid():
        return None
    data: dict[str, Any] = serializer.validated_data
    return {
        "customer_id": data["customer_id"],
        "items": [{"sku": i["sku"], "quantity": i["quantity"]} for i in data["items"]],
        "payment_token": data["payment_token"],
    }


@settings(max_examples=600, deadline=None)
@given(_bodies)
def test_whatever_the_quick_check_accepts_the_serializer_accepts_alike(body: Any) -> None:
    quick = plainly_valid_order(body)
    if quick is not None:
        assert quick == _serializer(body)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.text(
            alphabet=st.characters(
                min_codepoint=33, max_codepoint=0x2FF, categories=("L", "N", "P")
            ),
            min_size=1,
            max_size=64,
        ),
        min_size=1,
        max_size=MAX_LINES,
        unique=True,
    ),
    st.integers(1, MAX_QUANTITY),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=64),
)
def test_a_valid_order_passes_the_quick_check(
    skus: list[str], quantity: int, customer: str
) -> None:
    body = {
        "customer_id": customer,
        "items": [{"sku": sku, "quantity": quantity} for sku in skus],
        "payment_token": "tok_visa",
    }
    assert _serializer(body) is not None
    assert plainly_valid_order(body) == _serializer(body)


def test_the_quick_check_leaves_every_error_to_the_serializer() -> None:
    line = {"sku": "SKU-1", "quantity": 1}
    base = {"customer_id": "c-1", "items": [line], "payment_token": "tok_visa"}
    refused = [
        {**base, "status": "CONFIRMED"},
        {**base, "customer_id": ""},
        {**base, "customer_id": "x" * 65},
        {**base, "customer_id": "new\nline"},
        {**base, "payment_token": 7},
        {**base, "items": []},
        {**base, "items": [line] * 2},
        {**base, "items": [{**line, "quantity": True}]},
        {**base, "items": [{**line, "quantity": 2.0}]},
        {**base, "items": [{**line, "quantity": MAX_QUANTITY + 1}]},
        {**base, "items": [{**line, "unit_price": "0.01"}]},
        {**base, "items": [{"sku": f"S-{n}", "quantity": 1} for n in range(MAX_LINES + 1)]},
        [base],
    ]
    for body in refused:
        assert plainly_valid_order(body) is None, body
        assert _serializer(body) is None, body
    assert plainly_valid_order(base) == _serializer(base) == base
