"""Jinja2 templates (autoescaped) with the formatting helpers as filters."""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ledger import __version__
from ledger.dashboard import formatting as fmt
from ledger.errors import MeshprovError


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
        score=fmt.score,
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
    # Times read relative to the chain's clock when it runs ahead of the wall clock (a dev chain moved forward).
    model = getattr(request.app.state, "model", None)
    try:
        now = model.now() if model is not None else time.time()
    except MeshprovError:
        now = time.time()
    html = environment().get_template(template).render(request=request, section=section, now=now, **context)
    return HTMLResponse(html, status_code=status_code)
