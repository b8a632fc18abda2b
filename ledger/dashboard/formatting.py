"""How values read on the pages: short addresses and CIDs (full value in the title), token amounts, times."""

from __future__ import annotations

import time

from markupsafe import Markup, escape

from ledger.chain.scores import SCORE_ONE
from ledger.reasons import Reason

DECIMALS = 18


def mesh(units: int | str | None) -> float:
    """Base units (a uint256) as MESH tokens, for display and charts (exact amounts stay strings)."""
    if units is None:
        return 0.0
    return float(int(units) / 10**DECIMALS)


def score_value(fixed: int) -> float:
    """A fixed-point score (10,000 = 1.0) as a number in [-1, 1]."""
    return fixed / SCORE_ONE


def score(fixed: int | None) -> str:
    """A fixed-point score as people read it: +0.4500, -1.0000; – when there is none (yet)."""
    if fixed is None:
        return "–"
    return f"{fixed / SCORE_ONE:+.4f}"


def tokens(units: int | str | float | None, digits: int = 4) -> str:
    if units is None:
        return "–"
    value = units if isinstance(units, float) else mesh(units)
    text = f"{value:,.{digits}f}".rstrip("0").rstrip(".")
    return f"{text} MESH"


def short(value: str | None, head: int = 6, tail: int = 4) -> str:
    if not value:
        return "–"
    if len(value) <= head + tail + 1:
        return value
    return f"{value[:head]}…{value[-tail:]}"


def address(value: str | None, *, link: bool = True) -> Markup:
    """A shortened address with the full value in its title, linking to the member's page."""
    if not value:
        return Markup("–")
    # f-strings over escape(): Markup.format costs several times more, and pages format thousands of these.
    full = escape(value)
    text = f'<span class="addr mono" title="{full}">{escape(short(value))}</span>'
    return _safe(f'<a href="/contributors/{full}">{text}</a>' if link else text)


def cid(value: str | None, *, link: bool = True, full: bool = False) -> Markup:
    """A CIDv0, whole or shortened (title holds it whole), linking to its lineage."""
    if not value:
        return Markup("–")
    whole = escape(value)
    text = f'<span class="cid mono" title="{whole}">{whole if full else escape(short(value, 8, 6))}</span>'
    return _safe(f'<a href="/lineage/{whole}">{text}</a>' if link else text)


def when(timestamp: int | float | None) -> str:
    if timestamp is None:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def ago(timestamp: int | float | None, now: float | None = None) -> str:
    if timestamp is None:
        return "–"
    seconds = int((now if now is not None else time.time()) - timestamp)
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 90:
        text = f"{seconds} s"
    elif seconds < 90 * 60:
        text = f"{seconds // 60} min"
    elif seconds < 36 * 3600:
        text = f"{seconds // 3600} h"
    else:
        text = f"{seconds // 86400} d"
    return f"in {text}" if future else f"{text} ago"


def duration(seconds: int | float | None) -> str:
    if seconds is None:
        return "–"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def size(n: int | None) -> str:
    if n is None:
        return "unknown"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{n} B"


def reason_slug(code: int) -> str:
    try:
        return Reason(code).slug
    except ValueError:
        return f"unknown-{code}"


def reason_help(code: int) -> str:
    try:
        return Reason(code).help
    except ValueError:
        return f"Reason code {code} is not one this version of meshprov knows."


def reason(code: int) -> Markup:
    """A reason slug with its help text as the title."""
    return _safe(
        f'<span class="reason" title="{escape(reason_help(code))}">{escape(reason_slug(code))}</span>'
    )


def verdict(value: str) -> Markup:
    mark = {"accepted": "✓", "rejected": "✗", "carried-over": "↷"}.get(value, "…")
    return _safe(f'<span class="verdict {escape(value)}">{mark} {escape(value)}</span>')


def _safe(html: str) -> Markup:
    # Callers build ``html`` from escape()d values and constant markup only.
    return Markup(html)  # noqa: S704
