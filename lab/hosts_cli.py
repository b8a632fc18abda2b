"""`meshprov lab`: test consortia that span hosts (network namespaces). See :mod:`lab.hosts` and docs/hosts.md."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from ledger.cli.output import JsonFlag, emit, info, want_json

app = typer.Typer(no_args_is_help=True, help="Multi-host test consortia in network namespaces.")


@app.command()
def hosts(
    *,
    members: Annotated[int, typer.Option("--members", min=3, help="Member hosts.")] = 3,
    validators: Annotated[
        int, typer.Option("--validators", min=2, help="Validator hosts (one organisation each).")
    ] = 2,
    aggregators: Annotated[int, typer.Option("--aggregators", min=2, help="Aggregator hosts.")] = 2,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Rounds to run to the end.")] = 2,
    quorum: Annotated[
        int | None, typer.Option("--quorum", min=1, help="Validators needed (default: a majority).")
    ] = None,
    recipe: Annotated[str, typer.Option("--recipe", help="The task's recipe (builtin or path).")] = "digits",
    submission_window: Annotated[
        int, typer.Option("--submission-window", min=5, help="Seconds members have to submit.")
    ] = 60,
    commit_window: Annotated[
        int, typer.Option("--commit-window", min=5, help="Seconds to commit scores.")
    ] = 60,
    reveal_window: Annotated[
        int, typer.Option("--reveal-window", min=5, help="Seconds to reveal them.")
    ] = 60,
    finalize_grace: Annotated[
        int, typer.Option("--finalize-grace", min=5, help="Seconds before anyone may carry a round over.")
    ] = 60,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="The lab's directory, emptied first (default: a fresh temporary one)."
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Give up after this many seconds.")
    ] = 900.0,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="Inject in --fault-round (repeatable): validator-link, aggregator-kill, member-store (docs/hosts.md).",
        ),
    ] = None,
    fault_round: Annotated[int, typer.Option("--fault-round", min=1, help="The round the faults hit.")] = 2,
    index: Annotated[
        str,
        typer.Option(
            "--index",
            help="The operator's index database: postgres (its own server on the operator host), sqlite, or auto "
            "(postgres when PostgreSQL's server binaries are installed).",
        ),
    ] = "auto",
    json_output: JsonFlag = False,
) -> None:
    """Make one network namespace per host (chain, operator, aggregators, validators of different
    organisations, members) on a bridge of its own, run --rounds rounds with content moving only over the
    trustless gateway, then stop every process and remove every namespace, link and bridge it made (also on
    Ctrl-C, SIGTERM or failure). Needs root. Exit 130 on Ctrl-C."""
    from lab.hosts import HostsConfig, HostsLab

    config = HostsConfig(
        members=members,
        validators=validators,
        aggregators=aggregators,
        rounds=rounds,
        quorum=quorum,
        recipe=recipe,
        submission_window_s=submission_window,
        commit_window_s=commit_window,
        reveal_window_s=reveal_window,
        finalize_grace_s=finalize_grace,
        timeout_s=timeout,
        data_dir=data_dir,
        faults=tuple(fault or ()),
        fault_round=fault_round,
        index=index,
    )
    with contextlib.redirect_stdout(sys.stderr):  # recipes print progress; stdout is for --json alone
        summary = HostsLab(config, say=info).run()
    b = summary["blocks"]
    info(
        f"{len(summary['rounds'])} rounds finalized on {len(summary['hosts'])} hosts; "
        f"{b['fetched_from_other_hosts']} blocks fetched from other hosts, {b['verified']} verified; "
        f"cleanup: {summary['cleanup']['namespaces_removed']} namespaces removed; summary in {summary['data_dir']}"
    )
    dashboard = summary.get("dashboard") or {}
    info(
        f"index in {summary['index'].get('backend')}, equal to a trustless rebuild: {summary['index'].get('equal')}; "
        f"dashboard at {dashboard.get('url')} read from {dashboard.get('fetched_from')}: "
        f"{'the chain' + chr(39) + 's rounds' if dashboard.get('equal') else 'NOT the chain' + chr(39) + 's rounds'}"
    )
    if want_json(json_output):
        emit(summary, json_mode=True)
