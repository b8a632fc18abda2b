"""One loader for the worker's MODULE:FUNCTION plug-ins: each wrong spec is refused naming what is wrong."""

from __future__ import annotations

import pytest

from ledger.errors import ConfigError
from worker.plugins import load_plugin


def test_a_callable_is_loaded() -> None:
    assert load_plugin("os.path:join", "the evaluator")("a", "b") == "a/b"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("os.path", "is not MODULE:FUNCTION"),
        ("no_such_module_xyz:f", "cannot load the evaluator"),
        ("os.path:no_such_function", "cannot load the evaluator"),
        ("os:sep", "is not callable"),
    ],
)
def test_a_wrong_spec_is_refused_naming_the_problem(spec: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_plugin(spec, "the evaluator")
