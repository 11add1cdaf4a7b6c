"""Turn series into small inline SVG charts for the staff admin: no JavaScript, no CDN.

Three kinds are enough for the dashboard: columns (stacked or side by side) over categories,
horizontal bars grouped by category, and a step line; plus the one-bar ``span_bar`` of a
saga's attempt within the saga's span. Hover text is SVG's own ``<title>``.

Written here rather than taken from a charting library: pygal (the maintained pure-Python
SVG library) renders each chart in tens of milliseconds, emits tens of kilobytes of markup
per chart, brings three more packages and points its tooltips at a script on a CDN unless
told not to; the dashboard needs a few rectangles and a polyline, drawn here with escaped
text. Every mark carries ``data-series``, ``data-category`` and ``data-value``, so tests and
the browser test can read what was drawn. A kit: it imports no app of the project.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

#: Colours of series without their own, in order (readable on the admin's light and dark themes).
PALETTE = ("#417690", "#e0a030", "#ba2121", "#2f7d32", "#7b5ea7", "#888888")

_WIDTH, _HEIGHT = 560, 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 8, 24, 30
_COLUMN_MAX = 48


@dataclass(frozen=True)
class Series:
    """One named series: a value per category, in the categories' order."""

    name: str
    values: Sequence[float]
    color: str = ""


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"


def _coord(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def nice_scale(peak: float, *, integer: bool = False) -> tuple[float, float]:
    """Return (top, step) of an axis over [0, peak]: a round step (1, 2 or 5 times a power of
    ten; at least 1 when counting) and the first multiple of it that reaches ``peak``.
    """
    peak = peak if peak > 0 else 1.0
    raw = peak / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    if integer:
        step = max(step, 1.0)
    return step * math.ceil(peak / step - 1e-9), step


def _colors(series: Sequence[Series]) -> list[str]:
    return [s.color or PALETTE[i % len(PALETTE)] for i, s in enumerate(series)]


def _empty(message: str) -> SafeString:
    return mark_safe(f'<p class="backoffice-chart-empty">{escape(message)}</p>')  # noqa: S308


def _svg(kind: str, title: str, body: list[str], height: int = _HEIGHT) -> SafeString:
    head = (
        f'<svg class="backoffice-chart backoffice-chart-{kind}" role="img" '
        f'viewBox="0 0 {_WIDTH} {height}" xmlns="http://www.w3.org/2000/svg" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    )
    # Every piece of text in ``body`` went through escape() where it was made.
    return mark_safe(head + "".join(body) + "</svg>")  # noqa: S308


def _legend(series: Sequence[Series], colors: Sequence[str]) -> list[str]:
    parts, x = [], _LEFT
    for s, color in zip(series, colors, strict=True):
        parts.append(
            f'<g class="legend" data-series="{escape(s.name)}">'
            f'<rect x="{x}" y="6" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="15" font-size="11">{escape(s.name)}</text></g>'
        )
        x += 24 + 7 * len(s.name)
    return parts


def _y_axis(top: float, step: float, plot_height: float, unit: str) -> list[str]:
    parts = []
    ticks = round(top / step)
    for i in range(ticks + 1):
        y = _TOP + plot_height * (1 - i / ticks)
        label = _fmt(step * i)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{_coord(y)}" '
            f'y2="{_coord(y)}" stroke="#8884" stroke-width="1"/>'
            f'<text x="{_LEFT - 4}" y="{_coord(y + 4)}" font-size="10" text-anchor="end">'
            f"{label}</text>"
        )
    if unit:
        parts.append(f'<text x="2" y="{_TOP - 8}" font-size="10">{escape(unit)}</text>')
    return parts


def _x_labels(categories: Sequence[str], step_width: float, every: int) -> list[str]:
    parts = []
    for i, category in enumerate(categories):
        if i % every:
            continue
        x = _LEFT + step_width * (i + 0.5)
        parts.append(
            f'<text class="x-label" x="{_coord(x)}" y="{_HEIGHT - _BOTTOM + 14}" '
            f'font-size="10" text-anchor="middle">{escape(category)}</text>'
        )
    return parts


def _every(count: int, room: float, label_width: float = 36) -> int:
    return max(1, math.ceil(count * label_width / room))


def _counting(series: Sequence[Series]) -> bool:
    return all(float(v).is_integer() for s in series for v in s.values)


def column_chart(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    unit: str = "",
    stacked: bool = True,
    empty: str = "Nothing to show yet.",
) -> SafeString:
    """Draw one column per category, its series stacked (or side by side), as inline SVG."""
    if not categories or not any(v for s in series for v in s.values):
        return _empty(empty)
    colors = _colors(series)
    if stacked:
        peak = max(sum(s.values[i] for s in series) for i in range(len(categories)))
    else:
        peak = max(v for s in series for v in s.values)
    top, tick = nice_scale(peak, integer=_counting(series))
    room, plot_height = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    step = room / len(categories)
    # A column no wider than _COLUMN_MAX however few the categories, centred in its slot.
    column = min(step * 0.8, _COLUMN_MAX)
    width = column if stacked else column / len(series)
    body = _legend(series, colors) + _y_axis(top, tick, plot_height, unit)
    for i, category in enumerate(categories):
        base = 0.0
        left = _LEFT + step * i + (step - column) / 2
        for j, (s, color) in enumerate(zip(series, colors, strict=True)):
            value = s.values[i]
            if not value:
                continue
            h = plot_height * value / top
            if stacked:
                x = left
                y = _TOP + plot_height - plot_height * base / top - h
                base += value
            else:
                x = left + width * j
                y = _TOP + plot_height - h
            body.append(
                f'<rect class="bar" data-series="{escape(s.name)}" '
                f'data-category="{escape(category)}" data-value="{_fmt(value)}" '
                f'x="{_coord(x)}" y="{_coord(y)}" width="{_coord(width)}" height="{_coord(h)}" '
                f'fill="{color}"><title>{escape(category)}: {_fmt(value)} {escape(s.name)}'
                "</title></rect>"
            )
    body += _x_labels(categories, step, _every(len(categories), room))
    return _svg("columns", title, body)


def bar_chart(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    unit: str = "",
    empty: str = "Nothing to show yet.",
) -> SafeString:
    """Draw horizontal bars, one group per category (a bar per series), as inline SVG."""
    if not categories or not any(v for s in series for v in s.values):
        return _empty(empty)
    colors = _colors(series)
    label_room, bar_height, gap = 150, 9, 8
    group = bar_height * len(series) + gap
    height = _TOP + group * len(categories) + 20
    top, tick = nice_scale(max(v for s in series for v in s.values), integer=_counting(series))
    room = _WIDTH - label_room - _RIGHT - 40
    body = _legend(series, colors)
    ticks = round(top / tick)
    for i in range(ticks + 1):
        x = label_room + room * i / ticks
        body.append(
            f'<line class="grid" x1="{_coord(x)}" x2="{_coord(x)}" y1="{_TOP}" '
            f'y2="{height - 16}" stroke="#8884" stroke-width="1"/>'
            f'<text x="{_coord(x)}" y="{height - 4}" font-size="10" text-anchor="middle">'
            f"{_fmt(tick * i)}{escape(unit) if i == ticks else ''}</text>"
        )
    for i, category in enumerate(categories):
        y0 = _TOP + group * i
        middle = y0 + bar_height * len(series) / 2 + 4
        body.append(
            f'<text class="y-label" x="{label_room - 6}" y="{_coord(middle)}"'
            f' font-size="11" text-anchor="end">{escape(category)}</text>'
        )
        for j, (s, color) in enumerate(zip(series, colors, strict=True)):
            value = s.values[i]
            w = room * value / top
            body.append(
                f'<rect class="bar" data-series="{escape(s.name)}" '
                f'data-category="{escape(category)}" data-value="{_fmt(value)}" '
                f'x="{label_room}" y="{y0 + bar_height * j}" width="{_coord(w)}" '
                f'height="{bar_height - 1}" fill="{color}"><title>{escape(category)} '
                f"{escape(s.name)}: {_fmt(value)}{escape(unit)}</title></rect>"
            )
    return _svg("bars", title, body, height=height)


def line_chart(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    unit: str = "",
    empty: str = "Nothing to show yet.",
) -> SafeString:
    """Draw each series as a step line with a point per category, as inline SVG.

    A series of zeros is still drawn (a flat line says "none", which is news too); only no
    categories at all is the empty state.
    """
    if not categories:
        return _empty(empty)
    colors = _colors(series)
    peak = max((v for s in series for v in s.values), default=0)
    top, tick = nice_scale(peak, integer=_counting(series))
    room, plot_height = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    step = room / len(categories)
    body = _legend(series, colors) + _y_axis(top, tick, plot_height, unit)
    for s, color in zip(series, colors, strict=True):
        points, marks = [], []
        for i, (category, value) in enumerate(zip(categories, s.values, strict=True)):
            x0, x = _LEFT + step * i, _LEFT + step * (i + 0.5)
            y = _TOP + plot_height - plot_height * value / top
            points += [f"{_coord(x0)},{_coord(y)}", f"{_coord(x0 + step)},{_coord(y)}"]
            marks.append(
                f'<circle class="point" data-series="{escape(s.name)}" '
                f'data-category="{escape(category)}" data-value="{_fmt(value)}" '
                f'cx="{_coord(x)}" cy="{_coord(y)}" r="2.5" fill="{color}">'
                f"<title>{escape(category)}: {_fmt(value)} {escape(s.name)}</title></circle>"
            )
        body.append(
            f'<polyline class="line" data-series="{escape(s.name)}" fill="none" '
            f'stroke="{color}" stroke-width="2" points="{" ".join(points)}"/>'
        )
        body += marks
    body += _x_labels(categories, step, _every(len(categories), room))
    return _svg("line", title, body)


def span_bar(start: float, end: float, *, label: str, css_class: str = "") -> SafeString:
    """Draw the part [start, end] (fractions of a whole, clamped to 0..1) of a thin track.

    An attempt too short to see still gets a sliver, so every attempt has a mark.
    """
    start = min(max(start, 0.0), 1.0)
    end = min(max(end, start), 1.0)
    x, width = start * 200, max((end - start) * 200, 1.5)
    x = min(x, 200 - width)
    return mark_safe(  # noqa: S308 (the label is escaped)
        f'<svg class="backoffice-span" viewBox="0 0 200 10" width="200" height="10" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(label)}">'
        f'<rect class="track" x="0" y="3" width="200" height="4" fill="#8883"/>'
        f'<rect class="span {escape(css_class)}" data-start="{start:.4f}" data-end="{end:.4f}" '
        f'x="{_coord(x)}" y="0" width="{_coord(width)}" height="10">'
        f"<title>{escape(label)}</title></rect></svg>"
    )
