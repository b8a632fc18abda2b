"""The reward dashboard: web pages, a JSON API and Prometheus metrics over the event index (read-only).

    app.py         create_app(settings | IndexDB | url): FastAPI app, /healthz, /metrics, error pages
    api.py         the JSON API (/api/...), response models in models.py (OpenAPI at /openapi.json)
    pages.py       the HTML pages (Jinja2 templates in templates/, CSS in static/), rendered by render.py
    readmodel.py   every page's data: asks the index's queries, memoizes the answers (memo.py) per data version
    views.py       the queries' records as response models: tasks, overview, round, lineage
    accounts.py    the same for members: the leaderboard's ranking and rows, a member's page
    charts.py      line and bar charts as inline SVG; graph.py the lineage graph
    metrics.py     the Prometheus collector (read through the queries at scrape time); sizes.py update sizes
    follow.py      optional background follower keeping the index current
    formatting.py  short addresses, CIDs, token amounts, times

One read model: the dashboard holds no SQL. Every read of the index is a question to ``Queries``
(ledger/index/queries/), the same queries ``meshprov audit`` asks, so a page, an API answer and a metric say what
the audit says; this package only shapes the answers for people.

Why it stays under ``ledger/`` rather than becoming a top-level package: it is a read-only view of the record,
like ``ledger/audit``. It acts for no one (no key, no transaction; only its optional ``--follow`` thread writes,
and that writes the index through the index's own follower), imports nothing but ``ledger``, and ``ledger`` is
where the protocol and the record live. The repository's top level is fixed; a peer package would buy no import
boundary that ``ledger`` does not already enforce (ledger imports none of node, worker, lab), and its web stack is
already optional (the ``dashboard`` extra; nothing in ledger imports this package but ``meshprov dashboard``).

docs/dashboard.md describes the pages, API, metrics and how to run it.
"""

from __future__ import annotations

from ledger.dashboard.app import create_app

__all__ = ["create_app"]
