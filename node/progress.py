"""Progress bars for the node's long steps (training, uploads, downloads), on stderr.

On a terminal they are rich progress bars that vanish when done; elsewhere (a container's log, the demo's log
files) nothing is drawn and the runner's one-line messages say what happened, so logs stay readable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

Advance = Callable[[int], None]
"""Report ``n`` more units done."""


class Bars(Protocol):
    def task(
        self, description: str, total: int | None, *, unit: str = ""
    ) -> contextlib.AbstractContextManager[Advance]:
        """A bar for one step; the context yields the function that advances it."""
        ...


class NoBars:
    """Draws nothing."""

    @contextlib.contextmanager
    def task(self, description: str, total: int | None, *, unit: str = "") -> Iterator[Advance]:
        yield lambda _n: None


class RichBars:
    """rich progress bars on stderr (only when stderr is a terminal: see :func:`bars_for_stderr`)."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)

    @contextlib.contextmanager
    def task(self, description: str, total: int | None, *, unit: str = "") -> Iterator[Advance]:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        amount = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            amount,
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        ) as progress:
            task_id = progress.add_task(description, total=total)
            yield lambda n: progress.advance(task_id, n)


def bars_for_stderr(enabled: bool = True) -> Bars:
    """Rich bars when stderr is a terminal and ``enabled``, else none."""
    import sys

    if enabled and sys.stderr.isatty():
        return RichBars()
    return NoBars()
