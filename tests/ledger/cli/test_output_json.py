"""Every command's JSON is strict: a NaN or infinite float (a recipe's metric it could not compute) is null, so that
``meshprov … --json | jq`` and every strict parser read it (Python's json wrote ``NaN``)."""

from __future__ import annotations

import json
import math

import pytest

from ledger.cli.output import dumps, emit, finite


def _strict(text: str) -> object:
    def refuse(constant: str) -> object:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_become_null_at_any_depth_and_the_rest_is_kept() -> None:
    data = {
        "final": {"metrics": {"loss": 0.5, "auc": math.nan, "big": math.inf}},
        "rounds": [(1, -math.inf)],
        "n": 3,
    }
    assert finite(data) == {
        "final": {"metrics": {"loss": 0.5, "auc": None, "big": None}},
        "rounds": [[1, None]],
        "n": 3,
    }
    assert _strict(dumps(data)) == finite(data)
    with pytest.raises(ValueError, match="NaN"):
        _strict(json.dumps(data))  # what the demo's --json printed before


def test_emit_prints_strict_json(capsys: pytest.CaptureFixture[str]) -> None:
    emit({"accuracy": math.nan, "cid": "Qm"}, json_mode=True)
    assert _strict(capsys.readouterr().out) == {"accuracy": None, "cid": "Qm"}
