"""A trend as a small inline SVG line chart (pure): no charting framework, no script. The
numbers themselves are in the data table beside it (the accessible reading); the chart is a
picture of them with its own title and description."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Sequence

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 30, 12, 28


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    segments: list[str]                  # polyline `points` (a missing value breaks the line)
    dots: list[tuple[str, str, str]]     # (x, y, value) of each known value
    x_labels: list[tuple[str, str]]      # (x, label)
    y_ticks: list[tuple[str, str]]       # (y, value)
    empty: bool


def _fmt(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def line_chart(labels: Sequence[str], values: Sequence[str | None], ticks: int = 4) -> Chart:
    """One series: labels on x, the decimal strings on y (None: no value for that period)."""
    known = [Decimal(v) for v in values if v is not None]
    if not known:
        return Chart(WIDTH, HEIGHT, [], [], [], [], True)
    low, high = min(known + [Decimal(0)]), max(known)
    if high == low:
        high = low + 1
    span_y = Decimal(HEIGHT - TOP - BOTTOM)
    span_x = Decimal(WIDTH - LEFT - RIGHT)
    step = span_x / max(1, len(labels) - 1)

    def x(i: int) -> Decimal:
        return Decimal(LEFT) + (step * i if len(labels) > 1 else span_x / 2)

    def y(v: Decimal) -> Decimal:
        return Decimal(TOP) + span_y - (v - low) / (high - low) * span_y

    segments, current, dots = [], [], []
    for i, raw in enumerate(values):
        if raw is None:
            if current:
                segments.append(" ".join(current))
            current = []
            continue
        v = Decimal(raw)
        current.append(f"{_fmt(x(i))},{_fmt(y(v))}")
        dots.append((_fmt(x(i)), _fmt(y(v)), raw))
    if current:
        segments.append(" ".join(current))
    every = max(1, -(-len(labels) // 8))  # at most 8 labels on the axis
    x_labels = [(_fmt(x(i)), label) for i, label in enumerate(labels) if i % every == 0 or i == len(labels) - 1]
    y_ticks = [(_fmt(y(low + (high - low) * k / ticks)), _fmt(low + (high - low) * k / ticks))
               for k in range(ticks + 1)]
    return Chart(WIDTH, HEIGHT, segments, dots, x_labels, y_ticks, False)
