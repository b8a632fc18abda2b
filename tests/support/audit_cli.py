"""The `meshprov` command line as the audit tests call it: in-process, on a data directory and anvil, with the
caller's MESHPROV_* settings cleared, an in-memory index, and no traceback ever printed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.cli.app import main

Run = Callable[..., tuple[int, str, str]]


def meshprov_cli(
    consortium: Any,
    data_dir: Path,
    rpc_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Run:
    """``run(*args, index="sqlite://") -> (exit code, stdout, stderr)``; the consortium's nonces are re-read
    first (a module-scoped chain is shared by the tests)."""
    for name in list(os.environ):
        if name.startswith("MESHPROV_"):
            monkeypatch.delenv(name)
    consortium.reset_nonces()

    def run(*args: str, index: str = "sqlite://") -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--data-dir", str(data_dir), *args, "--rpc-url", rpc_url, "--index-url", index])
        out = capsys.readouterr()
        assert "Traceback" not in out.err
        return code, out.out, out.err

    return run
