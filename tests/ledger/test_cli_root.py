"""The CLI root: version, exit codes with help, group registration, import direction."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ledger import __version__
from ledger.cli.app import main
from ledger.exit_codes import EXIT_CODE_HELP, ExitCode
from tests.support import REPO


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"meshprov {__version__}"


def test_every_exit_code_has_help() -> None:
    missing = [code.name for code in ExitCode if not EXIT_CODE_HELP.get(code, "").strip()]
    assert missing == []


def test_exit_codes_are_unique_and_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert len({int(c) for c in ExitCode}) == len(ExitCode)
    assert main(["--help-exit-codes"]) == 0
    out = capsys.readouterr().out
    for code in ExitCode:
        assert code.name in out
        assert EXIT_CODE_HELP[code] in out


def test_every_group_is_listed_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for group in ("dev", "worker", "node", "demo", "experiment"):
        assert f" {group} " in out


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--no-such-option"]) == ExitCode.USAGE
    assert "No such option" in capsys.readouterr().err


def test_ledger_imports_neither_node_nor_worker_nor_torch() -> None:
    code = (
        "import sys, ledger, ledger.cli.app, ledger.dev.services, ledger.settings\n"
        "ledger.cli.app.main(['--help'])\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('node', 'worker', 'torch', 'celery')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ledger_sources_never_import_node_or_worker() -> None:
    import pathlib

    import ledger

    root = pathlib.Path(ledger.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import node", "import worker", "from node", "from worker")):
                offenders.append(f"{path}: {stripped}")
    assert offenders == []


def test_readme_lists_every_exit_code() -> None:

    readme = (REPO / "README.md").read_text()
    for code in ExitCode:
        assert f"| {int(code)} | {code.name} |" in readme
