"""The reward dashboard: web pages, a JSON API and Prometheus metrics over the event index (read-only).

    app.py         create_app(settings | IndexDB | url): FastAPI app, /healthz, /metrics, error pages
    api.py         the JSON API (/api/...), response models in models.py (OpenAPI at /openapi.json)
    pages.py       the HTML pages (Jinja2 templates in templates/, CSS in static/), rendered by render.py
    readmodel.py   every page's data from the index; accounts.py (leaderboard, a member), sql.py helpers
    memo.py        answers memoized per version of the index's data
    charts.py      line and bar charts as inline SVG; graph.py the lineage graph
    metrics.py     the Prometheus collector (read from the index at scrape time); sizes.py update sizes
    follow.py      optional background follower keeping the index current
    formatting.py  short addresses, CIDs, token amounts, times

docs/dashboard.md describes the pages, API, metrics and how to run it.
"""

from __future__ import annotations

from ledger.dashboard.app import create_app

__all__ = ["create_app"]
