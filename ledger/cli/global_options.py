"""The global options (``--data-dir``, ``--config``, ``--json``, ``--log-level``, ``--rpc-url``), accepted before
or after the command, by every command of the tree.

They are declared once, below, and :func:`add_to_tree` appends them to the root and to every group and command
of the click tree `meshprov` runs (including the groups other packages add through ``meshprov.commands``), so
``meshprov --data-dir D audit verify F`` and ``meshprov audit verify F --data-dir D`` mean the same. Each option
writes the invocation's :class:`~ledger.cli.state.CliState` as it is parsed; when one is given twice the later
(innermost) wins. A command that declares an option of the same name itself (`demo --data-dir`, a command's own
``--json``) keeps its own, which reads the same state.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from ledger.cli.state import current

PANEL = "Global options (before or after the command)"
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def _store(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """Record a global option in the invocation's state; an option not given (None, False) changes nothing."""
    if value is None or value is False:
        return value
    state = current()
    if param.name == "json_output":
        state.json = True
    elif param.name == "config":
        state.config_file = Path(value)
    elif param.name == "data_dir":
        state.overrides["data_dir"] = Path(value)
    elif param.name == "rpc_url":
        state.overrides["chain_rpc_url"] = str(value)
    elif param.name == "log_level":
        level = str(value).upper()
        state.overrides["log_level"] = level
        logging.getLogger().setLevel(level)
    return value


def _declaration(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            callback=_store,
            expose_value=False,
            show_default=False,
            rich_help_panel=PANEL,
            help="Data directory (overrides MESHPROV_DATA_DIR).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            callback=_store,
            expose_value=False,
            show_default=False,
            rich_help_panel=PANEL,
            help="TOML settings file (overrides $MESHPROV_CONFIG).",
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            callback=_store,
            expose_value=False,
            rich_help_panel=PANEL,
            help="Machine-readable JSON on stdout; human text goes to stderr.",
        ),
    ] = False,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(
            "--log-level",
            callback=_store,
            expose_value=False,
            case_sensitive=False,
            show_default=False,
            rich_help_panel=PANEL,
            help="Logging threshold on stderr (overrides MESHPROV_LOG_LEVEL).",
        ),
    ] = None,
    rpc_url: Annotated[
        str | None,
        typer.Option(
            "--rpc-url",
            callback=_store,
            expose_value=False,
            show_default=False,
            rich_help_panel=PANEL,
            help="Chain JSON-RPC endpoint (overrides MESHPROV_CHAIN_RPC_URL).",
        ),
    ] = None,
) -> None:
    """Only its signature matters: typer turns it into the global options' click parameters."""


def _parameters() -> list[Any]:
    holder = typer.Typer(add_completion=False)
    holder.command()(_declaration)
    return list(typer.main.get_command(holder).params)


PARAMETERS: list[Any] = _parameters()
NAMES: tuple[str, ...] = tuple(opt for p in PARAMETERS for opt in p.opts)
TAKE_A_VALUE: frozenset[str] = frozenset(opt for p in PARAMETERS if not p.is_flag for opt in p.opts)


def add_to_tree(command: Any) -> None:
    """Append the global options to ``command`` and every command below it (skipping an option the command
    declares itself)."""
    declared = {
        opt for p in command.params for opt in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))
    }
    for param in PARAMETERS:
        if not declared.intersection(param.opts):
            command.params.append(param)
    for sub in getattr(command, "commands", {}).values():
        add_to_tree(sub)
