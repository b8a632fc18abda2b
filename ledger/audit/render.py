"""Audit reports for people: rich trees and tables on the console (``--json`` prints ``to_dict()`` instead)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from ledger.chain.scores import SCORE_ONE
from ledger.index.models import ROLE_NAMES, cid_of, reason_name

if TYPE_CHECKING:
    from rich.console import Console

    from ledger.audit.reports import AccountReport, LineageReport, RoundReport, VerifyReport
    from ledger.audit.source import SourceInfo
    from ledger.index.models import Lineage, Round, TaskRecord, Update


def short(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


def amount(units: int | None) -> str:
    if units is None:
        return "-"
    return f"{units / 10**18:,.6f}".rstrip("0").rstrip(".") + " MESH"


def source_line(info: SourceInfo) -> str:
    fresh = "" if info.behind in (0, None) else f", {info.behind} blocks behind the chain head"
    how = "trustless: read from the chain's logs" if info.mode == "trustless" else "from the index"
    return (
        f"[dim]{how}; chain {info.chain_id}, ledger {info.ledger}, up to block {info.indexed_to}{fresh} "
        f"({info.seconds * 1000:.0f} ms)[/]"
    )


def score(value: int | None) -> str:
    """A fixed-point score (10,000 = 1.0) as people read it: +0.4500, -1.0000."""
    if value is None:
        return "-"
    return f"{value / SCORE_ONE:+.4f}"


def _reasons(u: Update) -> list[str]:
    return sorted({reason_name(v.reason) for v in u.scores if v.reason})


def _update_line(u: Update) -> str:
    mark = {"accepted": "[green]✓[/]", "rejected": "[red]✗[/]", "carried-over": "[dim]↷[/]"}.get(
        u.verdict, "[yellow]…[/]"
    )
    rejects = _reasons(u)
    why = f" [red]({', '.join(rejects)})[/]" if rejects else ""
    return (
        f"{mark} #{u.index} {short(u.contributor)}  {u.cid}  consensus {score(u.consensus)}  "
        f"scores {' '.join(score(v.score) for v in u.scores) or '-'}{why}"
    )


def _round_node(parent: Tree, r: Round) -> None:
    if r.carried_over:
        head = (
            f"[bold]round {r.round}[/]  {r.base_cid} [yellow]carried over[/] by {short(r.finalized_by or '')} "
            f"in block {r.finalized_block}"
        )
    elif r.finalized:
        head = (
            f"[bold]round {r.round}[/]  {r.base_cid} → [bold]{r.aggregate_cid}[/]  "
            f"{len(r.accepted_indexes)} of {len(r.updates)} accepted, aggregated by "
            f"{short(r.finalized_by or '')} in block {r.finalized_block}"
        )
    else:
        head = (
            f"[bold]round {r.round}[/]  base {r.base_cid}  [yellow]open[/], {len(r.updates)} updates so far"
        )
    node = parent.add(head)
    for u in r.updates:
        node.add(_update_line(u)).add(f"[dim]{escape(dataset_line(u))}[/]")


def dataset_line(u: Update) -> str:
    """The contributor's dataset commitment as its update file's metadata records it (index schema v3)."""
    if u.metadata == "ok":
        return f"dataset {u.dataset}" if u.dataset else "dataset: none committed"
    if u.metadata == "invalid":
        return "dataset: unknown (the update's metadata does not parse)"
    return "dataset: unknown (the update is not in the content store)"


def recipe_lines(t: TaskRecord) -> list[str]:
    """The task's recipe and hyperparameters as its specification says (index schema v3)."""
    import json

    lines = [f"recipe: {t.spec.recipe_summary}"]
    if t.spec.status == "ok":
        lines.append(f"hyperparameters: {json.dumps(t.spec.hyperparameters, sort_keys=True)}")
    return lines


def _lineage_tree(lin: Lineage) -> Tree:
    t = lin.task
    if lin.role == "aggregate":
        title = f"[bold]{lin.cid}[/] is the model of task {t.task_id} round {lin.rounds[0].round}"
    elif lin.role == "genesis":
        title = f"[bold]{lin.cid}[/] is the genesis model of task {t.task_id}"
    else:
        assert lin.update is not None
        title = (
            f"[bold]{lin.cid}[/] is update #{lin.update.index} of task {t.task_id} round {lin.update.round} by "
            f"{lin.update.contributor}: [bold]{lin.update.verdict}[/]"
        )
    tree = Tree(title)
    task_node = tree.add(
        f"task {t.task_id}: {escape(t.rule_description)}, quorum {t.quorum}, created in block {t.block_number}"
    )
    task_node.add(f"specification {t.spec_cid}")
    for line in recipe_lines(t):
        task_node.add(escape(line))
    if lin.update is not None:
        scores = tree.add(f"scores (consensus {score(lin.update.consensus)})")
        for v in lin.update.scores:
            why = f"  [red]reject: {reason_name(v.reason)}[/]" if v.reason else ""
            scores.add(f"{v.validator}  {score(v.score)}{why}  (block {v.block_number})")
        if lin.used_in is not None:
            tree.add(f"used in the aggregate {lin.used_in.aggregate_cid} of round {lin.used_in.round}")
        if lin.rounds:
            tree.add("[dim]trained on the model below[/]")
    for r in lin.rounds:
        _round_node(tree, r)
    tree.add(f"genesis {t.genesis_cid}")
    if lin.problems:
        problems = tree.add("[bold red]problems[/]")
        for p in lin.problems:
            problems.add(f"[red]{escape(p)}[/]")
    return tree


def lineage(console: Console, report: LineageReport) -> None:
    for lin in report.lineages:
        console.print(_lineage_tree(lin), soft_wrap=False)
        verdict = (
            f"[green]verified[/]: {lin.depth} round{'s' if lin.depth != 1 else ''} back to genesis, every base the "
            "previous model"
            if lin.verified
            else f"[red]not verified[/]: {len(lin.problems)} problems"
        )
        console.print(verdict)
    console.print(source_line(report.source))


def verify(console: Console, report: VerifyReport) -> None:
    console.print(f"{report.file}: [bold]{report.cid}[/] ({report.size:,} bytes)")
    if report.expected is not None:
        if report.status == "mismatch":
            console.print(f"[red]MISMATCH[/]: {report.expected_from} is {report.expected}")
        else:
            console.print(f"[green]matches[/] {report.expected_from}")
    if not report.anchors:
        console.print("[yellow]not anchored[/]: no task, round or submission of this ledger names this CID")
    for a in report.anchors:
        where = f"task {a.task_id}" + (f" round {a.round}" if a.round is not None else "")
        if a.role == "update":
            console.print(
                f"[green]anchored[/] as update #{a.index} of {where} by {a.contributor}: [bold]{a.verdict}[/] "
                f"(consensus {score(a.consensus)}; {a.positive_scores} positive, {a.other_scores} other scores; "
                f"block {a.block_number})"
            )
        else:
            console.print(
                f"[green]anchored[/] as the {a.role} model of {where} (block {a.block_number}, tx {a.tx_hash})"
            )
    if report.metadata:
        kind = report.metadata.get("kind") or report.metadata.get("type") or "file"
        console.print(f"[dim]metadata ({kind}): {escape(str(report.metadata))}[/]")
    console.print(source_line(report.source))


def round_(console: Console, report: RoundReport) -> None:
    r = report.round
    console.print(
        f"[bold]task {r.task_id} round {r.round}[/]: opened by {r.opened_by} in block {r.opened_block}"
    )
    console.print(f"base      {r.base_cid}")
    if r.carried_over:
        console.print(
            f"[yellow]carried over[/] by {r.finalized_by} in block {r.finalized_block}: no aggregate, the model "
            "is the base; reputations settled, no reward accrued"
        )
    elif r.finalized:
        console.print(
            f"aggregate {r.aggregate_cid}  ({len(r.accepted_indexes)} of {len(r.updates)} accepted; "
            f"finalized by {r.finalized_by} in block {r.finalized_block}; {amount(r.rewards_accrued)} accrued)"
        )
    else:
        console.print("[yellow]not finalized yet[/]")
    # One column per validator of the set (v1, v2, … in set order, named in the validator table below): the
    # table must stay readable on an 80-column terminal, so addresses are shortened and the update CIDs follow
    # it (the full record is in --json).
    table = Table("#", "contributor")
    for k, _ in enumerate(r.validators, start=1):
        table.add_column(f"v{k}", justify="right", overflow="fold")
    table.add_column("consensus", justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for u in r.updates:
        by_validator = {v.validator: v for v in u.scores}
        cells = []
        for m in r.validators:
            v = by_validator.get(m.validator)
            if v is None:
                cells.append("[dim]-[/]")
            elif v.reason:
                cells.append(f"[red]✗{score(v.score)}[/]")  # its reason is listed with the update's CID
            else:
                cells.append(score(v.score))
        style = {"accepted": "green", "rejected": "red", "carried-over": "dim"}.get(u.verdict, "yellow")
        table.add_row(
            str(u.index), short(u.contributor), *cells, score(u.consensus), f"[{style}]{u.verdict}[/]"
        )
    console.print(table)
    position = {m.validator: k for k, m in enumerate(r.validators, start=1)}
    for u in r.updates:
        rejects = ", ".join(
            f"v{position.get(v.validator, '?')} {reason_name(v.reason)}" for v in u.scores if v.reason
        )
        console.print(
            f"  #{u.index} {u.cid}  [dim]{u.num_samples} samples claimed[/]"
            + (f"  [red]hard rejects: {rejects}[/]" if rejects else "")
        )
    if r.validators:
        vt = Table("v", "validator")
        for name in ("weight", "revealed", "distance", "reputation", "reward"):
            vt.add_column(name, justify="right", no_wrap=True)
        for k, m in enumerate(r.validators, start=1):
            distance = "-" if m.distance is None else str(m.distance)
            if m.absent:
                distance = "[red]absent[/]"
            revealed = "yes" if m.revealed else ("[red]no[/]" if m.committed else "[red]no commit[/]")
            vt.add_row(
                f"v{k}",
                short(m.validator),
                str(m.weight),
                revealed,
                distance,
                "-" if m.reputation is None else str(m.reputation),
                amount(m.reward),
            )
        console.print(vt)
    contributors = [c for c in r.reputation if c.role == 0]
    if contributors:
        settle = Table("contributor")
        for name in ("consensus", "reputation", "change", "reward"):
            settle.add_column(name, justify="right", no_wrap=True)
        for c in contributors:
            settle.add_row(
                short(c.account), score(c.score), str(c.reputation), f"{c.delta:+d}", amount(c.reward)
            )
        console.print(settle)
    console.print(source_line(report.source))


def account(console: Console, report: AccountReport) -> None:
    h = report.history
    console.print(f"[bold]{h.address}[/]  roles: {', '.join(h.roles) or 'none now'}")
    console.print(
        f"reputation: contributor {h.contributor_reputation if h.contributor_reputation is not None else '-'}, "
        f"validator {h.validator_reputation if h.validator_reputation is not None else '-'}"
    )
    console.print(
        f"rewards: {amount(h.total_rewards)} accrued, {amount(h.total_claimed)} claimed, "
        f"{amount(h.unclaimed)} unclaimed"
        + (f"; on chain: {amount(report.accrued)} unclaimed" if report.accrued is not None else "")
        + (f", token balance {amount(report.balance)}" if report.balance is not None else "")
    )
    for p in report.privacy:
        spent = "unbounded" if p["unbounded"] else "-" if p["epsilon"] is None else f"ε = {p['epsilon']:.4g}"
        budget = "no budget" if p["budget"] is None else f"budget ε ≤ {p['budget']:g}"
        over = " [bold red]OVER BUDGET[/]" if p["over_budget"] else ""
        console.print(
            f"privacy, task {p['task_id']}: {spent} at δ = {p['delta']:g} over {p['updates']} update(s) ({budget}){over}"
        )
    if h.submissions:
        table = Table("task", "round", "#")
        table.add_column("update", overflow="fold")
        for name in ("samples", "consensus", "verdict", "scores"):
            table.add_column(name)
        for u in h.submissions:
            rejects = _reasons(u)
            table.add_row(
                str(u.task_id),
                str(u.round),
                str(u.index),
                u.cid or "",
                str(u.num_samples),
                score(u.consensus),
                u.verdict,
                " ".join(score(v.score) for v in u.scores) + (f" ({', '.join(rejects)})" if rejects else ""),
            )
        console.print(table)
        carried = f", {h.carried_over_count} in carried-over rounds" if h.carried_over_count else ""
        console.print(f"{h.accepted_count} accepted, {h.rejected_count} rejected{carried}")
    if h.scores:
        rounds = len(set(h.score_rounds))
        hard = sum(1 for v in h.scores if v.reason)
        console.print(f"{len(h.scores)} scores revealed in {rounds} rounds ({hard} hard rejects)")
    if h.reputation:
        table = Table("when", "task", "round", "role", "reputation", "change", "consensus/distance", "reward")
        for c in h.reputation:
            when = (
                time.strftime("%Y-%m-%d %H:%M", time.gmtime(c.timestamp))
                if c.timestamp
                else f"#{c.block_number}"
            )
            if not c.round:
                say = "-"
            elif c.role == 0:
                say = score(c.score)
            else:
                say = "absent" if c.absent else str(c.distance)
            table.add_row(
                when,
                str(c.task_id),
                str(c.round) if c.round else "grant",
                ROLE_NAMES.get(c.role, str(c.role)),
                str(c.reputation),
                f"{c.delta:+d}",
                say,
                amount(c.reward),
            )
        console.print(table)
    for rc in h.role_changes_scheduled:
        what = f"{'grant' if rc.grant else 'revoke'} {rc.role}"
        if rc.cancelled:
            console.print(f"[yellow]role change cancelled[/]: {what} (block {rc.block_number})")
        else:
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(rc.execute_after or 0))
            console.print(
                f"[yellow]role change scheduled[/]: {what}, executable by anyone from {when} "
                f"(block {rc.block_number})"
            )
    if h.claims:
        table = Table("block", "claimed")
        for cl in h.claims:
            table.add_row(str(cl.block_number), amount(cl.amount))
        console.print(table)
    console.print(source_line(report.source))


__all__ = [
    "account",
    "amount",
    "cid_of",
    "lineage",
    "replay",
    "round_",
    "score",
    "settlements",
    "short",
    "source_line",
    "verify",
]


def replay(console: Console, report: Any) -> None:
    console.print(
        f"[bold]task {report.task_id} round {report.round}[/]: {report.rule} over {len(report.inputs)} accepted "
        f"updates on base {report.base_cid}"
    )
    for item in report.inputs:
        console.print(
            f"  {item['cid']}  {item['contributor']}  weight {item['weight']} (consensus)  "
            f"[dim]{item['num_samples']} samples claimed[/]"
        )
    console.print(f"on chain   {report.onchain_cid}")
    if report.recomputed_cid is not None:
        console.print(f"recomputed {report.recomputed_cid}  ({report.seconds:.2f} s)")
    for note in report.notes:
        console.print(f"[dim]{escape(note)}[/]")
    verdict = {
        "match": "[green]MATCH[/]: the aggregate is reproduced bit for bit",
        "carried-over": "[green]OK[/]: nothing accepted, the model carried over",
        "mismatch": "[red]MISMATCH[/]: the recomputed aggregate differs from the one on chain",
    }[report.status]
    console.print(verdict)
    if report.kept:
        console.print(f"[dim]aggregate kept at {report.kept}[/]")
    console.print(source_line(report.source))


def settlements(console: Console, report: Any) -> None:
    where = f"task {report.task_id}" if report.task_id is not None else "every task"
    constants = (
        "the contract's constants"
        if report.constants_from == "chain"
        else "protocol v2's default constants (no chain to read the contract's from)"
    )
    console.print(
        f"[bold]settlements of {where}[/]: {len(report.checks)} finalized rounds recomputed with {constants}"
    )
    for c in report.checks:
        what = "carried over" if c.carried_over else f"accepted {c.accepted}"
        if c.matches:
            console.print(
                f"  [green]✓[/] task {c.task_id} round {c.round} (block {c.finalized_block}): {what}"
            )
        else:
            console.print(f"  [red]✗[/] task {c.task_id} round {c.round} (block {c.finalized_block}): {what}")
            for d in c.differences:
                console.print(f"      [red]{escape(d)}[/]")
    if report.mismatches:
        console.print(
            f"[red]MISMATCH[/]: {len(report.mismatches)} rounds were not settled as the rules give from their inputs"
        )
    else:
        console.print(
            "[green]OK[/]: every consensus, accepted set, reputation and reward is the rules' outcome of the scores"
        )
    console.print(source_line(report.source))
