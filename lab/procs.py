"""Child processes of the demo: started in their own sessions, recorded, and always stopped.

Each child gets its own session (process group), so a terminal's Ctrl-C reaches only the demo, which then stops
them in order, and ``killpg`` reaches a child's own children too (Celery's pool). Every child is recorded in
``<dir>/processes.json`` with its pid and kernel start time, so a later run (or a test) can tell whether it is
still alive without ever signalling a reused pid.

Ctrl-C and SIGTERM (:func:`interrupting`) raise :class:`Interrupted`, a *subclass* of KeyboardInterrupt, wherever
the main thread is, with three guards:

- Not a plain KeyboardInterrupt: CPython (3.11.7 here) notes a KeyboardInterrupt that leaves code run by
  ``exec``/``eval`` of a *string* (dataclasses and namedtuples make their methods that way, so every import that
  defines one) in a process-wide flag (``_Py_UnhandledKeyboardInterrupt``, set in ``run_eval_code_obj``) that
  catching the exception does not clear; after ``python -m …`` exits, even with ``sys.exit(130)`` after a complete
  cleanup, it sees the flag and kills itself with SIGINT (exit -2, no traceback). It compares the exception's type
  by identity, so a subclass does not set it.
- :func:`interrupts_held`: a stretch that must not be cut (a child forked but not yet registered; the switch to
  :func:`uninterruptible`) records the signal and raises once it is over.
- The signal is also recorded, and :func:`raise_if_interrupted` raises it again: an exception raised in a
  ``__del__`` or a garbage-collector callback is printed and dropped by Python, and the run would go on.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from ledger.dev.services import proc_start_time

REGISTRY = "processes.json"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while :func:`interrupting` (see the module docstring for why a subclass)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class _Interrupts:
    active: int = 0
    """How many :func:`interrupting` contexts are open (the handler is installed while > 0)."""
    holding: int = 0
    signum: int | None = None
    """The signal that asked to stop (this run), raised or not."""
    held: bool = False
    """A signal arrived inside :func:`interrupts_held` and was not raised yet."""


_INTERRUPTS = _Interrupts()


def _on_stop_signal(signum: int, _frame: FrameType | None) -> None:
    _INTERRUPTS.signum = signum
    if _INTERRUPTS.holding:
        _INTERRUPTS.held = True
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def interrupting(signals: Sequence[int] = STOP_SIGNALS) -> Iterator[None]:
    """Within: each of ``signals`` raises :class:`Interrupted` in the main thread (see the module docstring)."""
    if not _INTERRUPTS.active:
        _INTERRUPTS.signum, _INTERRUPTS.held = None, False
    _INTERRUPTS.active += 1
    previous: dict[int, Any] = {}
    try:
        with interrupts_held():  # a signal pending while the handlers change is raised once they have
            for sig in signals:
                previous[sig] = signal.signal(sig, _on_stop_signal)
        yield
    except BaseException:
        _restore(previous)
        raise
    _restore(previous)
    if _INTERRUPTS.held:  # arrived while the handlers were being restored
        _INTERRUPTS.held = False
        assert _INTERRUPTS.signum is not None
        raise Interrupted(_INTERRUPTS.signum)


def _restore(previous: dict[int, Any]) -> None:
    """Put back the handlers ``previous`` held; a pending stop signal is held, not raised halfway through."""
    _INTERRUPTS.holding += 1
    try:
        for sig, old in previous.items():
            signal.signal(sig, old)
    finally:
        _INTERRUPTS.holding -= 1
        _INTERRUPTS.active -= 1


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Within: a stop signal is recorded, not raised; it is raised (:class:`Interrupted`) once the outermost such
    stretch ends without another exception."""
    _INTERRUPTS.holding += 1
    try:
        yield
    finally:
        _INTERRUPTS.holding -= 1
    if not _INTERRUPTS.holding and _INTERRUPTS.held:
        _INTERRUPTS.held = False
        assert _INTERRUPTS.signum is not None
        raise Interrupted(_INTERRUPTS.signum)


@contextlib.contextmanager
def uninterruptible(signals: Sequence[int] = STOP_SIGNALS) -> Iterator[None]:
    """Within: ``signals`` are ignored (a second Ctrl-C must not cut a cleanup short and leave processes behind).
    Entering it never raises: a signal pending while the handlers change is dropped, as one arriving within."""
    _INTERRUPTS.holding += 1
    previous: dict[int, Any] = {}
    try:
        for sig in signals:
            previous[sig] = signal.signal(sig, signal.SIG_IGN)
        yield
    finally:
        try:
            for sig, old in previous.items():
                signal.signal(sig, old)
        finally:
            _INTERRUPTS.holding -= 1
            _INTERRUPTS.held = False


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` if a stop signal arrived while :func:`interrupting` (once raised, it may have been
    dropped: see the module docstring)."""
    if _INTERRUPTS.active and not _INTERRUPTS.holding and _INTERRUPTS.signum is not None:
        raise Interrupted(_INTERRUPTS.signum)


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
        # Ctrl-C is held from the fork to the registration: raised in between (Python runs a handler right after
        # the call that forked returns, before Popen has even kept the pid), the child would run on, unrecorded.
        with interrupts_held():
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
