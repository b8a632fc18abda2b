"""The house's rules, checked on the source: which top-level package may import which.

``ledger`` (the protocol and the record) imports none of ``node``, ``worker`` or ``lab``; ``node`` (the member)
and ``worker`` (validators and aggregators) never import each other, and only ``ledger``; ``lab`` (whole
consortia) may import all three. No shipped package imports ``tests`` or ``benchmarks``. Every import counts:
module level, inside functions, and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import REPO

SHIPPED = ("ledger", "node", "worker", "lab")
ALLOWED: dict[str, set[str]] = {
    "ledger": {"ledger"},
    "node": {"ledger", "node"},
    "worker": {"ledger", "worker"},
    "lab": {"ledger", "node", "worker", "lab"},
}
PROJECT = (*SHIPPED, "tests", "benchmarks")


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level project package) of every import in a module, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = path.relative_to(REPO).parts[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [package] if node.level else [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PROJECT:
                out.append((node.lineno, top))
    return out


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        for line, top in imported_packages(path):
            if top not in ALLOWED[package]:
                found.append(f"{path.relative_to(REPO)}:{line} imports {top}")
    return found


@pytest.mark.parametrize("package", SHIPPED)
def test_each_package_imports_only_what_it_may(package: str) -> None:
    assert violations(package) == []


def test_the_checker_sees_every_kind_of_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule bites: a node module that imports the worker (as node/experiment.py once did, inside a
    function), or tests, is reported; so is a relative import that stays inside the package (allowed)."""
    fake = tmp_path / "node" / "experiment.py"
    fake.parent.mkdir()
    fake.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import training\n"
        "if TYPE_CHECKING:\n"
        "    import tests.support\n"
        "def judge():\n"
        "    from worker.verify import judge_round\n"
        "    return judge_round\n"
    )
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    assert violations("node") == ["node/experiment.py:4 imports tests", "node/experiment.py:6 imports worker"]


def test_every_top_level_package_says_what_lives_there_and_who_may_import_it() -> None:
    for package in SHIPPED:
        doc = ast.get_docstring(ast.parse((REPO / package / "__init__.py").read_text(encoding="utf-8"))) or ""
        assert "import" in doc, f"{package}/__init__.py does not say what may import it"
        assert len(doc.splitlines()) >= 3, f"{package}/__init__.py does not say what lives there"
