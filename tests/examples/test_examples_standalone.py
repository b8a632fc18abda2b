"""Every example is a recipe written as a member would write it outside this repository: it imports nothing
of meshprov (only the standard library, torch and numpy), has a README saying how to run it, and loads."""

from __future__ import annotations

import ast
import sys

import pytest

from node.recipe import load_recipe
from tests.support import REPO

EXAMPLES = sorted(p for p in (REPO / "examples").iterdir() if (p / "__init__.py").is_file())
ALLOWED = {"torch", "numpy", *sys.stdlib_module_names}


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"cnn_batchnorm", "transformer_lm"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_an_example_imports_only_the_standard_library_torch_and_numpy(example) -> None:  # type: ignore[no-untyped-def]
    for path in example.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in ALLOWED, f"{path.relative_to(REPO)} imports {name}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_an_example_has_a_readme_with_the_demo_command(example) -> None:  # type: ignore[no-untyped-def]
    readme = (example / "README.md").read_text(encoding="utf-8")
    assert f"meshprov demo --recipe examples/{example.name}" in readme
    recipe = load_recipe(str(example))
    assert recipe.name == example.name
