"""Small inline SVG line charts for the report, drawn from the numbers in the records.

Pure Python so the report needs no plotting library and stays readable without images. Every
label is escaped here: series names come from users (metric names).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

# How a chart's marks look (its box and size are the page's business); the report puts it in its
# page, a standalone picture (``chart_document``) in its own <style>, so a chart reads the same
# inline, in an <img> and opened on its own.
CHART_CSS = """\
svg.chart text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
svg.chart .chart-title { font-size: 13px; font-weight: 600; fill: #374151; }
svg.chart .tick, svg.chart .legend, svg.chart .label { font-size: 11px; fill: #6b7280; }
svg.chart .legend { fill: #374151; }
svg.chart .grid { stroke: #eef0f3; } svg.chart .axis { stroke: #9ca3af; }
svg.chart .nonfinite line { stroke: #dc2626; stroke-dasharray: 3 3; stroke-width: 1.5; }
svg.chart .chart-empty { fill: #9ca3af; font-size: 13px; }
"""

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")
WIDTH, HEIGHT = 560, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 14, 28, 34


@dataclass(frozen=True)
class Series:
    name: str
    points: tuple[tuple[float, float], ...]  # (x, y); non-finite y are shown as markers, not lines


_TINY = 1e-290  # spans below this are rounding noise, not data (and their steps would underflow)
_FLAT = 1e-9  # a span this small against the values' size is drawn as a flat line


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]`` (steps of 1, 2 or 5 times a power of ten).

    Never more than ``count + 3`` ticks, whatever the values: equal, one ulp apart, tiny, or
    near the float limits. Non-finite bounds give no ticks.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    lo, hi = min(lo, hi), max(lo, hi)
    count = max(2, min(int(count), 50))  # one interval over the whole float range would overflow
    lo, hi = _widen_flat(lo, hi)
    raw = hi / count - lo / count  # not (hi - lo) / count: that overflows for spans near float max
    step = _nice_step(raw)
    k = math.floor(lo / step)
    if k * step > lo:  # lo / step rounded up (or underflowed to -0.0 for a tiny negative lo)
        k -= 1
    ticks: list[float] = []
    for i in range(count + 3):  # a nice step is at least the raw one, so count + 2 always reach hi
        value = (k + i) * step  # multiplied, not accumulated: no drift, and zero stays exactly 0.0
        value = min(max(value, -sys.float_info.max), sys.float_info.max)  # a step past the float limit
        ticks.append(value)
        if value >= hi:
            break
    return ticks


def _widen_flat(lo: float, hi: float) -> tuple[float, float]:
    """A range that is one value (or rounding noise around it) gets room around that value."""
    size = max(abs(lo), abs(hi))
    if hi - lo > max(size * _FLAT, _TINY):
        return lo, hi
    center = lo / 2 + hi / 2
    pad = abs(center) / 2 if abs(center) > _TINY else 1.0
    return max(center - pad, -sys.float_info.max), min(center + pad, sys.float_info.max)


def _nice_step(raw: float) -> float:
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        if math.isfinite(m * power) and m * power >= raw:
            return m * power
    return raw  # no round step below the float limit


def scale(value: float, lo: float, hi: float) -> float:
    """Where ``value`` sits between ``lo`` and ``hi``, as a fraction (0 when the range is empty).

    Computed on halves when the span overflows (``1e308 - -1e308``)."""
    span = hi - lo
    if not math.isfinite(span):
        span, value, lo = hi / 2 - lo / 2, value / 2, lo / 2
    if span <= 0 or not math.isfinite(span):
        return 0.0
    fraction = (value - lo) / span
    return min(1.0, max(0.0, fraction)) if math.isfinite(fraction) else 0.0


def format_number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.2g}"
    return f"{value:.4g}"


def line_chart(series: Sequence[Series], *, title: str, x_label: str = "step", y_label: str = "") -> str:
    """An ``<svg>`` element with one line per series, axes, ticks and a legend."""
    finite = [(x, y) for s in series for x, y in s.points if math.isfinite(x) and math.isfinite(y)]
    head = (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">'
        f'<text class="chart-title" x="{_LEFT}" y="17">{escape(title)}</text>'
    )
    if not finite:
        return (
            head
            + f'<text class="chart-empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
            + "no finite values</text></svg>"
        )
    # The x range includes steps whose value was not finite, so their markers land on the chart.
    xs = [x for s in series for x, _ in s.points if math.isfinite(x)]
    ys = [p[1] for p in finite]
    xt = nice_ticks(min(xs), max(xs), 6)
    yt = nice_ticks(min(ys), max(ys), 4)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    pw, ph = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def sx(x: float) -> float:
        return _LEFT + scale(x, x0, x1) * pw

    def sy(y: float) -> float:
        return _TOP + ph - scale(y, y0, y1) * ph

    parts = [head]
    for t in yt:
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_LEFT + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}"/>')
        parts.append(
            f'<text class="tick" x="{_LEFT - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{format_number(t)}</text>'
        )
    for t in xt:
        parts.append(
            f'<text class="tick" x="{sx(t):.1f}" y="{_TOP + ph + 16}" text-anchor="middle">{format_number(t)}</text>'
        )
    parts.append(f'<line class="axis" x1="{_LEFT}" x2="{_LEFT + pw}" y1="{_TOP + ph}" y2="{_TOP + ph}"/>')
    parts.append(f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{_TOP + ph}"/>')
    parts.append(
        f'<text class="label" x="{_LEFT + pw / 2}" y="{HEIGHT - 3}" text-anchor="middle">{escape(x_label)}</text>'
    )
    if y_label:
        parts.append(
            f'<text class="label" transform="translate(12 {_TOP + ph / 2}) rotate(-90)" text-anchor="middle">'
            f"{escape(y_label)}</text>"
        )
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        parts.extend(_series_marks(s, color, sx, sy, _TOP + 4))
        lx = _LEFT + pw - 150
        ly = _TOP + 12 + 15 * i
        parts.append(
            f'<line x1="{lx}" x2="{lx + 16}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" stroke-width="2.5"/>'
        )
        parts.append(f'<text class="legend" x="{lx + 21}" y="{ly}">{escape(_clip(s.name, 22))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def chart_document(charts: Sequence[str], *, title: str) -> str:
    """Charts made by ``line_chart`` stacked in one standalone SVG file, styled on its own.

    ``title`` (user text, e.g. a run name) is escaped here; the charts escaped their own labels.
    """
    gap = 8
    height = len(charts) * (HEIGHT + gap) - gap if charts else HEIGHT
    placed = "".join(
        chart.replace("<svg ", f'<svg x="0" y="{i * (HEIGHT + gap)}" ', 1) for i, chart in enumerate(charts)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">'
        f'<title>{escape(title)}</title><style>{CHART_CSS}</style><rect width="100%" height="100%" fill="#fff"/>'
        f"{placed}</svg>\n"
    )


def _series_marks(
    s: Series, color: str, sx: Callable[[float], float], sy: Callable[[float], float], top: float
) -> list[str]:
    """Polylines through finite points (broken at non-finite ones) and a red mark where a value
    was NaN or infinite, since that is the step a reader is looking for."""
    out: list[str] = []
    run: list[str] = []
    for x, y in s.points:
        if not math.isfinite(x):
            continue
        if math.isfinite(y):
            run.append(f"{sx(x):.1f},{sy(y):.1f}")
            continue
        out.append(_polyline(run, color))
        run = []
        label = "NaN" if math.isnan(y) else ("+inf" if y > 0 else "-inf")
        out.append(
            f'<g class="nonfinite"><line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{top}" y2="{HEIGHT - _BOTTOM}"/>'
            f'<title>{escape(s.name)}: {label} at step {format_number(x)}</title></g>'
        )
    out.append(_polyline(run, color))
    return [p for p in out if p]


def _polyline(points: list[str], color: str) -> str:
    if not points:
        return ""
    if len(points) == 1:
        x, y = points[0].split(",")
        return f'<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>'
    return f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(points)}"/>'


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"
