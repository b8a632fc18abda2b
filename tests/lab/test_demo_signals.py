"""`meshprov demo` stops every process it started, and leaves nothing behind, on Ctrl-C and on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.demo import MARKER, prepare_directory
from lab.procs import ChildRecord, recorded
from ledger.exit_codes import ExitCode
from tests.lab.test_demo import clean_env, meshprov, processes_using
from tests.support import REPO


def signal_a_running_demo(
    data_dir: Path, sig: signal.Signals, ready: Callable[[], bool], waiting_for: str, timeout: float
) -> tuple[list[ChildRecord], int, str]:
    """Start a long demo in ``data_dir``, wait (at most ``timeout`` s) until ``ready()``, send ``sig``; the children
    it had recorded by then (all alive when signalled), its exit code and its stderr. The demo is killed if it
    outlives the test."""
    demo = subprocess.Popen(
        meshprov("demo", "--nodes", "2", "--malicious", "0", "--rounds", "50", "--data-dir", str(data_dir)),
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert demo.poll() is None, demo.communicate()[1][-3000:]
            assert time.monotonic() < deadline, f"the demo did not {waiting_for}"
            time.sleep(0.2)
        children = recorded(data_dir)
        assert all(c.alive() for c in children)
        demo.send_signal(sig)
        _, err = demo.communicate(timeout=60)  # the rounds left would take many minutes
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    return children, demo.returncode, err


def assert_stopped_cleanly(data_dir: Path, children: list[ChildRecord], returncode: int, err: str) -> None:
    assert returncode == ExitCode.INTERRUPTED, err[-3000:]
    assert not any(c.alive() for c in children)
    assert processes_using(data_dir.resolve()) == []
    assert not (data_dir / "services.json").exists()


@pytest.mark.anvil
@pytest.mark.redis
@pytest.mark.slow
def test_ctrl_c_stops_every_process_the_demo_started(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"

    def members_training() -> bool:  # every kind of child is up
        return len([r for r in recorded(data_dir) if r.name.startswith("node-")]) >= 2

    stopped = signal_a_running_demo(data_dir, signal.SIGINT, members_training, "start its members", 90)
    assert_stopped_cleanly(data_dir, *stopped)
    # The next run starts from an empty directory again.
    prepare_directory(data_dir)
    assert sorted(p.name for p in data_dir.iterdir()) == [MARKER]


@pytest.mark.anvil
@pytest.mark.redis
@pytest.mark.slow
def test_sigterm_during_the_rounds_stops_the_demo_promptly(tmp_path: Path) -> None:
    # `docker stop`, a supervisor, `timeout`: SIGTERM must stop the demo as Ctrl-C does, mid-round too, and soon.
    data_dir = tmp_path / "demo"

    def round_evaluated() -> bool:  # a round's aggregate is in models/: the demo is following the rounds
        return any((data_dir / "models").glob("*.safetensors"))

    stopped = signal_a_running_demo(data_dir, signal.SIGTERM, round_evaluated, "finish a round", 240)
    assert_stopped_cleanly(data_dir, *stopped)
