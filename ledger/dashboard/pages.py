"""The HTML pages: the same data as the API (readmodel.py), rendered with Jinja2 and server-side SVG charts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ledger.dashboard import charts
from ledger.dashboard import formatting as fmt
from ledger.dashboard.api import Limit, Offset, RoleQuery, RoundNo, SortQuery, TaskFilter, TaskId, model_of
from ledger.dashboard.graph import lineage_graph
from ledger.dashboard.models import Contributor, Overview
from ledger.dashboard.render import render

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, task: TaskFilter = None) -> Response:
    data = model_of(request).overview(task)
    return render(request, "overview.html", title="Overview", data=data, charts=_overview_charts(data))


def _overview_charts(data: Overview) -> dict[str, Any]:
    if data.task is None:
        return {}
    rounds = data.rounds
    numbers = [r.round for r in rounds]
    updates = charts.bar_chart(
        numbers,
        [
            charts.Stack("accepted", [float(r.accepted or 0) for r in rounds], "s1"),
            charts.Stack("rejected", [float(r.rejected or 0) for r in rounds], "s2"),
            charts.Stack(
                "pending", [float(r.submissions if r.accepted is None else 0) for r in rounds], "s3"
            ),
        ],
        title=f"Updates per round, task {data.task.task_id}",
        desc="Stacked bars: accepted, rejected and pending updates of each round. Each bar links to its round.",
        x_label="round",
        y_label="updates",
        links=[f"/tasks/{data.task.task_id}/rounds/{n}" for n in numbers],
    )
    durations = charts.line_chart(
        [
            charts.Series(
                "duration",
                [(float(r.round), float(r.duration_s)) for r in rounds if r.duration_s is not None],
                "s4",
                labels=[
                    f"round {r.round}: {fmt.duration(r.duration_s)}"
                    for r in rounds
                    if r.duration_s is not None
                ],
            )
        ],
        title="Round duration",
        desc="Seconds from each round's opening to its finalization block.",
        x_label="round",
        y_label="seconds",
        x_integer=True,
    )
    return {"updates": updates, "durations": durations}


@router.get("/contributors", response_class=HTMLResponse)
def contributors_page(
    request: Request,
    *,
    task: TaskFilter = None,
    role: RoleQuery = "contributor",
    sort: SortQuery = "rewards",
    offset: Offset = 0,
    limit: Limit = 100,
) -> Response:
    model = model_of(request)
    board = model.leaderboard(task_id=task, role=role, sort=sort, offset=offset, limit=limit)
    return render(request, "contributors.html", title="Contributors", board=board, tasks=model.tasks())


@router.get("/contributors/{address}", response_class=HTMLResponse)
def contributor_page(request: Request, address: str) -> Response:
    model = model_of(request)
    data = model.contributor(address)
    return render(
        request,
        "contributor.html",
        title=f"Member {fmt.short(data.address)}",
        data=data,
        charts=_contributor_charts(data, model.now()),
    )


def _contributor_charts(data: Contributor, now: float) -> dict[str, Any]:
    """Reputation and cumulative rewards as steps from the role grant to now (values hold until they change)."""
    out: dict[str, Any] = {}
    series = []
    for role, css in (("contributor", "s1"), ("validator", "s4")):
        points = [p for p in data.reputation if p.role == role]
        if points:
            series.append(
                charts.Series(
                    f"{role} reputation",
                    [(float(p.timestamp or p.block_number), float(p.reputation)) for p in points],
                    css,
                    step=True,
                    labels=[
                        f"{role} reputation {p.reputation} ({p.delta:+d})"
                        + (f", task {p.task_id} round {p.round}" if p.round else ", starting value")
                        + f" · {fmt.when(p.timestamp)}"
                        for p in points
                    ],
                )
            )
    x_time = all(p.timestamp is not None for p in data.reputation) and all(
        p.timestamp is not None for p in data.rewards_history
    )
    end = now if x_time else None
    out["reputation"] = charts.line_chart(
        series,
        title="Reputation over time",
        desc="The member's reputation after each settlement, per role.",
        x_label="time (UTC)" if x_time else "block",
        y_label="reputation",
        x_time=x_time,
        x_end=end,
    )
    rewards = data.rewards_history
    reward_points = [(float(p.timestamp or p.block_number), p.cumulative_mesh) for p in rewards]
    labels = [
        f"+{fmt.tokens(p.amount)} (task {p.task_id} round {p.round}) → {fmt.tokens(p.cumulative_mesh)}"
        for p in rewards
    ]
    if data.reputation and reward_points:
        first = data.reputation[0]
        reward_points.insert(0, (float(first.timestamp or first.block_number), 0.0))
        labels.insert(0, "no rewards yet")
    out["rewards"] = charts.line_chart(
        [charts.Series("rewards", reward_points, "s1", step=True, labels=labels)],
        title="Rewards over time",
        desc="Cumulative tokens rewarded to the member, in MESH.",
        x_label="time (UTC)" if x_time else "block",
        y_label="MESH",
        x_time=x_time,
        x_end=end,
        y_format=lambda v: f"{v:g}",
    )
    return out


@router.get("/tasks/{task}", response_class=HTMLResponse)
def task_page(task: TaskId) -> Response:
    return RedirectResponse(f"/?task={task}", status_code=307)


@router.get("/tasks/{task}/rounds/{round}", response_class=HTMLResponse)
def round_page(request: Request, task: TaskId, round: RoundNo) -> Response:
    data = model_of(request).round(task, round)
    glossary = {r.code: r for u in data.updates for r in u.reasons}
    return render(
        request,
        "round.html",
        title=f"Task {task} round {round}",
        data=data,
        glossary=[glossary[code] for code in sorted(glossary)],
    )


@router.get("/lineage", response_class=HTMLResponse)
def latest_lineage(request: Request, task: TaskFilter = None) -> Response:
    """The lineage of the newest task's latest model (the navigation's "Lineage")."""
    data = model_of(request).overview(task)
    if data.task is None:
        return render(request, "lineage_none.html", title="Lineage", data=data)
    return RedirectResponse(f"/lineage/{data.task.latest_model_cid}", status_code=307)


@router.get("/lineage/{cid}", response_class=HTMLResponse)
def lineage_page(request: Request, cid: str, detail: int = 10) -> Response:
    data = model_of(request).lineage(cid)
    depth = max(1, min(detail, 1000))
    graphs = [lineage_graph(view, detailed=depth) for view in data.lineages]
    return render(
        request, "lineage.html", title=f"Lineage of {fmt.short(data.cid, 8, 6)}", data=data, graphs=graphs
    )


@router.get("/tasks/{task}/privacy", response_class=HTMLResponse)
def privacy_page(request: Request, task: TaskId) -> Response:
    """Each member's cumulative privacy loss (ε at δ) over the task, against the budget its spec anchors."""
    report = model_of(request).privacy(task)
    return render(request, "privacy.html", title=f"Task {task}: privacy budget", report=report)


@router.get("/taint/{what}", response_class=HTMLResponse)
def taint_page(request: Request, what: str) -> Response:
    """Every model that carries an update (its CID) or a member's accepted updates (an address), and how deep."""
    report = model_of(request).taint(what)
    return render(request, "taint.html", title=f"Taint of {fmt.short(what, 8, 6)}", report=report)


@router.get("/api", response_class=HTMLResponse)
def api_page(request: Request) -> Response:
    """The API's endpoints from its OpenAPI schema, readable offline (FastAPI's /docs loads from a CDN)."""
    schema = request.app.openapi()
    endpoints = []
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            params = [
                {
                    "name": p["name"],
                    "where": p["in"],
                    "required": p.get("required", False),
                    "description": p.get("description", ""),
                }
                for p in op.get("parameters", [])
            ]
            ok = (
                op.get("responses", {})
                .get("200", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema", {})
            )
            endpoints.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "params": params,
                    "returns": _schema_name(ok),
                }
            )
    return render(request, "api.html", title="API", endpoints=endpoints)


def _schema_name(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if schema.get("type") == "array":
        return f"list of {_schema_name(schema.get('items', {}))}"
    return str(schema.get("type", ""))
