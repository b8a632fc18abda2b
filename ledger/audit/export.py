"""A task's whole record as one report: JSON (everything), CSV (one row per update) or HTML (self-contained: inline
CSS, no scripts, no external resources, so it can be mailed, archived or opened offline).
"""

from __future__ import annotations

import csv
import html
import io
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger.audit.render import dataset_line
from ledger.index.models import ROLE_NAMES, cid_of, reason_name

if TYPE_CHECKING:
    from ledger.audit.source import Source, SourceInfo
    from ledger.index.models import Lineage, Round, TaskRecord

FORMATS = ("json", "csv", "html")
MODEL_FORMATS = ("in-toto",)
"""Formats that describe one model (`audit export --format in-toto MODEL`; ledger/audit/provenance.py)."""

CSV_COLUMNS = [
    "task_id",
    "round",
    "base_cid",
    "aggregate_cid",
    "index",
    "contributor",
    "update_cid",
    "num_samples",
    "verdict",
    "consensus",
    "scores",
    "reject_reasons",
    "submitted_block",
    "tx_hash",
    "dataset",
]


@dataclass
class TaskExport:
    task: TaskRecord
    rounds: list[Round]
    latest: Lineage | None  # the lineage of the latest model, with its checks
    source: SourceInfo
    generated_at: float

    @property
    def problems(self) -> list[str]:
        return list(self.latest.problems) if self.latest is not None else []

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task.to_dict(),
            "rounds": [r.to_dict() for r in self.rounds],
            "latest_model": self.latest.cid if self.latest is not None else self.task.genesis_cid,
            "verified": not self.problems,
            "problems": self.problems,
            "source": self.source.to_dict(),
            "generated_at": self.generated_at,
        }


def collect(source: Source, task_id: int) -> TaskExport:
    task = source.queries.task(task_id)
    rounds = source.queries.task_rounds(task_id)
    finalized = [r for r in rounds if r.finalized]
    latest = None
    if finalized and any(r.accepted_indexes for r in finalized):
        last = finalized[-1]
        assert last.aggregate_digest is not None
        latest = next(
            (lin for lin in source.queries.lineage(last.aggregate_digest) if lin.task.task_id == task_id),
            None,
        )
    return TaskExport(task, rounds, latest, source.info, time.time())


def to_json(export: TaskExport) -> str:
    return json.dumps(export.to_dict(), indent=2, sort_keys=True, default=str) + "\n"


def to_csv(export: TaskExport) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in export.rounds:
        for u in r.updates:
            reasons = sorted({reason_name(v.reason) for v in u.scores if v.reason})
            writer.writerow(
                {
                    "task_id": r.task_id,
                    "round": r.round,
                    "base_cid": r.base_cid,
                    "aggregate_cid": r.aggregate_cid or "",
                    "index": u.index,
                    "contributor": u.contributor,
                    "update_cid": u.cid,
                    "num_samples": u.num_samples,
                    "verdict": u.verdict,
                    "consensus": "" if u.consensus is None else u.consensus,
                    # validator=score pairs, in reveal order (scores are fixed point, 10,000 = 1.0)
                    "scores": ";".join(f"{v.validator}={v.score}" for v in u.scores),
                    "reject_reasons": ";".join(reasons),
                    "submitted_block": u.block_number,
                    "tx_hash": u.tx_hash,
                    # the member's dataset commitment from its update's metadata (empty: none, or not read)
                    "dataset": u.dataset or "",
                }
            )
    return out.getvalue()


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:75rem;color:#1b1f24;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin:2rem 0 .4rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;width:100%;margin:.4rem 0 1rem}th,td{text-align:left;padding:.25rem .5rem;
border-bottom:1px solid #eaeef2;vertical-align:top}th{background:#f6f8fa;font-weight:600}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.muted{color:#57606a}
.pill{display:inline-block;border-radius:1rem;padding:0 .5rem;font-size:12px;background:#eaeef2}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _code(value: object) -> str:
    return f"<code>{_e(value)}</code>"


def _amount(units: int | None) -> str:
    if units is None:
        return ""
    return f"{units / 10**18:,.6f}".rstrip("0").rstrip(".") + " MESH"


def to_html(export: TaskExport) -> str:
    t = export.task
    src = export.source
    status = (
        '<span class="ok">verified</span>: every round links to the previous model, back to genesis'
        if not export.problems
        else '<span class="bad">problems found</span>: ' + "; ".join(_e(p) for p in export.problems)
    )
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>meshprov audit: task {t.task_id}</title><style>{_CSS}</style></head><body>",
        f"<h1>meshprov audit report: task {t.task_id}</h1>",
        f'<p class="muted">Generated {_e(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(export.generated_at)))}'
        f" from the {_e(src.mode)} view of chain {src.chain_id}, ledger {_code(src.ledger)}, up to block "
        f"{src.indexed_to}.</p>",
        f"<p>{status}</p>",
        "<h2>Task</h2><table>",
        f"<tr><th>genesis model</th><td>{_code(t.genesis_cid)}</td></tr>",
        f"<tr><th>specification</th><td>{_code(cid_of(t.spec_digest))}</td></tr>",
        f"<tr><th>recipe</th><td>{_e(t.spec.recipe_summary)}</td></tr>",
        (
            f"<tr><th>hyperparameters</th><td>{_code(json.dumps(t.spec.hyperparameters, sort_keys=True))}</td></tr>"
            if t.spec.status == "ok"
            else ""
        ),
        f"<tr><th>aggregation rule</th><td>{_e(t.rule_description)}</td></tr>",
        f"<tr><th>quorum</th><td>{t.quorum} revealed score sheets</td></tr>",
        f"<tr><th>windows</th><td>submissions {t.submission_window} s, commits {t.commit_window} s, reveals "
        f"{t.reveal_window} s, finalization grace {t.finalize_grace} s</td></tr>",
        f"<tr><th>max samples</th><td>{t.max_samples}</td></tr>",
        f"<tr><th>reward per round</th><td>{_e(_amount(t.reward_per_round))}</td></tr>",
        f"<tr><th>created</th><td>block {t.block_number} by {_code(t.admin)}, tx {_code(t.tx_hash)}</td></tr>",
        "</table>",
        "<h2>Rounds</h2><table><tr><th>round</th><th>base</th><th>aggregate</th><th>accepted</th>"
        "<th>accrued</th><th>finalized</th></tr>",
    ]
    for r in export.rounds:
        accepted = (
            f"{len(r.accepted_indexes)} of {len(r.updates)}" if r.finalized else f"— of {len(r.updates)}"
        )
        finalized = f"block {r.finalized_block}" if r.finalized else '<span class="pill">open</span>'
        if r.carried_over:
            finalized += ' <span class="pill">carried over</span>'
        parts.append(
            f"<tr><td>{r.round}</td><td>{_code(r.base_cid)}</td><td>{_code(r.aggregate_cid or '')}</td>"
            f"<td>{accepted}</td><td>{_e(_amount(r.rewards_accrued))}</td><td>{finalized}</td></tr>"
        )
    parts.append("</table>")
    for r in export.rounds:
        parts.append(f"<h2>Round {r.round}</h2>")
        parts.append(
            "<table><tr><th>#</th><th>contributor</th><th>update</th><th>samples</th><th>consensus</th>"
            "<th>verdict</th><th>scores</th><th>dataset</th></tr>"
        )
        for u in r.updates:
            css = {"accepted": "ok", "rejected": "bad"}.get(u.verdict, "muted")
            scores = ", ".join(
                f"{_e(v.validator[:10])}…: {v.score}"
                + (f" ({_e(reason_name(v.reason))})" if v.reason else "")
                for v in u.scores
            )
            consensus = "" if u.consensus is None else str(u.consensus)
            parts.append(
                f"<tr><td>{u.index}</td><td>{_code(u.contributor)}</td><td>{_code(u.cid)}</td>"
                f'<td>{u.num_samples}</td><td>{consensus}</td><td class="{css}">{_e(u.verdict)}</td>'
                f"<td>{scores}</td><td>{_code(dataset_line(u).removeprefix('dataset '))}</td></tr>"
            )
        parts.append("</table>")
        if r.reputation:
            parts.append(
                "<table><tr><th>account</th><th>role</th><th>reputation</th><th>change</th><th>reward</th></tr>"
            )
            for c in r.reputation:
                parts.append(
                    f"<tr><td>{_code(c.account)}</td><td>{_e(ROLE_NAMES.get(c.role, c.role))}</td>"
                    f"<td>{c.reputation}</td><td>{c.delta:+d}</td><td>{_e(_amount(c.reward))}</td></tr>"
                )
            parts.append("</table>")
    parts.append(
        '<p class="muted">Check any model yourself: <code>meshprov audit verify FILE</code>, '
        "<code>meshprov audit lineage CID --trustless</code>.</p></body></html>\n"
    )
    return "\n".join(parts)


def render(export: TaskExport, fmt: str) -> str:
    if fmt == "json":
        return to_json(export)
    if fmt == "csv":
        return to_csv(export)
    if fmt == "html":
        return to_html(export)
    raise ValueError(f"unknown format {fmt!r}")
