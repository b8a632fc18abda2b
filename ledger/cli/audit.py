"""`meshprov audit lineage | verify | round | contributor | export | replay`: check the record of a model.

Every command answers from the index, brought up to date in-process first when there is a chain (``--no-sync``
skips that and warns when the index is behind; with no chain configured or embedded the index answers as it is,
with a warning), or with ``--trustless`` from the chain's logs alone. Exit codes: 0 everything checked
holds, 3 mismatch, 4 not found / not anchored, 2 bad input, 6 a service is unreachable (``--help-exit-codes``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledger.cli.output import JsonFlag, emit, info, want_json
from ledger.cli.state import settings as load_settings
from ledger.exit_codes import ExitCode

if TYPE_CHECKING:
    from ledger.audit.source import Source
    from ledger.settings import Settings

app = typer.Typer(no_args_is_help=True)

Trustless = Annotated[
    bool,
    typer.Option(
        "--trustless",
        help="Ignore the index: read the ledger's logs from the chain into a throwaway index and answer from it.",
    ),
]
NoSync = Annotated[
    bool,
    typer.Option("--no-sync", help="Answer from the index as it is (warn if it is behind the chain)."),
]
IndexUrl = Annotated[
    str | None,
    typer.Option("--index-url", help="Index database URL (overrides `index_url`).", show_default=False),
]


def _settings(index_url: str | None) -> Settings:
    return load_settings(index_url=index_url)


def _source(s: Settings, *, trustless: bool, no_sync: bool) -> Source:
    """The audit's source on the chain this command may use: `--trustless` needs one; otherwise the index
    answers, synced first when there is a chain (ledger/cli/endpoints.py says which)."""
    from ledger.audit.source import open_source
    from ledger.cli.endpoints import audit_chain_url, chain_url, with_chain

    url = chain_url(s) if trustless else audit_chain_url(s, sync=not no_sync)
    if trustless:
        info("[dim]reading the ledger's logs from the chain (--trustless)…[/]")
    source = open_source(with_chain(s, url), trustless=trustless, sync=not no_sync)
    for warning in source.info.warnings:
        info(f"[yellow]warning:[/] {warning}")
    return source


def _finish(report: Any, json_output: bool, human: Any) -> None:
    emit(report.to_dict(), json_mode=want_json(json_output), human=lambda console: human(console, report))
    code = ExitCode(report.exit_code)
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


@app.command()
def lineage(
    cid: Annotated[str, typer.Argument(help="CID of a model or update (Qm…, bafy…) or a 0x digest.")],
    *,
    trustless: Trustless = False,
    no_sync: NoSync = False,
    index_url: IndexUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """The history of a model back to its task's genesis: rounds, accepted updates, contributors, every
    validator's score and reason, each update's consensus, the rule. Exit 0 when every link holds, 3 when one does not, 4 when the CID is not anchored."""
    from ledger.audit import render, reports

    reports.parse_digest(cid)  # a CID that does not parse fails before any service is touched
    source = _source(_settings(index_url), trustless=trustless, no_sync=no_sync)
    try:
        report = reports.lineage(source, cid)
    finally:
        source.close()
    _finish(report, json_output, render.lineage)


@app.command()
def verify(
    file: Annotated[Path, typer.Argument(help="The file to check (a model, update or any file).")],
    *,
    expect: Annotated[
        str | None, typer.Option("--expect", help="The CID the file must have.", show_default=False)
    ] = None,
    task: Annotated[
        int | None, typer.Option("--task", min=1, help="With --round: compare with this task's model.")
    ] = None,
    round_: Annotated[
        int | None,
        typer.Option(
            "--round", min=0, help="With --task: the round whose aggregate the file must be (0: genesis)."
        ),
    ] = None,
    trustless: Trustless = False,
    no_sync: NoSync = False,
    index_url: IndexUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """Compute a file's CID (streamed, as `ipfs add --only-hash`) and report where it is anchored: task, round,
    role, contributor, verdict. Exit 0 anchored (and as expected), 3 mismatch, 4 not anchored."""
    from ledger.audit import render, reports
    from ledger.cli.store import input_file

    if (task is None) != (round_ is None):
        raise typer.BadParameter("give both --task and --round, or neither", param_hint="--task/--round")
    if expect is not None:
        reports.parse_digest(expect)
    input_file(file)
    source = _source(_settings(index_url), trustless=trustless, no_sync=no_sync)
    try:
        report = reports.verify(source, file, expect_cid=expect, task_id=task, round_=round_)
    finally:
        source.close()
    _finish(report, json_output, render.verify)


@app.command("round")
def round_command(
    task: Annotated[int, typer.Argument(min=1, help="Task id.")],
    round_: Annotated[int, typer.Argument(min=1, help="Round number (from 1).", metavar="ROUND")],
    *,
    trustless: Trustless = False,
    no_sync: NoSync = False,
    index_url: IndexUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """One round in full: base, per update each validator's score and reason, the consensus and whether it was
    accepted, the aggregate (or the carry-over), and per validator its weight, distance to the consensus or
    absence, reputation and reward accrued."""
    from ledger.audit import render, reports

    source = _source(_settings(index_url), trustless=trustless, no_sync=no_sync)
    try:
        report = reports.round_detail(source, task, round_)
    finally:
        source.close()
    _finish(report, json_output, render.round_)


@app.command()
def contributor(
    address: Annotated[str, typer.Argument(help="The member's address (0x…).")],
    *,
    trustless: Trustless = False,
    no_sync: NoSync = False,
    index_url: IndexUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """A member's history: submissions with their consensus scores and verdicts, scores revealed, reputation
    over time, rewards accrued and claimed."""
    from ledger.audit import render, reports
    from ledger.audit.errors import parse_address
    from ledger.audit.privacy_report import privacy

    parse_address(address)
    settings = _settings(index_url)
    source = _source(settings, trustless=trustless, no_sync=no_sync)
    try:
        report = reports.account(source, address)
        for task_id in sorted({u.task_id for u in report.history.submissions}):
            spent = privacy(source, settings, task_id, member=address)
            for m in spent.members:
                report.privacy.append(
                    {"task_id": task_id, "delta": spent.delta, "budget": spent.budget, **m.to_dict()}
                )
    finally:
        source.close()
    _finish(report, json_output, render.account)


@app.command()
def settlements(
    *,
    task: Annotated[
        int | None, typer.Option("--task", min=1, help="Report this task's rounds only (all are recomputed).")
    ] = None,
    trustless: Trustless = False,
    no_sync: NoSync = False,
    index_url: IndexUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """Recompute every finalized round's consensus, accepted set, reputations and rewards from its validator set,
    weights and revealed scores, and compare them with what RoundFinalized recorded. Exit 0 all equal, 3 not."""
    from ledger.audit import render
    from ledger.audit import settlements as settling

    source = _source(_settings(index_url), trustless=trustless, no_sync=no_sync)
    try:
        report = settling.check_settlements(source, task)
    finally:
        source.close()
    _finish(report, json_output, render.settlements)


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it: on any failure ``path`` is left as it was
    (no half-written report or statement)."""
    import contextlib
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); a report gets the mode a plain write would have given it.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@app.command()
def export(
    model: Annotated[
        str | None,
        typer.Argument(
            help="With --format in-toto: the CID (or 0x digest) of the model to describe.", show_default=False
        ),
    ] = None,
    *,
    task: Annotated[
        int | None, typer.Option("--task", min=1, help="Task id (default: the `task_id` setting).")
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="json, csv (one row per update), html (self-contained), or in-toto (a model's in-toto "
            "Statement with a SLSA provenance predicate; give MODEL).",
        ),
    ] = "html",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.", show_default=False)
    ] = None,
    subject_name: Annotated[
        str | None,
        typer.Option(
            "--subject-name",
            help="in-toto: the subject's name (default: MODEL_CID.safetensors).",
            show_default=False,
        ),
    ] = None,
    recipe: Annotated[
        Path | None,
        typer.Option(
            "--recipe",
            help="in-toto: the recipe's files (.py or package directory); checked against the task's recipe "
            "hash, they add the archive's sha-256 to the statement.",
            show_default=False,
        ),
    ] = None,
    trustless: Trustless = False,
    no_sync: NoSync = False,
    index_url: IndexUrl = None,
) -> None:
    """A task's whole record as one report, or (--format in-toto MODEL) the provenance of one model as an in-toto
    Statement: recipe, hyperparameters, base, every accepted update with its contributor and dataset commitment.
    Exit 3 if the latest model's lineage does not hold, 4 if the model, its specification or an input is not
    found."""
    from ledger.audit import export as exporting

    if fmt not in (*exporting.FORMATS, *exporting.MODEL_FORMATS):
        raise typer.BadParameter(
            f"choose one of {', '.join((*exporting.FORMATS, *exporting.MODEL_FORMATS))}",
            param_hint="--format",
        )
    if fmt in exporting.MODEL_FORMATS:
        if model is None:
            raise typer.BadParameter("--format in-toto describes one model: give its CID", param_hint="MODEL")
        if task is not None:
            raise typer.BadParameter(
                "--task is for the task reports; in-toto takes MODEL", param_hint="--task"
            )
        _export_statement(
            model,
            output=output,
            subject_name=subject_name,
            recipe=recipe,
            trustless=trustless,
            no_sync=no_sync,
            index_url=index_url,
        )
        return
    if model is not None or subject_name is not None or recipe is not None:
        raise typer.BadParameter(
            "MODEL, --subject-name and --recipe are for --format in-toto; the task reports take --task",
            param_hint="MODEL",
        )
    s = _settings(index_url)
    task_id = task if task is not None else s.task_id
    source = _source(s, trustless=trustless, no_sync=no_sync)
    try:
        collected = exporting.collect(source, task_id)
    finally:
        source.close()
    text = exporting.render(collected, fmt)
    if output is None:
        typer.echo(text, nl=False)
    else:
        _write_atomically(output, text)
        info(f"wrote {fmt} report of task {task_id} ({len(collected.rounds)} rounds) to {output}")
    if collected.problems:
        raise typer.Exit(int(ExitCode.MISMATCH))


def _export_statement(
    model: str,
    *,
    output: Path | None,
    subject_name: str | None,
    recipe: Path | None,
    trustless: bool,
    no_sync: bool,
    index_url: str | None,
) -> None:
    import json

    from ledger.audit import provenance, reports
    from ledger.content import open_store

    digest = reports.parse_digest(model)  # a CID that does not parse fails before any service is touched
    if recipe is not None and not recipe.exists():
        raise typer.BadParameter(f"{recipe} does not exist", param_hint="--recipe")
    if output is not None and not output.parent.is_dir():
        raise typer.BadParameter(f"the directory {output.parent} does not exist", param_hint="--output")
    s = _settings(index_url)
    source = _source(s, trustless=trustless, no_sync=no_sync)
    try:
        store = open_store(s)
        try:
            exported = provenance.gather(source, store, digest, subject_name=subject_name, recipe_path=recipe)
        finally:
            store.close()
    finally:
        source.close()
    text = json.dumps(exported.document, indent=2, sort_keys=True) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        _write_atomically(output, text)
        info(
            f"wrote the in-toto statement of task {exported.task_id} round {exported.round}'s model "
            f"({exported.updates} updates, recipe {exported.recipe}) to {output}"
        )


@app.command()
def replay(
    task: Annotated[int, typer.Argument(min=1, help="Task id.")],
    round_: Annotated[int, typer.Argument(min=1, help="Round number.", metavar="ROUND")],
    *,
    keep: Annotated[
        Path | None,
        typer.Option("--keep", help="Keep the recomputed aggregate file here.", show_default=False),
    ] = None,
    trustless: Trustless = False,
    no_sync: NoSync = False,
    index_url: IndexUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """Fetch the round's accepted updates and base from the content store, recompute the aggregate with the
    recorded rule, and compare its CID with the one on chain. Exit 0 equal, 3 different."""
    from ledger.audit import render
    from ledger.audit import replay as replaying

    s = _settings(index_url)
    source = _source(s, trustless=trustless, no_sync=no_sync)
    try:
        report = replaying.replay(source, s, task, round_, keep=keep)
    finally:
        source.close()
    _finish(report, json_output, render.replay)


def _register_questions() -> None:
    from ledger.cli.audit_questions import register

    register(app)


_register_questions()
