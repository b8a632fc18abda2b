"""`meshprov experiment byzantine | faults`: the robustness study (docs/robustness.md).

``byzantine`` runs the pure pipeline (node training, the validators' checks and scores, the contract's consensus
and settlement, the ledger's aggregation; no transport) over attacks × fractions of malicious members × pipelines
× seeds, optionally with Byzantine validators, and prints the goal checks and the tables; ``--out`` also writes
the plots and a summary. ``faults`` runs ``lab.faults`` (real anvil, redis-server and worker processes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledger.cli.output import JsonFlag, emit, info, want_json

if TYPE_CHECKING:
    from rich.console import Console

    from lab.experiment import ExperimentResult

app = typer.Typer(no_args_is_help=True, help="Robustness experiments: Byzantine members and fault injection.")

_SWEEP = "Sweep"
_OUTPUT = "Output"


def _split(values: list[str] | None) -> list[str]:
    """Options given once with commas or repeated: `--attack scale,noise --attack copycat`."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _pick(values: list[str] | None, allowed: Sequence[str], option: str) -> list[str]:
    """The values of a repeatable option, each one of ``allowed`` (a usage error naming them otherwise)."""
    chosen = _split(values)
    wrong = [v for v in chosen if v not in allowed]
    if wrong:
        raise typer.BadParameter(f"{', '.join(wrong)}: {option} takes {', '.join(allowed)}")
    return chosen


@app.command()
def byzantine(
    *,
    attack: Annotated[
        list[str] | None,
        typer.Option(
            "--attack",
            help="Attacks (repeatable or comma-separated): scale, sign-flip, noise, free-rider, copycat, "
            "little-is-enough, sample-inflation, noisy-copy, front-run [default: all].",
            rich_help_panel=_SWEEP,
        ),
    ] = None,
    fraction: Annotated[
        list[str] | None,
        typer.Option(
            "--fraction",
            help="Fractions of malicious members [default: 0,0.1,0.2,0.3,0.4]; 0 is the honest-only run.",
            rich_help_panel=_SWEEP,
        ),
    ] = None,
    pipeline: Annotated[
        list[str] | None,
        typer.Option(
            "--pipeline",
            help="fedavg-unchecked, fedavg, trimmed-mean, median, multi-krum [default: all].",
            rich_help_panel=_SWEEP,
        ),
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Seeds 0..n-1.", rich_help_panel=_SWEEP)] = 3,
    rounds: Annotated[int, typer.Option("--rounds", min=1, rich_help_panel=_SWEEP)] = 10,
    nodes: Annotated[int, typer.Option("--nodes", min=2, rich_help_panel=_SWEEP)] = 10,
    alpha: Annotated[
        float, typer.Option("--alpha", min=1e-6, help="Dirichlet α of the shards.", rich_help_panel=_SWEEP)
    ] = 0.5,
    tolerated: Annotated[
        int,
        typer.Option(
            "--tolerated",
            min=1,
            help="f the robust rules are configured for (trim f/N per side, multi-krum f).",
            rich_help_panel=_SWEEP,
        ),
    ] = 3,
    validators: Annotated[
        int, typer.Option("--validators", min=1, help="Validators per round.", rich_help_panel=_SWEEP)
    ] = 3,
    quorum: Annotated[
        int,
        typer.Option("--quorum", min=1, help="Reveals needed to accept anything.", rich_help_panel=_SWEEP),
    ] = 2,
    byzantine_validators: Annotated[
        int,
        typer.Option(
            "--byzantine-validators",
            min=0,
            help="Byzantine validators (the last of the set) in the runs with a --validator-attack; the runs "
            "with honest validators are always made too, for comparison.",
            rich_help_panel=_SWEEP,
        ),
    ] = 0,
    validator_attack: Annotated[
        list[str] | None,
        typer.Option(
            "--validator-attack",
            help="How Byzantine validators score (repeatable or comma-separated): always-reject, always-accept, "
            "random, collude, lazy [default: all, when --byzantine-validators > 0].",
            rich_help_panel=_SWEEP,
        ),
    ] = None,
    loss_check: Annotated[
        bool,
        typer.Option(
            "--loss-check/--no-loss-check",
            help="Validators' scores with the held-out loss gate (--loss-delta) or without.",
            rich_help_panel=_SWEEP,
        ),
    ] = True,
    loss_delta: Annotated[
        float,
        typer.Option("--loss-delta", min=0.0, help="Held-out loss margin (nats).", rich_help_panel=_SWEEP),
    ] = 5.0,
    absent: Annotated[
        bool,
        typer.Option(
            "--absent/--no-absent",
            help="Also run the f members absent (what losing their data alone costs).",
            rich_help_panel=_SWEEP,
        ),
    ] = True,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Processes (one torch thread each).")] = 2,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the PNG plots and summary.json here.", rich_help_panel=_OUTPUT),
    ] = None,
    results: Annotated[
        Path | None,
        typer.Option(
            "--results", help="Save every run (JSON) here, to re-plot later.", rich_help_panel=_OUTPUT
        ),
    ] = None,
    from_results: Annotated[
        Path | None,
        typer.Option(
            "--from-results",
            help="Summarise a saved --results file instead of running.",
            rich_help_panel=_OUTPUT,
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Byzantine members against every pipeline: accuracy, rounds to 90 %, rewards and reputation."""
    from lab.experiment import (
        ABSENT,
        ATTACKS,
        FRACTIONS,
        PIPELINES,
        VALIDATOR_ATTACKS,
        ExperimentConfig,
        ExperimentResult,
        Pipeline,
        run_sweep,
        sweep_configs,
    )
    from lab.experiment_report import goal, goal_f, summarise, validator_goal

    if from_results is not None:
        runs = [ExperimentResult.from_dict(r) for r in json.loads(from_results.read_text())]
    else:
        attacks = _pick(attack, ATTACKS, "--attack") or list(ATTACKS)
        fractions = [float(f) for f in _split(fraction)] or list(FRACTIONS)
        pipelines = [Pipeline(p) for p in _pick(pipeline, PIPELINES, "--pipeline")] or list(PIPELINES)
        if quorum > validators or byzantine_validators >= validators:
            raise typer.BadParameter(
                f"need --quorum ≤ --validators and --byzantine-validators < --validators (got {quorum}, "
                f"{byzantine_validators}, {validators})"
            )
        chosen = _pick(validator_attack, VALIDATOR_ATTACKS, "--validator-attack")
        if chosen and not byzantine_validators:
            raise typer.BadParameter("--validator-attack needs --byzantine-validators K with K ≥ 1")
        byzantine_runs: list[str | None] = []
        if byzantine_validators:
            byzantine_runs += chosen or [str(a) for a in VALIDATOR_ATTACKS]
        common: dict[str, Any] = {
            "validators": validators,
            "quorum": quorum,
            "rounds": rounds,
            "num_nodes": nodes,
            "alpha": alpha,
            "tolerated": tolerated,
            "loss_delta": loss_delta if loss_check else None,
        }
        configs = sweep_configs(
            attacks=attacks,
            fractions=fractions,
            pipelines=pipelines,
            seeds=range(seeds),
            validator_attacks=[None, *byzantine_runs],
            byzantine_validators=byzantine_validators,
            **common,
        )
        if absent:
            configs += [
                ExperimentConfig(ABSENT, round(f * nodes), p, s, **common)
                for f in fractions
                if f
                for p in pipelines
                for s in range(seeds)
            ]
        info(f"[dim]{len(configs)} runs of {rounds} rounds on {jobs} process(es)…[/]")

        def progress(result: ExperimentResult, done: int, total: int) -> None:
            if done % 10 == 0 or done == total:
                info(f"[dim]{done}/{total} runs done ({result.config.label}: {result.seconds:.1f} s)[/]")

        runs = run_sweep(configs, jobs=jobs, progress=progress)
        if results is not None:
            results.parent.mkdir(parents=True, exist_ok=True)
            results.write_text(json.dumps([r.to_dict() for r in runs]))
            info(f"every run saved to {results}")

    cells = summarise(runs)
    at = goal_f(cells)
    rows = goal(cells, f=at)
    validator_rows = validator_goal(cells)
    summary = _summary(runs, cells, rows, validator_rows)
    if out is not None:
        from lab.experiment_report import plot

        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        for path in plot(runs, out):
            info(f"wrote {path}")
    emit(
        summary,
        json_mode=want_json(json_output),
        human=lambda console: _human(console, cells, rows, validator_rows),
    )


def _summary(
    runs: list[ExperimentResult], cells: list[Any], rows: list[Any], validator_rows: list[Any]
) -> dict[str, Any]:
    from lab.experiment import DEFAULT_PIPELINE, TARGET_ACCURACY
    from lab.experiment_report import goal_f

    first = runs[0].config if runs else None
    return {
        "default_pipeline": str(DEFAULT_PIPELINE),
        "target_accuracy": TARGET_ACCURACY,
        "runs": len(runs),
        "seconds": sum(r.seconds for r in runs),
        "setup": None
        if first is None
        else {
            "nodes": first.num_nodes,
            "alpha": first.alpha,
            "rounds": first.rounds,
            "model": first.model,
            "validators": first.validators,
            "quorum": first.quorum,
            "tolerated": first.tolerated,
            "loss_delta": first.loss_delta,
        },
        "goal_f": goal_f(cells),
        "goal": [
            {
                "attack": r.attack,
                "accuracy": r.accuracy,
                "absent_accuracy": r.reference,
                "honest_accuracy": r.honest,
                "drop": r.drop,
                "reward_share": r.share,
                "reward_share_max": r.share_max,
                "reward_share_bound": r.share_bound,
                "accuracy_ok": r.accuracy_ok,
                "reward_ok": r.reward_ok,
            }
            for r in rows
        ],
        "validator_goal": [
            {
                "validator_attack": r.validator_attack,
                "byzantine_validators": r.byzantine_validators,
                "validators": r.validators,
                "attack": r.attack,
                "f": r.num_malicious,
                "honest_rejected": r.honest_rejected,
                "honest_rejected_with_honest_validators": r.honest_rejected_by_honest,
                "honest_rejected_flipped": r.flips[0],
                "malicious_accepted_flipped": r.flips[1],
                "validator_reward_share_max": r.share_max,
                "rejection_ok": r.rejection_ok,
                "acceptance_ok": r.acceptance_ok,
                "reward_ok": r.reward_ok,
            }
            for r in validator_rows
        ],
        "cells": [
            {
                "attack": c.attack,
                "f": c.num_malicious,
                "pipeline": str(c.pipeline),
                "seeds": list(c.seeds),
                "final_accuracy": list(c.final_accuracy),
                "rounds_to_target": list(c.rounds_to_target),
                "reward_share": list(c.reward_share),
                "malicious_reputation": list(c.reputation),
                "malicious_accepted": c.malicious_accepted,
                "malicious_submitted": c.malicious_submitted,
                "honest_rejected": c.honest_rejected,
                "validator_attack": c.validator_attack,
                "byzantine_validators": c.byzantine_validators,
                "byzantine_flips": list(c.byzantine_flips),
                "validator_reward_share": list(c.validator_share),
            }
            for c in cells
        ],
    }


def _human(console: Console, cells: list[Any], rows: list[Any], validator_rows: list[Any]) -> None:
    from lab.experiment import DEFAULT_PIPELINE
    from lab.experiment_report import (
        accuracy_grid,
        cell_table,
        goal_f,
        goal_table,
        share_grid,
        validator_goal_table,
    )

    fs = sorted({c.num_malicious for c in cells})
    at = goal_f(cells)
    nodes = cells[0].num_nodes if cells else 0
    console.print(
        f"## Goal: {at} malicious of {nodes}, default pipeline ({DEFAULT_PIPELINE})\n", markup=False
    )
    console.print(goal_table(rows) + "\n", markup=False)
    if validator_rows:
        console.print("## Byzantine validators (below half the weight), default pipeline\n", markup=False)
        console.print(validator_goal_table(validator_rows) + "\n", markup=False)
    console.print(f"## Every pipeline at f = {at}\n", markup=False)
    console.print(cell_table(cells, f=at) + "\n", markup=False)
    console.print("## Final accuracy (%) by number of malicious members\n", markup=False)
    console.print(accuracy_grid(cells, fs) + "\n", markup=False)
    console.print("## Malicious share of contributor rewards (%)\n", markup=False)
    console.print(share_grid(cells, fs), markup=False)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def faults(ctx: typer.Context) -> None:
    """Fault injection on real processes (kill -9 workers, restart Redis and anvil, store outage): see
    :mod:`lab.faults` and its --help."""
    from lab.faults import main

    code = main(list(ctx.args))
    if code:
        raise typer.Exit(code)
