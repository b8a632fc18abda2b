"""Child processes of the demo: started in their own sessions, recorded, and always stopped.

Each child gets its own session (process group), so a terminal's Ctrl-C reaches only the demo, which then stops
them in order, and ``killpg`` reaches a child's own children too (Celery's pool). Every child is recorded in
``<dir>/processes.json`` with its pid and kernel start time, so a later run (or a test) can tell whether it is
still alive without ever signalling a reused pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ledger.dev.services import proc_start_time

REGISTRY = "processes.json"


@dataclass
class ChildRecord:
    name: str
    pid: int
    start_time: int | None
    log: str
    argv: list[str]

    def alive(self) -> bool:
        return proc_start_time(self.pid) == self.start_time and self.start_time is not None


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    record: ChildRecord

    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)


class Children:
    """The processes one run started (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.registry = directory / REGISTRY
        self.children: list[Child] = []

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], *, cwd: Path | None = None
    ) -> Child:
        logs = self.directory / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{name}.log"
        popen: subprocess.Popen[bytes] | None = None
        try:
            with log.open("ab") as out:
                popen = subprocess.Popen(
                    list(argv),
                    env=dict(env),
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        finally:
            # Registered even when Ctrl-C lands right after the fork, so the clean-up still finds it.
            if popen is not None:
                record = ChildRecord(name, popen.pid, proc_start_time(popen.pid), str(log), list(argv))
                self.children.append(Child(name, popen, log, record))
        self._write()
        return self.children[-1]

    def _write(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.registry.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(c.record) for c in self.children], indent=2))
        os.replace(tmp, self.registry)

    def signal(self, children: Sequence[Child], sig: int) -> None:
        """Send ``sig`` to each child's group (no waiting)."""
        for child in children:
            if child.alive():
                child.signal_group(sig)

    def stop(self, children: Sequence[Child] | None = None, *, timeout: float = 15.0) -> None:
        """SIGTERM each group at once, wait for all (up to ``timeout``), SIGKILL what is left."""
        targets = list(self.children if children is None else children)
        for child in targets:
            if child.alive():
                child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in targets:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                child.popen.wait(remaining)
            except subprocess.TimeoutExpired:
                child.signal_group(signal.SIGKILL)
                child.popen.wait(5)
            child.signal_group(signal.SIGKILL)  # pool children that outlived their parent, if any

    def wait(self, children: Sequence[Child], timeout: float) -> bool:
        """Wait until every child in ``children`` has exited; False on timeout."""
        deadline = time.monotonic() + timeout
        for child in children:
            try:
                child.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        return True


def recorded(directory: Path) -> list[ChildRecord]:
    """The children a run recorded in ``directory`` (alive or not)."""
    try:
        data = json.loads((directory / REGISTRY).read_text())
    except (OSError, ValueError):
        return []
    return [ChildRecord(**item) for item in data if isinstance(item, dict)]


def stop_recorded(directory: Path, timeout: float = 10.0) -> list[str]:
    """Stop what an earlier run in ``directory`` left running (a crash, a kill -9); returns their names."""
    stopped = []
    for rec in recorded(directory):
        if not rec.alive():
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(rec.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while rec.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if rec.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(rec.pid, signal.SIGKILL)
        stopped.append(rec.name)
    return stopped
