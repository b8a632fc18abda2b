"""`meshprov audit influence | rejudge | taint | privacy` (and the other auditor's questions of docs/audit.md): registered on the audit group
by :func:`register`, kept apart from ledger/cli/audit.py so that each question's options live with it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledger.cli.audit import IndexUrl, NoSync, Trustless  # the audit group's own options (it imports us last)
from ledger.cli.output import JsonFlag, emit, want_json
from ledger.exit_codes import ExitCode

if TYPE_CHECKING:
    from collections.abc import Mapping

    from numpy.typing import NDArray

    from ledger.audit.influence import Evaluator
    from ledger.audit.source import Source
    from ledger.settings import Settings

DEFAULT_RECIPE_HOST = "lab.recipe_validator:validator_hooks"
"""What ``--recipe`` loads the recipe through (the validators' host, ``worker.recipe.DEFAULT_HOST``): its
``metrics`` is the recipe's ``evaluate`` on the held-out half of the recipe's test set."""


def register(app: typer.Typer) -> None:
    app.command()(influence)
    app.command()(rejudge)
    app.command()(taint)
    app.command()(privacy)


def influence(
    task: Annotated[int, typer.Argument(min=1, help="Task id.")],
    round_: Annotated[int, typer.Argument(min=1, help="Round number.", metavar="ROUND")],
    *,
    update: Annotated[
        str | None,
        typer.Option("--update", help="Only this accepted update's influence (its CID).", show_default=False),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(
            "--recipe",
            help="Evaluate every model with this recipe (builtin name, module, .py file or package directory; "
            "its hash must be the task's).",
            show_default=False,
        ),
    ] = None,
    recipe_host: Annotated[
        str,
        typer.Option("--recipe-host", help="MODULE:FUNCTION that loads --recipe (the validators' host)."),
    ] = DEFAULT_RECIPE_HOST,
    evaluator: Annotated[
        str | None,
        typer.Option(
            "--evaluator",
            help="MODULE:FUNCTION called with each model's weights (dict of NumPy arrays by state-dict key), "
            "returning a dict of metrics: the auditor's own data.",
            show_default=False,
        ),
    ] = None,
    keep: Annotated[
        Path | None,
        typer.Option(
            "--keep", help="Copy every leave-one-out model into this directory.", show_default=False
        ),
    ] = None,
    trustless: Trustless = False,
    no_sync: NoSync = False,
    index_url: IndexUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """Recompute the round's aggregate without each accepted update (the recorded rule and weights) and report the
    leave-one-out model's CID, its distance from the round's model and, with --recipe or --evaluator, the change
    in the metrics. Exit 0, 4 when the round or update is not found, 10 when --recipe is not the task's."""
    from ledger.audit import influence as measuring
    from ledger.audit.render_questions import influence as render
    from ledger.cli.audit import _settings, _source
    from ledger.errors import ConfigError

    if recipe is not None and evaluator is not None:
        raise ConfigError(
            "give --recipe or --evaluator, not both", hint="--evaluator is for the auditor's own data"
        )
    s = _settings(index_url)
    source = _source(s, trustless=trustless, no_sync=no_sync)
    try:
        evaluate = _evaluator(s, source, task, recipe=recipe, host=recipe_host, evaluator=evaluator)
        report = measuring.influence(source, s, task, round_, update=update, evaluator=evaluate, keep=keep)
    finally:
        source.close()
    emit(report.to_dict(), json_mode=want_json(json_output), human=lambda console: render(console, report))


def rejudge(
    task: Annotated[int, typer.Argument(min=1, help="Task id.")],
    round_: Annotated[int, typer.Argument(min=1, help="Round number.", metavar="ROUND")],
    *,
    trustless: Trustless = False,
    no_sync: NoSync = False,
    index_url: IndexUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """Recompute every deterministic check of the round's updates with the settings the task's specification
    anchors, and list each validator's revealed ballots that disagree, with the evidence. Exit 0 none disagree,
    3 some do, 4 not found."""
    from ledger.audit import rejudge as rejudging
    from ledger.audit.render_questions import rejudge as render
    from ledger.cli.audit import _settings, _source

    s = _settings(index_url)
    source = _source(s, trustless=trustless, no_sync=no_sync)
    try:
        report = rejudging.rejudge(source, s, task, round_)
    finally:
        source.close()
    emit(report.to_dict(), json_mode=want_json(json_output), human=lambda console: render(console, report))
    if report.exit_code != ExitCode.OK:
        raise typer.Exit(int(report.exit_code))


def taint(
    what: Annotated[
        str | None,
        typer.Argument(help="An update's CID (or 0x digest), or a member's address.", show_default=False),
    ] = None,
    *,
    revoked: Annotated[
        bool, typer.Option("--revoked", help="Every update revoked on chain (protocol R8), instead.")
    ] = False,
    trustless: Trustless = False,
    no_sync: NoSync = False,
    index_url: IndexUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """Every later model that descends from an update (or from any of a member's updates, or from every revoked
    one), how many rounds deep, whether the task's latest model still carries it, and whether each tainting
    update is revoked. Exit 0, 4 when nothing matches."""
    from ledger.audit import taint as tainting
    from ledger.audit.render_questions import taint as render
    from ledger.cli.audit import _settings, _source

    s = _settings(index_url)
    source = _source(s, trustless=trustless, no_sync=no_sync)
    try:
        report = tainting.taint(source, what, revoked=revoked)
    finally:
        source.close()
    emit(report.to_dict(), json_mode=want_json(json_output), human=lambda console: render(console, report))


def privacy(
    task: Annotated[int, typer.Argument(min=1, help="Task id.")],
    *,
    member: Annotated[
        str | None, typer.Option("--member", help="Only this member's address.", show_default=False)
    ] = None,
    delta: Annotated[
        float | None,
        typer.Option(
            "--delta", help="δ to state ε at (default: the task's budget's, else 1e-5).", show_default=False
        ),
    ] = None,
    trustless: Trustless = False,
    no_sync: NoSync = False,
    index_url: IndexUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """Each member's cumulative privacy loss ε (at δ) over the task: RDP composition of the Gaussian releases its
    updates' privacy records describe. Exit 0, 3 when a member is over the budget the task anchors, 4 not found."""
    from ledger.audit import privacy_report
    from ledger.audit.render_questions import privacy as render
    from ledger.cli.audit import _settings, _source

    s = _settings(index_url)
    source = _source(s, trustless=trustless, no_sync=no_sync)
    try:
        report = privacy_report.privacy(source, s, task, member=member, delta=delta)
    finally:
        source.close()
    emit(report.to_dict(), json_mode=want_json(json_output), human=lambda console: render(console, report))
    if report.exit_code != ExitCode.OK:
        raise typer.Exit(int(report.exit_code))


def _evaluator(
    s: Settings, source: Source, task: int, *, recipe: str | None, host: str, evaluator: str | None
) -> Evaluator | None:
    from ledger.plugins import load_plugin

    if evaluator is not None:
        fn: Evaluator = load_plugin(evaluator, "the evaluator", example="mypkg.audit:metrics")
        return fn
    if recipe is None:
        return None
    from ledger.recipe import RecipeMismatch

    spec = _task_spec(s, source, task)
    hooks = load_plugin(host, "the recipe host", example=DEFAULT_RECIPE_HOST)(recipe, spec)
    if spec is not None and hooks.ref.cid != spec.recipe.cid:
        raise RecipeMismatch(task, hooks.ref, spec.recipe, refusing="evaluate its models")

    def metrics(weights: Mapping[str, NDArray[Any]]) -> Mapping[str, float]:
        result: Mapping[str, float] = hooks.metrics(weights)
        return result

    return metrics


def _task_spec(s: Settings, source: Source, task: int) -> Any:
    """The task's schema-2 specification read (bounded) from the store; None for a legacy one."""
    from ledger.content import open_store, read_bytes
    from ledger.index.models import cid_of
    from ledger.recipe import MAX_SPEC_BYTES, LegacyTaskSpec, parse_task_spec

    cid = cid_of(source.queries.task(task).spec_digest)
    store = open_store(s)
    try:
        raw = read_bytes(store, cid or "", max_bytes=MAX_SPEC_BYTES)
    finally:
        store.close()
    try:
        return parse_task_spec(raw)
    except LegacyTaskSpec:
        return None
