"""Jinja2 templates (autoescaped) with the formatting helpers as filters."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ledger import __version__
from ledger.dashboard import formatting as fmt


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("ledger.dashboard", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        address=fmt.address,
        cid=fmt.cid,
        short=fmt.short,
        tokens=fmt.tokens,
        when=fmt.when,
        ago=fmt.ago,
        duration=fmt.duration,
        size=fmt.size,
        reason=fmt.reason,
        verdict=fmt.verdict,
    )
    env.globals["version"] = __version__
    return env


def render(request: Request, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    path = request.url.path
    section = (
        "overview"
        if path == "/" or path.startswith("/tasks")
        else "contributors"
        if path.startswith("/contributors")
        else "lineage"
        if path.startswith("/lineage")
        else "api"
        if path.startswith("/api")
        else ""
    )
    html = environment().get_template(template).render(request=request, section=section, **context)
    return HTMLResponse(html, status_code=status_code)
