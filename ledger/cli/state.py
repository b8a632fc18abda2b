"""Global CLI state set by the root callback (``--json``, ``--config``, ``--data-dir``)."""

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


_state = CliState()


def current() -> CliState:
    return _state


def reset(state: CliState | None = None) -> None:
    global _state
    _state = state or CliState()


def settings(**overrides: Any) -> Settings:
    """Settings for this invocation: the command's own flags over the global ones over env, file, defaults."""
    merged = {**_state.overrides, **{k: v for k, v in overrides.items() if v is not None}}
    return load_settings(_state.config_file, **merged)
