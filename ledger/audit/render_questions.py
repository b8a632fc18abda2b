"""Human output of the auditor's questions (`audit influence`); JSON is each report's ``to_dict``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from ledger.audit.render import short, source_line

if TYPE_CHECKING:
    from rich.console import Console

    from ledger.audit.influence import InfluenceReport


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
