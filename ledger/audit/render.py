"""Audit reports for people: rich trees and tables on the console (``--json`` prints ``to_dict()`` instead)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from ledger.index.models import ROLE_NAMES, cid_of, reason_name

if TYPE_CHECKING:
    from rich.console import Console

    from ledger.audit.reports import AccountReport, LineageReport, RoundReport, VerifyReport
    from ledger.audit.source import SourceInfo
    from ledger.index.models import Lineage, Round, Update


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


def _update_line(u: Update) -> str:
    mark = {"accepted": "[green]✓[/]", "rejected": "[red]✗[/]"}.get(u.verdict, "[yellow]…[/]")
    rejects = sorted({reason_name(v.reason) for v in u.votes if not v.accept})
    why = f" [red]({', '.join(rejects)})[/]" if rejects else ""
    return (
        f"{mark} #{u.index} {short(u.contributor)}  {u.cid}  {u.num_samples} samples  "
        f"votes {u.accept_votes}✓ {u.reject_votes}✗{why}"
    )


def _round_node(parent: Tree, r: Round) -> None:
    if r.finalized:
        head = (
            f"[bold]round {r.round}[/]  {r.base_cid} → [bold]{r.aggregate_cid}[/]  "
            f"{len(r.accepted_indexes)} of {len(r.updates)} accepted, aggregated by {short(r.aggregator or '')} "
            f"in block {r.finalized_block}"
        )
    else:
        head = (
            f"[bold]round {r.round}[/]  base {r.base_cid}  [yellow]open[/], {len(r.updates)} updates so far"
        )
    node = parent.add(head)
    for u in r.updates:
        node.add(_update_line(u))


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
    tree.add(
        f"task {t.task_id}: {escape(t.rule_description)}, quorum {t.quorum}, created in block {t.block_number}"
    )
    if lin.update is not None:
        votes = tree.add("verdicts")
        for v in lin.update.votes:
            verdict = "[green]accept[/]" if v.accept else f"[red]reject: {reason_name(v.reason)}[/]"
            votes.add(f"{v.validator}  {verdict}  (block {v.block_number})")
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
                f"({a.accept_votes} accept, {a.reject_votes} reject votes; block {a.block_number})"
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
    if r.finalized:
        console.print(
            f"aggregate {r.aggregate_cid}  ({len(r.accepted_indexes)} of {len(r.updates)} accepted; "
            f"finalized by {r.aggregator} in block {r.finalized_block}; {amount(r.rewards_minted)} minted)"
        )
    else:
        console.print("[yellow]not finalized yet[/]")
    table = Table("#")
    table.add_column("contributor", overflow="fold")
    table.add_column("update", overflow="fold")
    for name in ("samples", "verdict", "votes"):
        table.add_column(name)
    for u in r.updates:
        votes = " ".join(
            ("[green]✓[/]" if v.accept else f"[red]✗ {reason_name(v.reason)}[/]") + f" {short(v.validator)}"
            for v in u.votes
        )
        style = {"accepted": "green", "rejected": "red"}.get(u.verdict, "yellow")
        table.add_row(
            str(u.index), u.contributor, u.cid or "", str(u.num_samples), f"[{style}]{u.verdict}[/]", votes
        )
    console.print(table)
    if r.reputation:
        settle = Table()
        settle.add_column("account", overflow="fold")
        for name in ("role", "reputation", "change", "reward"):
            settle.add_column(name)
        for c in r.reputation:
            settle.add_row(
                c.account,
                ROLE_NAMES.get(c.role, str(c.role)),
                str(c.reputation),
                f"{c.delta:+d}",
                amount(c.reward),
            )
        console.print(settle)
    console.print(source_line(report.source))


def account(console: Console, report: AccountReport) -> None:
    h = report.history
    console.print(f"[bold]{h.address}[/]  roles: {', '.join(h.roles) or 'none now'}")
    console.print(
        f"reputation: contributor {h.contributor_reputation if h.contributor_reputation is not None else '-'}, "
        f"validator {h.validator_reputation if h.validator_reputation is not None else '-'}; "
        f"rewards {amount(h.total_rewards)}"
        + (f"; token balance {amount(report.balance)}" if report.balance is not None else "")
    )
    if h.submissions:
        table = Table("task", "round", "#")
        table.add_column("update", overflow="fold")
        for name in ("samples", "verdict", "votes"):
            table.add_column(name)
        for u in h.submissions:
            rejects = sorted({reason_name(v.reason) for v in u.votes if not v.accept})
            table.add_row(
                str(u.task_id),
                str(u.round),
                str(u.index),
                u.cid or "",
                str(u.num_samples),
                u.verdict,
                f"{u.accept_votes}✓ {u.reject_votes}✗" + (f" ({', '.join(rejects)})" if rejects else ""),
            )
        console.print(table)
        console.print(f"{h.accepted_count} accepted, {h.rejected_count} rejected")
    if h.votes:
        console.print(f"{len(h.votes)} votes cast ({sum(1 for v in h.votes if not v.accept)} rejections)")
    if h.reputation:
        table = Table("when", "task", "round", "role", "reputation", "change", "reward")
        for c in h.reputation:
            when = (
                time.strftime("%Y-%m-%d %H:%M", time.gmtime(c.timestamp))
                if c.timestamp
                else f"#{c.block_number}"
            )
            table.add_row(
                when,
                str(c.task_id),
                str(c.round) if c.round else "grant",
                ROLE_NAMES.get(c.role, str(c.role)),
                str(c.reputation),
                f"{c.delta:+d}",
                amount(c.reward),
            )
        console.print(table)
    console.print(source_line(report.source))


__all__ = ["account", "amount", "cid_of", "lineage", "replay", "round_", "short", "source_line", "verify"]


def replay(console: Console, report: Any) -> None:
    console.print(
        f"[bold]task {report.task_id} round {report.round}[/]: {report.rule} over {len(report.inputs)} accepted "
        f"updates on base {report.base_cid}"
    )
    for item in report.inputs:
        console.print(f"  {item['cid']}  {item['contributor']}  {item['num_samples']} samples")
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
