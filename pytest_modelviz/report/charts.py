"""Small SVG charts drawn from the numbers in the records: line charts for the report and the
training curves, small-multiple histograms for parameter snapshots.

Pure Python so the report needs no plotting library and stays readable without images, and a
picture costs milliseconds (matplotlib took seconds for one grid of histograms). Every label is
escaped here: series names and tensor names come from users.
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
svg.chart .panel-title { font-size: 11px; fill: #374151; }
svg.chart .stat { font-size: 10px; fill: #6b7280; }
svg.chart .bar { fill: #4c72b0; } svg.chart .stored { fill: none; stroke: #dd8452; stroke-width: 1.5; }
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
    head = _svg_open(WIDTH, HEIGHT, title) + f'<text class="chart-title" x="{_LEFT}" y="17">{escape(title)}</text>'
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
    return _document(WIDTH, height, title, placed)


def _document(width: int, height: int, title: str, charts: str) -> str:
    """A standalone SVG file holding ``charts`` (``<svg class="chart">`` elements), styled on its own."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
        f'<title>{escape(title)}</title><style>{CHART_CSS}</style><rect width="100%" height="100%" fill="#fff"/>'
        f"{charts}</svg>\n"
    )


def _svg_open(width: int, height: int, title: str) -> str:
    """The opening tag of one chart."""
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">')


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


# ---------------------------------------------------------------- histograms, small multiples


@dataclass(frozen=True)
class Histogram:
    """One panel: a tensor's histogram over [lo, hi], and optionally the stored one to outline."""

    title: str
    counts: tuple[float, ...]  # per equal-width bin (fractions or counts; drawn to the panel's max)
    lo: float
    hi: float
    notes: tuple[str, ...] = ()  # short lines in the panel's corner ("mean 0.01")
    outline: tuple[float, ...] | None = None  # drawn as a step line over the bars


PANEL_W, PANEL_H, COLUMNS = 240, 150, 4
_P_LEFT, _P_RIGHT, _P_TOP, _P_BOTTOM = 10, 10, 22, 20


def histogram_grid(panels: Sequence[Histogram], *, title: str) -> str:
    """An ``<svg>`` element with one panel per histogram, ``COLUMNS`` to a row, under ``title``."""
    width, height = _grid_size(panels)
    parts = [_svg_open(width, height, title), f'<text class="chart-title" x="{_P_LEFT}" y="19">{escape(title)}</text>']
    cols = width // PANEL_W
    for i, panel in enumerate(panels):
        x, y = (i % cols) * PANEL_W, 30 + (i // cols) * PANEL_H
        parts.append(f'<g transform="translate({x} {y})">{_panel(panel)}</g>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_document(panels: Sequence[Histogram], *, title: str) -> str:
    """``histogram_grid`` as a standalone SVG file, styled on its own."""
    width, height = _grid_size(panels)
    return _document(width, height, title, histogram_grid(panels, title=title))


def _grid_size(panels: Sequence[Histogram]) -> tuple[int, int]:
    cols = max(1, min(COLUMNS, len(panels)))
    return cols * PANEL_W, 30 + math.ceil(len(panels) / cols) * PANEL_H


def _panel(h: Histogram) -> str:
    pw, ph = PANEL_W - _P_LEFT - _P_RIGHT, PANEL_H - _P_TOP - _P_BOTTOM
    base = _P_TOP + ph
    values = [c for c in (*h.counts, *(h.outline or ())) if math.isfinite(c) and c > 0]
    top = max(values, default=1.0)
    n = len(h.counts)
    parts = [f'<text class="panel-title" x="{_P_LEFT}" y="14">{escape(_clip(h.title, 38))}</text>',
             f'<line class="axis" x1="{_P_LEFT}" x2="{_P_LEFT + pw}" y1="{base}" y2="{base}"/>']
    if n:
        bw = pw / n
        for j, c in enumerate(h.counts):
            if math.isfinite(c) and c > 0:
                bh = ph * c / top
                parts.append(f'<rect class="bar" x="{_P_LEFT + j * bw:.1f}" y="{base - bh:.1f}" '
                             f'width="{bw:.2f}" height="{bh:.1f}"/>')
    if h.outline is not None and len(h.outline) == n and n:
        bw = pw / n
        points = []
        for j, c in enumerate(h.outline):
            yv = base - ph * (c / top if math.isfinite(c) and c > 0 else 0.0)
            points += [f"{_P_LEFT + j * bw:.1f},{yv:.1f}", f"{_P_LEFT + (j + 1) * bw:.1f},{yv:.1f}"]
        parts.append(f'<polyline class="stored" points="{" ".join(points)}"/>')
    parts.append(f'<text class="tick" x="{_P_LEFT}" y="{base + 14}">{escape(_number(h.lo))}</text>')
    parts.append(f'<text class="tick" x="{_P_LEFT + pw}" y="{base + 14}" text-anchor="end">'
                 f"{escape(_number(h.hi))}</text>")
    for k, note in enumerate(h.notes):
        parts.append(f'<text class="stat" x="{_P_LEFT + pw}" y="{_P_TOP + 10 + 12 * k}" text-anchor="end">'
                     f"{escape(note)}</text>")
    return "".join(parts)


def _number(value: float) -> str:
    return format_number(value) if math.isfinite(value) else str(value)
