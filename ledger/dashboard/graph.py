"""A model's lineage drawn as a graph (inline SVG), genesis at the bottom and the model at the top.

Each round is a level: the updates trained on the round's base model sit between the base and the round's
aggregate; an edge goes from the base to every update ("trained on") and from every accepted update to the
aggregate ("aggregated into"). Rejected updates have no edge up and a dashed red outline with their reason. A
round that accepted nothing carries its base over. Every node links to its page (round, contributor, lineage).

The newest ``detailed`` rounds show their updates (at most ``MAX_UPDATES`` each, the rest summarised); older
rounds show only their models, so a lineage 100 rounds deep stays a scrollable page.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

from ledger.dashboard.formatting import short
from ledger.dashboard.models import LineageUpdate, LineageView

WIDTH = 820
MODEL_W, MODEL_H = 380, 42
UPD_W, UPD_H = 90, 36
UPD_GAP = 8
MAX_UPDATES = 8
GAP = 34  # vertical gap between a node row and the next


@dataclass
class _Node:
    x: float
    y: float
    w: float
    h: float

    @property
    def top(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y)

    @property
    def bottom(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h)


def _edge(a: tuple[float, float], b: tuple[float, float], css: str, title: str) -> str:
    """A curve from ``a`` (a node's top) up to ``b`` (the next node's bottom)."""
    mid = (a[1] + b[1]) / 2
    return (
        f'<path class="edge {css}" d="M{a[0]:.1f},{a[1]:.1f} C{a[0]:.1f},{mid:.1f} {b[0]:.1f},{mid:.1f} '
        f'{b[0]:.1f},{b[1]:.1f}"><title>{escape(title)}</title></path>'
    )


def _model(node: _Node, *, title: str, cid: str, href: str, css: str, tip: str) -> str:
    return (
        f'<a href="{escape(href)}" class="node model {css}"><title>{escape(tip)}</title>'
        f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="{node.w}" height="{node.h}" rx="8"/>'
        f'<text x="{node.x + node.w / 2:.1f}" y="{node.y + 17:.1f}" text-anchor="middle" class="n1">'
        f"{escape(title)}</text>"
        f'<text x="{node.x + node.w / 2:.1f}" y="{node.y + 33:.1f}" text-anchor="middle" class="n2 mono">'
        f"{escape(cid)}</text></a>"
    )


def _update(node: _Node, u: LineageUpdate, task_id: int, round_: int) -> str:
    mark = {"accepted": "✓ accepted", "rejected": "✗ " + (u.reasons[0] if u.reasons else "rejected")}.get(
        u.verdict, "… pending"
    )
    tip = f"update #{u.index} by {u.contributor}: {u.verdict}"
    if u.reasons:
        tip += f" ({', '.join(u.reasons)})"
    tip += f"\n{u.cid}"
    href = f"/tasks/{task_id}/rounds/{round_}#update-{u.index}"
    return (
        f'<a href="{escape(href)}" class="node update {u.verdict}"><title>{escape(tip)}</title>'
        f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="{node.w}" height="{node.h}" rx="6"/>'
        f'<text x="{node.x + node.w / 2:.1f}" y="{node.y + 15:.1f}" text-anchor="middle" class="n2 mono">'
        f"#{u.index} {escape(short(u.contributor, 4, 3))}</text>"
        f'<text x="{node.x + node.w / 2:.1f}" y="{node.y + 29:.1f}" text-anchor="middle" class="n3">'
        f"{escape(mark[:16])}</text></a>"
    )


def _row(count: int, y: float) -> list[_Node]:
    total = count * UPD_W + (count - 1) * UPD_GAP
    x0 = (WIDTH - total) / 2
    return [_Node(x0 + i * (UPD_W + UPD_GAP), y, UPD_W, UPD_H) for i in range(count)]


def lineage_graph(view: LineageView, *, detailed: int = 10) -> Markup:
    """The SVG of one lineage (one task's history of the model or update)."""
    rounds = list(reversed(view.rounds))  # oldest first: we lay out from genesis upwards
    # Levels from the bottom: genesis, then per round (updates row?, model), then the update itself if any.
    shown_from = max(0, len(rounds) - detailed)
    height = MODEL_H + GAP
    for i, r in enumerate(rounds):
        height += (UPD_H + GAP if i >= shown_from and r.updates else 0) + MODEL_H + GAP
    if view.update is not None:
        height += UPD_H + GAP
    height += 8
    parts: list[str] = []
    edges: list[str] = []
    row_lefts: list[float] = []
    model_x = (WIDTH - MODEL_W) / 2
    y = height - MODEL_H - 8
    base = _Node(model_x, y, MODEL_W, MODEL_H)
    parts.append(
        _model(
            base,
            title=f"genesis · task {view.task_id}",
            cid=view.genesis_cid,
            href=f"/lineage/{view.genesis_cid}",
            css="genesis",
            tip=f"the task's genesis model {view.genesis_cid}",
        )
    )
    for i, r in enumerate(rounds):
        y -= GAP
        accepted_nodes: list[_Node] = []
        if i >= shown_from and r.updates:
            visible = sorted(r.updates, key=lambda u: (u.verdict != "rejected", u.index))
            visible = sorted(
                visible[:MAX_UPDATES] if len(visible) > MAX_UPDATES else visible, key=lambda u: u.index
            )
            more = len(r.updates) - len(visible)
            y -= UPD_H
            nodes = _row(len(visible) + (1 if more else 0), y)
            row_lefts.append(nodes[0].x - 12)
            for node, u in zip(nodes, visible, strict=False):
                edges.append(
                    _edge(base.top, node.bottom, "trained", f"update #{u.index} was trained on this model")
                )
                parts.append(_update(node, u, view.task_id, r.round))
                if u.verdict == "accepted":
                    accepted_nodes.append(node)
            if more:
                node = nodes[-1]
                extra = [u for u in r.updates if u not in visible]
                ok = sum(1 for u in extra if u.verdict == "accepted")
                parts.append(
                    f'<a href="/tasks/{view.task_id}/rounds/{r.round}" class="node update more">'
                    f"<title>{more} more updates in round {r.round}</title>"
                    f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="{node.w}" height="{node.h}" rx="6"/>'
                    f'<text x="{node.x + node.w / 2:.1f}" y="{node.y + 15:.1f}" text-anchor="middle" class="n2">'
                    f"+{more} more</text>"
                    f'<text x="{node.x + node.w / 2:.1f}" y="{node.y + 29:.1f}" text-anchor="middle" class="n3">'
                    f"{ok} accepted</text></a>"
                )
                edges.append(_edge(base.top, node.bottom, "trained", f"{more} more updates"))
                if ok:
                    accepted_nodes.append(node)
            y -= GAP
        y -= MODEL_H
        model = _Node(model_x, y, MODEL_W, MODEL_H)
        cid = r.aggregate_cid or "not finalized"
        carried = r.accepted == 0 and r.aggregate_cid is not None
        if accepted_nodes:
            for node in accepted_nodes:
                edges.append(
                    _edge(node.top, model.bottom, "aggregated", f"aggregated into round {r.round}'s model")
                )
        else:
            edges.append(
                _edge(
                    base.top,
                    model.bottom,
                    "carried" if carried else "summary",
                    "nothing accepted: the model carried over"
                    if carried
                    else f"{r.accepted} of {r.submitted} updates accepted",
                )
            )
            if not carried and i < shown_from:
                mid_y = (base.top[1] + model.bottom[1]) / 2
                parts.append(
                    f'<text class="n3 edge-label" x="{WIDTH / 2 + 8:.1f}" y="{mid_y + 4:.1f}">'
                    f"{r.accepted} of {r.submitted} accepted</text>"
                )
        title = f"round {r.round} model" + (" (carried over)" if carried else "")
        parts.append(
            _model(
                model,
                title=title,
                cid=cid,
                href=f"/tasks/{view.task_id}/rounds/{r.round}",
                css="carried" if carried else ("pending" if r.aggregate_cid is None else "aggregate"),
                tip=f"round {r.round}: {r.accepted} of {r.submitted} updates accepted; model {cid}",
            )
        )
        base = model
    if view.update is not None:
        y -= GAP + UPD_H
        (node,) = _row(1, y)
        node = _Node(node.x - 40, node.y, UPD_W + 80, UPD_H)
        row_lefts.append(node.x - 12)
        edges.append(_edge(base.top, node.bottom, "trained", "the update was trained on this model"))
        u = view.update
        parts.append(_update(node, u, view.task_id, view.update_round or 0))
    # The view box fits the widest row (rows are centred), so a narrow lineage is not drawn small.
    left = max(0.0, min([model_x - 12, *row_lefts]))
    box_w = WIDTH - 2 * left
    svg = (
        f'<svg class="lineage-graph" viewBox="{left:.0f} 0 {box_w:.0f} {height:.0f}" width="{box_w:.0f}" '
        f'role="img" '
        f'aria-label="lineage of {escape(view.update.cid if view.update else (rounds[-1].aggregate_cid if rounds else view.genesis_cid) or "")} '
        f'back to the genesis model of task {view.task_id}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(edges)
        + "".join(parts)
        + "</svg>"
    )
    # Every text interpolated above went through escape(); the rest are numbers we formatted.
    return Markup(svg)  # noqa: S704
