"""Ctrl-C and SIGTERM in the processes that start children (``lab.procs``: the demo, ``lab hosts``): the exit code
stays 130 whatever code the signal lands in, a child forked as it lands is still recorded (and stopped), and an
interrupt Python drops is raised again."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab import procs
from lab.demo import sigterm_as_interrupt, uninterruptible
from lab.procs import Children, Interrupted, interrupting, interrupts_held, raise_if_interrupted, recorded
from tests.support import REPO

# A process that enters the demo's handlers, is interrupted while exec() runs a string (as dataclasses and
# namedtuples make their methods while a module is imported), cleans up and exits 130, as `meshprov demo` does.
INTERRUPTED_IN_EXEC = """
import os, signal, sys
from lab.demo import sigterm_as_interrupt

try:
    with sigterm_as_interrupt():
        exec("import os, signal\\nos.kill(os.getpid(), signal.SIG{sig})\\nfor _ in range(100): pass\\n")
        print("not interrupted", file=sys.stderr)
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
sys.exit(130)
"""


@pytest.mark.parametrize("sig", ["INT", "TERM"])
def test_an_interrupt_landing_in_code_exec_runs_from_a_string_still_exits_130(
    tmp_path: Path, sig: str
) -> None:
    # Run with -m like the demo (`python -m ledger.cli.app demo`): CPython kept a plain KeyboardInterrupt that left
    # exec() in a flag and, at exit, killed the process with SIGINT despite sys.exit(130) (returncode -2).
    (tmp_path / "interrupted_in_exec.py").write_text(INTERRUPTED_IN_EXEC.format(sig=sig))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-m", "interrupted_in_exec"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr.strip()) == (130, "interrupted")


def interrupted_at(sig: int) -> None:
    """Signal this process and run a few bytecodes (where Python runs the handler)."""
    signal.raise_signal(sig)
    for _ in range(100):
        pass


def test_an_interrupt_is_a_keyboard_interrupt_of_its_own_class() -> None:
    with pytest.raises(Interrupted) as caught, sigterm_as_interrupt():
        interrupted_at(signal.SIGTERM)
    assert isinstance(caught.value, KeyboardInterrupt)
    assert type(caught.value) is not KeyboardInterrupt
    assert caught.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_an_interrupt_held_is_raised_when_the_stretch_ends() -> None:
    steps = []

    def held() -> None:
        with interrupts_held():
            interrupted_at(signal.SIGINT)
            steps.append("held to the end")
        steps.append("after")  # pragma: no cover - the interrupt is raised as the stretch ends

    with pytest.raises(Interrupted), interrupting():
        held()
    assert steps == ["held to the end"]


def test_a_child_forked_as_the_interrupt_lands_is_recorded_and_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_popen = subprocess.Popen

    def popen_then_signal(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        # The interrupt lands as soon as the fork returns: without the hold it is raised before the pid is kept.
        process = real_popen(*args, **kwargs)
        interrupted_at(signal.SIGINT)
        return process

    children = Children(tmp_path)
    monkeypatch.setattr(procs.subprocess, "Popen", popen_then_signal)
    with pytest.raises(Interrupted), interrupting():
        children.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))
    monkeypatch.undo()
    (record,) = recorded(tmp_path)
    assert record.name == "sleeper"
    assert record.alive()
    children.stop(timeout=5)
    assert not record.alive()


def test_an_interrupt_python_dropped_is_raised_again(monkeypatch: pytest.MonkeyPatch) -> None:
    dropped: list[type[BaseException] | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: dropped.append(info.exc_type))

    class Finalized:
        def __del__(self) -> None:
            # The handler runs here; Python reports its exception as unraisable and drops it.
            interrupted_at(signal.SIGTERM)

    def dropped_then_checked() -> None:
        Finalized()
        gc.collect()
        assert dropped == [Interrupted]
        raise_if_interrupted()

    with pytest.raises(Interrupted), interrupting():
        dropped_then_checked()
    raise_if_interrupted()  # outside: nothing to raise


def test_the_cleanup_is_not_cut_short_by_a_signal_pending_as_it_begins() -> None:
    cleaned = []

    def interrupted_then_cleaned() -> None:
        try:
            raise Interrupted(signal.SIGINT)
        finally:
            with interrupts_held():
                signal.raise_signal(signal.SIGINT)  # a second Ctrl-C, pending as the cleanup begins
                with uninterruptible():
                    interrupted_at(signal.SIGINT)
                    cleaned.append(True)

    with pytest.raises(Interrupted), interrupting():
        interrupted_then_cleaned()
    assert cleaned == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_handlers_are_put_back() -> None:
    before = {sig: signal.getsignal(sig) for sig in procs.STOP_SIGNALS}
    with interrupting():
        assert all(signal.getsignal(sig) is procs._on_stop_signal for sig in procs.STOP_SIGNALS)
        with uninterruptible():
            assert all(signal.getsignal(sig) == signal.SIG_IGN for sig in procs.STOP_SIGNALS)
        assert all(signal.getsignal(sig) is procs._on_stop_signal for sig in procs.STOP_SIGNALS)
    assert {sig: signal.getsignal(sig) for sig in procs.STOP_SIGNALS} == before
