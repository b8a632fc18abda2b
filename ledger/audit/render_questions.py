"""Human output of the auditor's questions (`audit influence`, `audit rejudge`, `audit taint`); JSON is each report's ``to_dict``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from ledger.audit.render import short, source_line

if TYPE_CHECKING:
    from rich.console import Console

    from ledger.audit.influence import InfluenceReport
    from ledger.audit.privacy_report import PrivacyReport
    from ledger.audit.rejudge import RejudgeReport
    from ledger.audit.taint import TaintReport


def _num(value: float | None, fmt: str = ".4g") -> str:
    return "-" if value is None else format(value, fmt)


def influence(console: Console, report: InfluenceReport) -> None:
    console.print(
        f"[bold]task {report.task_id} round {report.round}[/]: {report.rule}, model {report.model_cid} "
        f"on base {report.base_cid}; the round moved the model by {_num(report.step)} (L2)"
    )
    if report.metrics is not None:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(report.metrics.items()))
        console.print(f"the round's model: {shown}")
    for r in report.rows:
        console.print(
            f"update {r.cid}  {short(r.contributor)}  weight {r.weight}  [dim]({r.seconds:.2f} s)[/]"
        )
        changes = "".join(f"  Δ{k} {v:+.4f}" for k, v in sorted((r.change or {}).items()))
        console.print(
            f"  without it {r.loo_cid or '-'}  distance {_num(r.distance)} ({_num(r.relative, '.3f')} of the "
            f"round's step){changes}"
        )
    console.print(
        f"[dim]fetched and verified the base, the model and the updates in {report.fetch_seconds:.2f} s[/]"
    )
    for note in report.notes:
        console.print(f"[dim]{escape(note)}[/]")
    console.print(source_line(report.source))


def rejudge(console: Console, report: RejudgeReport) -> None:
    console.print(
        f"[bold]task {report.task_id} round {report.round}[/]: {len(report.updates)} updates re-judged with the "
        f"limits of {escape(report.limits_from)}"
    )
    for u in report.updates:
        verdict = "[green]ACCEPTED[/]" if u.reason == "ACCEPTED" else f"[red]{u.reason}[/]"
        console.print(
            f"  {u.index:>3}  {u.cid}  {short(u.contributor)}  {verdict}  [dim]{escape(u.detail)}[/]"
        )
    for b in report.disagreements:
        console.print(
            f"[red]{b.kind}[/] validator {b.validator} on update {b.index}: scored {b.score} ({b.reason}), the "
            f"checks say {b.checks_reason} [dim]{escape(b.checks_detail)}; revealed in {b.tx_hash}[/]"
        )
    for b in report.ballots:
        if b.kind == "unverifiable":
            console.print(
                f"[dim]unverifiable: validator {b.validator} rejected update {b.index} for {b.reason}, which "
                "depends on its own data or history[/]"
            )
    for validator, tally in sorted(report.validators.items()):
        console.print(
            f"  {validator}  agree {tally['agree']}  disagree {tally['disagree']}  "
            f"unverifiable {tally['unverifiable']}"
        )
    for note in report.notes:
        console.print(f"[dim]{escape(note)}[/]")
    if report.disagreements:
        console.print(f"[red]DISAGREE[/]: {len(report.disagreements)} ballots differ from the checks")
    else:
        console.print("[green]OK[/]: every revealed ballot the checks can recompute agrees with them")
    console.print(source_line(report.source))


def taint(console: Console, report: TaintReport) -> None:
    console.print(f"[bold]taint of {report.query}[/] ({report.kind})")
    for u in report.updates:
        revoked = ""
        if u.revocation is not None:
            revoked = f"  [red]REVOKED[/] ({u.revocation['reason']}, block {u.revocation['block_number']})"
        console.print(
            f"  update {u.cid}  task {u.task_id} round {u.round} #{u.index}  {short(u.contributor)}  "
            f"{u.verdict}{revoked}"
        )
    for m in report.models:
        console.print(
            f"  [yellow]carries it[/]  task {m.task_id} round {m.round}  {m.model_cid}  depth {m.depth}"
            + ("" if len(m.via) == 1 else f"  ({len(m.via)} of the updates)")
        )
    for task_id, latest in sorted(report.latest.items()):
        state = "[red]still carries it[/]" if latest["carries"] else "[green]does not carry it[/]"
        console.print(
            f"task {task_id}'s latest model {latest['model_cid']} (round {latest['round']}) {state}"
        )
    for note in report.notes:
        console.print(f"[dim]{escape(note)}[/]")
    console.print(source_line(report.source))


def privacy(console: Console, report: PrivacyReport) -> None:
    budget = "no budget" if report.budget is None else f"budget ε ≤ {report.budget:g}"
    console.print(f"[bold]task {report.task_id}[/]: cumulative ε at δ = {report.delta:g} ({budget})")
    for m in report.members:
        if m.unbounded:
            value = "[red]unbounded[/] (an update without a usable privacy record)"
        elif m.epsilon is None:
            value = "-"
        else:
            value = f"ε = {m.epsilon:.4g} (order {m.order:g})"
        flag = "  [red]OVER BUDGET[/]" if m.over_budget else ""
        console.print(f"  {m.member}  {m.updates} updates, {m.accounted} accounted  {value}{flag}")
        for problem in m.problems:
            console.print(f"    [dim]{escape(problem)}[/]")
    console.print(f"[dim]{report.rule}[/]")
    for note in report.notes:
        console.print(f"[dim]{escape(note)}[/]")
    console.print(source_line(report.source))
