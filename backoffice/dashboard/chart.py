"""The terminal page's chart: hourly sales against the expected band, as SVG drawn on the
server (no JavaScript). Pure: numbers in, SVG elements' geometry out; the template draws.

The band is the silence model's learned rate for each local hour of week (sale runs per
hour, backoffice/silence) with the central 90 % of a Poisson count around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WIDTH = 840
HEIGHT = 240
MARGIN_LEFT = 40
MARGIN_BOTTOM = 24
MARGIN_TOP = 10
BAND_QUANTILES = (0.05, 0.95)


@dataclass(frozen=True)
class HourBin:
    start: float
    sales: int
    expected: float | None
    low: int | None
    high: int | None


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[tuple[float, float, float, float, str]]
    """x, y, width, height, title of each hour's bar."""
    band_path: str
    """The band's outline as an SVG path ("" when the lane has no learned rate)."""
    expected_path: str
    y_ticks: list[tuple[float, int]]
    x_ticks: list[tuple[float, str]]
    max_value: int


def poisson_quantile(mean: float, q: float) -> int:
    """The smallest k with P(X <= k) >= q for X ~ Poisson(mean)."""
    if mean <= 0.0:
        return 0
    term = math.exp(-mean) if mean < 700 else 0.0
    if term == 0.0:  # normal approximation far out
        return max(0, round(mean + _z(q) * math.sqrt(mean)))
    total, k = term, 0
    while total < q and k < 100_000:
        k += 1
        term *= mean / k
        total += term
    return k


def _z(q: float) -> float:
    return {0.05: -1.6449, 0.95: 1.6449}.get(q, 0.0)


def draw(bins: list[HourBin], labels: list[tuple[int, str]]) -> Chart:
    """The chart of ``bins`` (one per hour, oldest first); ``labels``: (bin index, text)."""
    plot_w = WIDTH - MARGIN_LEFT
    plot_h = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    top = max([1] + [b.sales for b in bins] + [b.high or 0 for b in bins])
    step = plot_w / max(1, len(bins))

    def y(value: float) -> float:
        return round(MARGIN_TOP + plot_h - plot_h * value / top, 2)

    bars = []
    for i, b in enumerate(bins):
        x = round(MARGIN_LEFT + i * step, 2)
        expected = "no learned rate" if b.expected is None else f"expected {b.low}-{b.high}"
        bars.append((x, y(b.sales), round(max(step - 0.5, 0.5), 2),
                     round(y(0) - y(b.sales), 2), f"{b.sales} sales ({expected})"))  # fmt: skip
    band = [(i, b) for i, b in enumerate(bins) if b.expected is not None]
    band_path = expected_path = ""
    if band:
        upper = " L".join(
            f"{MARGIN_LEFT + i * step:.1f},{y(b.high or 0)} {MARGIN_LEFT + (i + 1) * step:.1f},"
            f"{y(b.high or 0)}"
            for i, b in band
        )
        lower = " L".join(
            f"{MARGIN_LEFT + (i + 1) * step:.1f},{y(b.low or 0)} {MARGIN_LEFT + i * step:.1f},"
            f"{y(b.low or 0)}"
            for i, b in reversed(band)
        )
        band_path = f"M{upper} L{lower} Z"
        expected_path = "M" + " L".join(
            f"{MARGIN_LEFT + (i + 0.5) * step:.1f},{y(b.expected or 0.0)}" for i, b in band
        )
    ticks = sorted({0, top // 2, top})
    return Chart(
        WIDTH, HEIGHT, bars, band_path, expected_path,
        [(y(t), t) for t in ticks],
        [(round(MARGIN_LEFT + i * step, 2), text) for i, text in labels
         if MARGIN_LEFT + i * step < WIDTH - 40],
        top,
    )  # fmt: skip
