"""Charts drawn on the server as inline SVG: no JavaScript, no chart library, crisp at any zoom, readable by
screen readers (``role="img"`` with a title and description; the pages put the numbers in a table beside each
chart), and they print. Colours come from CSS classes (``s1``…``s4``), so the stylesheet themes them.

Pure functions from numbers to markup; the pages choose what to plot.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

_ids = itertools.count(1)

WIDTH = 640
HEIGHT = 240
PAD_LEFT = 56
PAD_RIGHT = 16
PAD_TOP = 16
PAD_BOTTOM = 40
MAX_MARKERS = 150  # beyond this many points a line carries no per-point markers (they would be a smear)


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]
    css: str = "s1"
    step: bool = False  # a value that holds until the next point (reputation, cumulative rewards)
    labels: list[str] = field(default_factory=list)  # tooltip per point


@dataclass
class Stack:
    name: str
    values: list[float]
    css: str


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 5 × 10^k steps)."""
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        hi = lo + 1
    raw = (hi - lo) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [round(math.floor(lo / step) * step, 10)]
    while ticks[-1] < hi and len(ticks) <= 20:  # the last tick is the first at or above hi
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


_TIME_STEPS = [
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    604800,
]


def time_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    span = max(1.0, hi - lo)
    step = next((s for s in _TIME_STEPS if span / s <= count), 2592000)
    first = math.ceil(lo / step) * step
    return [float(t) for t in range(int(first), int(hi) + 1, step)][:20]


def time_label(t: float, span: float) -> str:
    fmt = "%H:%M:%S" if span < 600 else ("%H:%M" if span < 2 * 86400 else "%b %d")
    return time.strftime(fmt, time.gmtime(t))


def number_label(v: float) -> str:
    if abs(v) >= 1_000_000:
        return f"{v / 1_000_000:g}M"
    if abs(v) >= 10_000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def _svg(head: str, parts: list[str]) -> Markup:
    # Every value interpolated into the markup went through escape() (text) or is a number we formatted.
    return Markup(head + "".join(parts) + "</svg>")  # noqa: S704


def _frame(title: str, desc: str, width: int, height: int) -> tuple[str, list[str]]:
    n = next(_ids)
    head = (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="ct{n} cd{n}" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="ct{n}">{escape(title)}</title>'
        f'<desc id="cd{n}">{escape(desc)}</desc>'
    )
    return head, []


def _axes(
    parts: list[str],
    *,
    x_ticks: Sequence[tuple[float, str]],
    y_ticks: Sequence[tuple[float, str]],
    width: int,
    height: int,
    x_label: str,
    y_label: str,
) -> None:
    bottom = height - PAD_BOTTOM
    for y, label in y_ticks:
        parts.append(
            f'<line class="grid" x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>'
        )
    for x, label in x_ticks:
        # Labels at the ends are anchored inwards so that the frame does not cut them.
        anchor = "end" if x > width - PAD_RIGHT - 24 else ("start" if x < PAD_LEFT + 24 else "middle")
        parts.append(f'<line class="tickmark" x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}"/>')
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="{anchor}">{escape(label)}</text>'
        )
    parts.append(f'<line class="axis" x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{bottom}" y2="{bottom}"/>')
    parts.append(f'<line class="axis" x1="{PAD_LEFT}" x2="{PAD_LEFT}" y1="{PAD_TOP}" y2="{bottom}"/>')
    parts.append(
        f'<text class="label" x="{(PAD_LEFT + width - PAD_RIGHT) / 2:.0f}" y="{height - 6}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text class="label" x="12" y="{(PAD_TOP + bottom) / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {(PAD_TOP + bottom) / 2:.0f})">{escape(y_label)}</text>'
    )


def _legend(parts: list[str], items: Sequence[tuple[str, str]], width: int) -> None:
    x = width - PAD_RIGHT
    for name, css in reversed(items):
        w = 14 + 7 * len(name)
        x -= w + 10
        parts.append(f'<rect class="swatch {css}" x="{x}" y="4" width="10" height="10" rx="2"/>')
        parts.append(f'<text class="legend" x="{x + 14}" y="13">{escape(name)}</text>')


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    desc: str,
    x_label: str,
    y_label: str,
    x_time: bool = False,
    x_integer: bool = False,
    x_end: float | None = None,
    y_format: Callable[[float], str] = number_label,
    y_zero: bool = True,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Markup:
    """Lines (or steps) through each series' points; an empty chart says so. ``x_end`` extends step series
    (values that hold until they change) to that x, e.g. now; ``x_integer`` keeps x ticks whole (rounds)."""
    head, parts = _frame(title, desc, width, height)
    points = [p for s in series for p in s.points]
    if x_end is not None and points and any(s.step for s in series):
        points.append((max(x_end, *(p[0] for p in points)), points[0][1]))
    if not points:
        parts.append(
            f'<text class="empty" x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle">no data yet</text>'
        )
        return _svg(head, parts)
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_ticks_v = nice_ticks(min(0.0, *ys) if y_zero else min(ys), max(ys))
    y_lo, y_hi = y_ticks_v[0], y_ticks_v[-1]
    if y_hi == y_lo:
        y_hi = y_lo + 1
    plot_w = width - PAD_LEFT - PAD_RIGHT
    plot_h = height - PAD_TOP - PAD_BOTTOM

    def sx(x: float) -> float:
        return PAD_LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w

    def sy(y: float) -> float:
        return PAD_TOP + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h

    if x_time:
        x_ticks = [(sx(t), time_label(t, x_hi - x_lo)) for t in time_ticks(x_lo, x_hi)]
    else:
        x_ticks = [
            (sx(t), number_label(t))
            for t in nice_ticks(x_lo, x_hi, 6)
            if x_lo <= t <= x_hi and (not x_integer or t == int(t))
        ]
    _axes(
        parts,
        x_ticks=x_ticks,
        y_ticks=[(sy(v), y_format(v)) for v in y_ticks_v],
        width=width,
        height=height,
        x_label=x_label,
        y_label=y_label,
    )
    for s in series:
        if not s.points:
            continue
        pts = sorted(s.points)
        d = [f"M{sx(pts[0][0]):.1f},{sy(pts[0][1]):.1f}"]
        for (_, y0), (x1, y1) in itertools.pairwise(pts):
            if s.step:
                d.append(f"L{sx(x1):.1f},{sy(y0):.1f}")
            d.append(f"L{sx(x1):.1f},{sy(y1):.1f}")
        if s.step and x_end is not None and x_end > pts[-1][0]:
            d.append(f"L{sx(x_end):.1f},{sy(pts[-1][1]):.1f}")
        parts.append(f'<path class="line {s.css}" d="{" ".join(d)}"><title>{escape(s.name)}</title></path>')
        if len(pts) <= MAX_MARKERS:
            labels = s.labels if len(s.labels) == len(s.points) else []
            order = sorted(range(len(s.points)), key=lambda i: s.points[i])
            for i in order:
                x, y = s.points[i]
                tip = labels[i] if labels else f"{s.name}: {y_format(y)}"
                parts.append(
                    f'<circle class="pt {s.css}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3">'
                    f"<title>{escape(tip)}</title></circle>"
                )
    if len(series) > 1:
        _legend(parts, [(s.name, s.css) for s in series], width)
    return _svg(head, parts)


def bar_chart(
    categories: Sequence[int],
    stacks: Sequence[Stack],
    *,
    title: str,
    desc: str,
    x_label: str,
    y_label: str,
    links: Sequence[str] | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Markup:
    """Stacked bars, one per category (rounds); each bar links to ``links[i]`` when given."""
    head, parts = _frame(title, desc, width, height)
    if not categories:
        parts.append(
            f'<text class="empty" x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle">no data yet</text>'
        )
        return _svg(head, parts)
    totals = [sum(s.values[i] for s in stacks) for i in range(len(categories))]
    y_ticks_v = nice_ticks(0.0, max(1.0, *totals))
    y_hi = y_ticks_v[-1]
    plot_w = width - PAD_LEFT - PAD_RIGHT
    plot_h = height - PAD_TOP - PAD_BOTTOM
    slot = plot_w / len(categories)
    bar_w = max(1.0, slot * 0.7)

    def sy(y: float) -> float:
        return PAD_TOP + plot_h - y / y_hi * plot_h

    every = max(1, math.ceil(len(categories) / 12))
    x_ticks = [
        (PAD_LEFT + slot * (i + 0.5), str(c))
        for i, c in enumerate(categories)
        if i % every == 0 or len(categories) < 12
    ]
    _axes(
        parts,
        x_ticks=x_ticks,
        y_ticks=[(sy(v), number_label(v)) for v in y_ticks_v],
        width=width,
        height=height,
        x_label=x_label,
        y_label=y_label,
    )
    for i, category in enumerate(categories):
        x = PAD_LEFT + slot * i + (slot - bar_w) / 2
        base = 0.0
        tip = f"{x_label} {category}: " + ", ".join(f"{s.values[i]:g} {s.name}" for s in stacks)
        bar = []
        for s in stacks:
            value = s.values[i]
            if value <= 0:
                continue
            top = sy(base + value)
            bar.append(
                f'<rect class="bar {s.css}" x="{x:.1f}" y="{top:.1f}" width="{bar_w:.1f}" '
                f'height="{sy(base) - top:.1f}"><title>{escape(tip)}</title></rect>'
            )
            base += value
        body = "".join(bar)
        if links is not None and body:
            body = f'<a href="{escape(links[i])}">{body}</a>'
        parts.append(body)
    _legend(parts, [(s.name, s.css) for s in stacks], width)
    return _svg(head, parts)
