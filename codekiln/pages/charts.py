"""Chart geometry for the templates: numbers in, pixel positions and tick labels out. The
SVG markup itself is in templates/macros.html."""

from __future__ import annotations

import math
from typing import Any


def ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round values from `low` to `high` (both included when round), at most `most` of them,
    spaced 1, 2 or 5 times a power of ten.

    >>> ticks(4.6, 9.2)
    [5.0, 6.0, 7.0, 8.0, 9.0]
    >>> ticks(0, 1200)
    [0.0, 200.0, 400.0, 600.0, 800.0, 1000.0, 1200.0]
    """
    span = high - low
    if span <= 0:
        return [float(low)]
    step = 10.0 ** math.floor(math.log10(span / most))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= most:
            step *= factor
            break
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def _label(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) and abs(value) >= 1 else f"{value:g}"


def line_chart(
    series: list[tuple[str, str, list[tuple[float, float]]]],
    xlabel: str,
    ylabel: str,
    width: int = 560,
    height: int = 340,
) -> dict[str, Any]:
    """The layout of a line chart of `series` ((name, kind, [(x, y), ...]) each) for the
    `line_chart` macro: the plot box, the ticks, and each series' points in pixels. A series
    with few points also gets a dot at each (a validation loss measured a few times)."""
    left, right, top, bottom = 58, width - 16, 10, height - 42
    xs = [x for _, _, points in series for x, _ in points] or [0.0, 1.0]
    ys = [y for _, _, points in series for _, y in points] or [0.0, 1.0]
    x0, x1 = min(0.0, min(xs)), max(xs)
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.05 or 0.5
    y0, y1 = y0 - pad, y1 + pad
    x1 = x1 if x1 > x0 else x0 + 1

    def px(x: float) -> float:
        return round(left + (x - x0) / (x1 - x0) * (right - left), 1)

    def py(y: float) -> float:
        return round(bottom - (y - y0) / (y1 - y0) * (bottom - top), 1)

    laid_out = []
    for name, kind, points in series:
        pixels = [(px(x), py(y)) for x, y in points]
        laid_out.append(
            {
                "name": name,
                "kind": kind,
                "points": " ".join(f"{x},{y}" for x, y in pixels),
                "dots": [{"x": x, "y": y} for x, y in pixels] if len(pixels) <= 30 else [],
            }
        )
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": right,
        "top": top,
        "bottom": bottom,
        "xlabel": xlabel,
        "ylabel": ylabel,
        "xticks": [{"at": px(t), "label": _label(t)} for t in ticks(x0, x1)],
        "yticks": [{"at": py(t), "label": _label(t)} for t in ticks(y0, y1)],
        "series": laid_out,
    }
