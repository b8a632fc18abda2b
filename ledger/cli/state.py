"""The state of one `meshprov` invocation, written by the global options as they are parsed
(``ledger/cli/global_options.py``: ``--json``, ``--config``, ``--data-dir``, ``--log-level``, ``--rpc-url``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.settings import Settings, load_settings


@dataclass
class CliState:
    json: bool = False
    config_file: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    """Settings given by global options (``data_dir``, ``chain_rpc_url``, ``log_level``)."""


_state = CliState()


def current() -> CliState:
    return _state


def reset(state: CliState | None = None) -> None:
    """Start an invocation afresh (the root does, before parsing a command line)."""
    global _state
    _state = state or CliState()


def settings(**overrides: Any) -> Settings:
    """Settings for this invocation: the command's own flags over the global ones over env, file, defaults."""
    merged = {**_state.overrides, **{k: v for k, v in overrides.items() if v is not None}}
    return load_settings(_state.config_file, **merged)
