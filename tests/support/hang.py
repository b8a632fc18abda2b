"""Running a script that may hang for good (a forked child waiting on a thread pool the fork did not copy)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.support import REPO


def rounds_or_fail(script: str, *args: str, timeout: float = 120.0) -> list[str]:
    """The lines ``python -c script args`` printed. It runs in its own process group: one still running after
    ``timeout`` is killed with every child it forked, and the test fails with the rounds it finished."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,  # a hung child is in the group, and goes with it
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"a reference child hung; rounds done: {out.splitlines()}")
    assert proc.returncode == 0, err[-3000:]
    return out.splitlines()
