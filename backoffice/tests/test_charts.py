"""The inline SVG charts: a mark for each value given, escaped text, an empty state."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from backoffice.charts import Series, bar_chart, column_chart, line_chart, nice_scale, span_bar

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    """Parse the chart as XML (a browser would refuse malformed inline SVG just the same)."""
    return ET.fromstring(svg)


def marks(root: ET.Element, tag: str) -> list[tuple[str, str, float]]:
    return [
        (m.get("data-series", ""), m.get("data-category", ""), float(m.get("data-value", "nan")))
        for m in root.iter(f"{SVG}{tag}")
        if m.get("data-value") is not None
    ]


def test_stacked_columns_draw_a_bar_per_nonzero_value_stacked_to_scale() -> None:
    svg = column_chart(
        ["10h", "11h", "12h"],
        [Series("CONFIRMED", [3, 0, 1]), Series("CANCELLED", [1, 2, 0])],
        title="Orders",
    )

    root = parse(svg)
    assert marks(root, "rect") == [
        ("CONFIRMED", "10h", 3),
        ("CANCELLED", "10h", 1),
        ("CANCELLED", "11h", 2),
        ("CONFIRMED", "12h", 1),
    ]
    bars = [m for m in root.iter(f"{SVG}rect") if m.get("class") == "bar"]
    heights = [float(b.get("height", "0")) for b in bars]
    # Heights are proportional to the values: 3 is three times 1.
    assert heights[0] == pytest.approx(3 * heights[1], rel=0.02)
    # The 10h column's two parts sit one on the other.
    y_confirmed, y_cancelled = (float(b.get("y", "0")) for b in bars[:2])
    assert y_cancelled + heights[1] == pytest.approx(y_confirmed, abs=0.11)
    assert {t.text for t in root.iter(f"{SVG}text")} >= {"10h", "11h", "12h", "CONFIRMED"}


def test_side_by_side_columns_share_the_scale() -> None:
    root = parse(
        column_chart(["a"], [Series("x", [2]), Series("y", [4])], title="t", stacked=False)
    )

    x, y = (b for b in root.iter(f"{SVG}rect") if b.get("class") == "bar")
    assert float(y.get("height", "0")) == pytest.approx(2 * float(x.get("height", "0")), rel=0.02)
    assert float(x.get("x", "0")) < float(y.get("x", "0"))


def test_bars_draw_one_bar_per_series_for_each_category() -> None:
    root = parse(
        bar_chart(
            ["reserve_inventory", "charge_payment"],
            [Series("p50", [12.5, 40]), Series("p99", [80, 300])],
            title="Latency",
            unit=" ms",
        )
    )

    assert marks(root, "rect") == [
        ("p50", "reserve_inventory", 12.5),
        ("p99", "reserve_inventory", 80),
        ("p50", "charge_payment", 40),
        ("p99", "charge_payment", 300),
    ]


def test_line_draws_a_point_per_category_and_a_line_through_them() -> None:
    root = parse(line_chart(["1h", "2h", "3h"], [Series("waiting", [0, 2, 1])], title="Waiting"))

    assert marks(root, "circle") == [
        ("waiting", "1h", 0),
        ("waiting", "2h", 2),
        ("waiting", "3h", 1),
    ]
    (line,) = root.iter(f"{SVG}polyline")
    assert len(line.get("points", "").split()) == 6  # a step: two corners per category
    ys = [float(c.get("cy", "0")) for c in root.iter(f"{SVG}circle")]
    assert ys[1] < ys[2] < ys[0]  # higher values are drawn higher up


def test_a_line_of_zeros_is_drawn_flat() -> None:
    root = parse(line_chart(["1h", "2h"], [Series("waiting", [0, 0])], title="Waiting"))

    assert [v for _, _, v in marks(root, "circle")] == [0, 0]


@pytest.mark.parametrize(
    "draw",
    [
        lambda: column_chart([], [], title="t", empty="No orders."),
        lambda: column_chart(["a", "b"], [Series("x", [0, 0])], title="t", empty="No orders."),
        lambda: bar_chart([], [Series("p50", [])], title="t", empty="No orders."),
        lambda: line_chart([], [Series("x", [])], title="t", empty="No orders."),
    ],
)
def test_nothing_to_draw_says_so_instead_of_an_empty_frame(draw: object) -> None:
    html = draw()  # type: ignore[operator]

    assert "<svg" not in html
    assert html == '<p class="backoffice-chart-empty">No orders.</p>'


def test_text_is_escaped() -> None:
    svg = column_chart(["<b>"], [Series('"><script>', [1])], title="a & b")

    assert "<script>" not in svg and "<b>" not in svg
    root = parse(svg)
    assert root.get("aria-label") == "a & b"
    assert marks(root, "rect") == [('"><script>', "<b>", 1)]


@pytest.mark.parametrize(
    ("peak", "integer", "scale"),
    [
        (0, True, (1, 1)),
        (1, True, (1, 1)),
        (3, True, (3, 1)),
        (7, True, (8, 2)),
        (12, True, (15, 5)),
        (240, True, (300, 100)),
        (0.3, False, (0.3, 0.1)),
        (131.4, False, (150, 50)),
    ],
)
def test_the_axis_steps_by_a_round_number_up_to_the_peak(
    peak: float, integer: bool, scale: tuple[float, float]
) -> None:
    assert nice_scale(peak, integer=integer) == pytest.approx(scale)


def test_span_bar_places_the_attempt_within_the_track() -> None:
    root = parse(span_bar(0.25, 0.75, label="charge_payment #1", css_class="SUCCEEDED"))

    span = next(r for r in root.iter(f"{SVG}rect") if "span" in (r.get("class") or ""))
    assert (float(span.get("x", "")), float(span.get("width", ""))) == (50, 100)
    assert span.get("class") == "span SUCCEEDED"


def test_span_bar_keeps_an_instant_visible_and_inside() -> None:
    root = parse(span_bar(1.0, 1.0, label="at the end"))

    span = next(r for r in root.iter(f"{SVG}rect") if "span" in (r.get("class") or ""))
    x, width = float(span.get("x", "")), float(span.get("width", ""))
    assert width > 0 and x + width == pytest.approx(200)
    assert re.search(r"<title>at the end</title>", span_bar(1.0, 1.0, label="at the end"))
