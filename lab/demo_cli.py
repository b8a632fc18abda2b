"""`meshprov demo`: run a whole consortium on one machine (see :mod:`lab.demo` and docs/demo.md)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from ledger.cli.output import JsonFlag, emit, info, stderr, want_json

app = typer.Typer(
    invoke_without_command=True,
    help="Run a whole consortium on one machine: chain, store, workers, members, audit.",
)

_TASK = "Task"
_MEMBERS = "Members"


@app.callback(invoke_without_command=True)
def demo(
    ctx: typer.Context,
    *,
    nodes: Annotated[
        int,
        typer.Option(
            "--nodes", min=1, max=112, help="Members (1-112: a round's updates).", rich_help_panel=_MEMBERS
        ),
    ] = 5,
    members_per_process: Annotated[
        int,
        typer.Option(
            "--members-per-process",
            min=0,
            help="Members one process hosts, each with its own key, data and log (1: each its own `meshprov node "
            "run`; 0: one member process per core).",
            rich_help_panel=_MEMBERS,
        ),
    ] = 0,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Rounds to run.", rich_help_panel=_TASK)] = 5,
    malicious: Annotated[
        int,
        typer.Option(
            "--malicious", min=0, help="Malicious members (the last ones).", rich_help_panel=_MEMBERS
        ),
    ] = 1,
    behaviour: Annotated[
        str,
        typer.Option(
            "--behaviour",
            help="What the malicious members publish: scale, sign-flip, noise, free-rider, copycat, little-is-enough.",
            rich_help_panel=_MEMBERS,
        ),
    ] = "scale",
    rule: Annotated[
        str,
        typer.Option(
            "--rule",
            help="Aggregation rule: fedavg, trimmed-mean, median, multi-krum.",
            rich_help_panel=_TASK,
        ),
    ] = "fedavg",
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="mlp or cnn: the builtin digits recipes (without --recipe).",
            rich_help_panel=_TASK,
        ),
    ] = "mlp",
    recipe: Annotated[
        str | None,
        typer.Option(
            "--recipe",
            help="The task's recipe: a builtin (digits, digits_cnn), an installed module name, or a path to a .py "
            "file or package directory (docs/recipes.md). Members train it, validators judge with it.",
            rich_help_panel=_TASK,
        ),
    ] = None,
    loss_delta: Annotated[
        float | None,
        typer.Option(
            "--loss-delta",
            min=0,
            help="Validators reject an update that raises the held-out loss (the recipe's evaluate) by more "
            "[default: 5; for a recipe that is not a builtin, twice its genesis's held-out loss if that is more].",
            rich_help_panel=_TASK,
            show_default=False,
        ),
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option(
            "--alpha",
            min=1e-6,
            help="Dirichlet α of the members' non-IID shards (default 0.5, raised when the recipe's data cannot be "
            "split over that many members).",
            rich_help_panel=_MEMBERS,
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Seed of the split, the model and training.")
    ] = 0,
    validators: Annotated[
        int,
        typer.Option(
            "--validators", min=1, max=32, help="Validators of the round's set (1-32).", rich_help_panel=_TASK
        ),
    ] = 3,
    quorum: Annotated[
        int,
        typer.Option(
            "--quorum",
            min=1,
            help="Validators that must reveal for an update to be accepted.",
            rich_help_panel=_TASK,
        ),
    ] = 2,
    validators_down: Annotated[
        int,
        typer.Option(
            "--validators-down",
            min=0,
            help="Validators never started (the last ones): absent every round; the rest still reach the quorum.",
            rich_help_panel=_TASK,
        ),
    ] = 0,
    lying_validators: Annotated[
        int,
        typer.Option(
            "--lying-validators",
            min=0,
            help="Validators (the first ones) that accept every update the checks reject, for "
            "`meshprov audit rejudge` to find; a minority of those running.",
            rich_help_panel=_TASK,
        ),
    ] = 0,
    submission_window: Annotated[
        int | None,
        typer.Option(
            "--submission-window",
            min=5,
            help="Seconds members have to submit (default 60 + 2 per member; ends when every member submitted).",
            rich_help_panel=_TASK,
        ),
    ] = None,
    commit_window: Annotated[
        int | None,
        typer.Option(
            "--commit-window",
            min=5,
            help="Seconds validators have to commit their scores once submissions close (default 60 + 1 per member; "
            "ends early when every validator committed).",
            rich_help_panel=_TASK,
        ),
    ] = None,
    reveal_window: Annotated[
        int | None,
        typer.Option(
            "--reveal-window",
            min=5,
            help="Seconds validators have to reveal them (60).",
            rich_help_panel=_TASK,
        ),
    ] = None,
    relay: Annotated[
        bool,
        typer.Option(
            "--relay", help="Members sign; a relayer submits for them (no gas).", rich_help_panel=_MEMBERS
        ),
    ] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="The demo's directory, emptied first (default: the global --data-dir, else .meshprov/demo).",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=1,
            help="Give up after this many seconds (default: what the rounds' windows allow).",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Start anvil and redis, deploy, run validators, an aggregator and the members as real processes for
    --rounds rounds; print each round and a summary with the final model's lineage and `audit verify`; write
    demo-summary.json. The state stays in the data directory for `meshprov --data-dir DIR audit …` and
    `meshprov --data-dir DIR dashboard serve`. Exit 130 on Ctrl-C, after stopping every process it started."""
    if ctx.invoked_subcommand is not None:
        return
    from lab.demo import DEFAULT_DIR, Demo, DemoConfig
    from lab.demo_report import print_summary
    from ledger.cli.state import current
    from node.task_bounds import DEFAULT_LOSS_DELTA

    chosen = data_dir or current().overrides.get("data_dir") or DEFAULT_DIR
    config = DemoConfig(
        nodes=nodes,
        rounds=rounds,
        malicious=malicious,
        behaviour=behaviour,
        rule=rule,
        model=model,
        recipe=recipe,
        loss_delta=DEFAULT_LOSS_DELTA if loss_delta is None else loss_delta,
        loss_delta_given=loss_delta is not None,
        alpha=0.5 if alpha is None else alpha,
        alpha_given=alpha is not None,
        seed=seed,
        data_dir=Path(chosen),
        validators=validators,
        quorum=quorum,
        validators_down=validators_down,
        lying_validators=lying_validators,
        submission_window_s=submission_window,
        commit_window_s=commit_window,
        reveal_window_s=reveal_window,
        relay=relay,
        timeout_s=timeout,
        members_per_process=members_per_process,
    )
    # The recipe's own code runs in this process too (its data, the reports' evaluate, the baseline's training),
    # and recipes print progress: stdout is kept for the --json summary alone.
    with contextlib.redirect_stdout(sys.stderr):
        summary = Demo(config, console=stderr, say=info).run()
    print_summary(stderr, summary)
    if want_json(json_output):
        emit(summary, json_mode=True)
