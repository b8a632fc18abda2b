"""Output conventions shared by every command.

* The result goes to stdout: JSON when ``--json`` is given (globally or on the command), else human text.
* Progress, logs and messages for people go to stderr, so ``meshprov … --json | jq`` always parses.
"""

from __future__ import annotations

import json
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


def emit(data: Any, *, json_mode: bool, human: Callable[[Console], None] | None = None) -> None:
    """Print a command's result: ``data`` as JSON, or ``human(console)`` for people."""
    if json_mode or human is None:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()
    else:
        human(stdout)


def info(message: str) -> None:
    """A message for people: always stderr."""
    stderr.print(message, highlight=False)
