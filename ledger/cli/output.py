"""Output conventions shared by every command.

* The result goes to stdout: JSON when ``--json`` is given (globally or on the command), else human text.
* Progress, logs and messages for people go to stderr, so ``meshprov … --json | jq`` always parses.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Machine-readable JSON on stdout (human text and progress on stderr).")
]


def want_json(local_flag: bool = False) -> bool:
    """True when the command's own ``--json`` or the global one was given."""
    from ledger.cli.state import current

    return local_flag or current().json


def finite(data: Any) -> Any:
    """``data`` with every float that is NaN or infinite replaced by None, through dicts, lists and tuples: JSON
    has no such numbers, and Python's ``NaN`` in the output breaks ``jq`` and every strict parser (a recipe's
    ``evaluate`` may report a metric it could not compute as NaN)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite(v) for v in data]
    return data


def dumps(data: Any) -> str:
    """``data`` as the strict JSON every command prints (sorted keys, indented, non-finite floats as null)."""
    return json.dumps(finite(data), indent=2, sort_keys=True, default=str, allow_nan=False)


def emit(data: Any, *, json_mode: bool, human: Callable[[Console], None] | None = None) -> None:
    """Print a command's result: ``data`` as JSON, or ``human(console)`` for people."""
    if json_mode or human is None:
        sys.stdout.write(dumps(data) + "\n")
        sys.stdout.flush()
    else:
        human(stdout)


def info(message: str) -> None:
    """A message for people: always stderr."""
    stderr.print(message, highlight=False)
