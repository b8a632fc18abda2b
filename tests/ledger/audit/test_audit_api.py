"""``ledger.audit.api.Auditor`` as an auditor's program calls it: in a fresh interpreter where torch cannot be
imported, on a real chain and store (the influence test's two finalized rounds), every question answered and equal
to what the CLI answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from ledger.dev.services import AnvilProcess
from tests.ledger.audit.test_audit_influence import cli, rounds  # noqa: F401 - the fixtures this test reuses

pytestmark = pytest.mark.anvil

PROGRAM = """
import json, sys
sys.modules["torch"] = None  # an auditor's machine without torch: importing it fails
from ledger.audit.api import Auditor

data_dir, rpc, model, update = sys.argv[1:5]
with Auditor.open(data_dir=data_dir, rpc_url=rpc, index_url="sqlite://") as audit:
    lineage = audit.lineage(model)
    replay = audit.replay(1, 1)
    influence = audit.influence(1, 1, update=update, evaluator=lambda w: {"w00": float(w["w"][0, 0])})
    rejudge = audit.rejudge(1, 1)
    taint = audit.taint(update)
    export = audit.export(1)
    statement_error = None
    try:
        audit.intoto(model)
    except Exception as exc:  # the spec is a stand-in digest here: a named, typed refusal
        statement_error = (type(exc).__name__, exc.exit_code)
print(json.dumps({
    "lineage": [lineage.cid, lineage.verified, len(lineage.lineages)],
    "model_metrics": influence.metrics,
    "replay": replay.status,
    "influence": [r.to_dict() for r in influence.rows],
    "disagreements": len(rejudge.disagreements),
    "taint_rounds": [m.round for m in taint.models],
    "export_rounds": len(export.rounds),
    "statement_error": statement_error,
    "torch": "torch" in sys.modules and sys.modules["torch"] is not None,
}))
"""


def test_an_auditors_program_without_torch(rounds: Any, cli: Any, anvil: AnvilProcess, tmp_path: Any) -> None:  # noqa: F811
    _, data_dir, _, _, out = rounds
    fed = out[1]
    update = sorted(fed["files"])[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHPROV_")}
    script = tmp_path / "audit_program.py"
    script.write_text(PROGRAM)
    done = subprocess.run(
        [sys.executable, str(script), str(data_dir), anvil.rpc_url, fed["model_cid"], update],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["torch"] is False
    assert result["replay"] == "match"
    expected = {r["cid"]: r for r in json.loads(cli("audit", "influence", "1", "1", "--json")[1])["updates"]}
    [row] = result["influence"]
    assert row["loo_cid"] == expected[update]["loo_cid"]
    assert row["metrics"]["w00"] == pytest.approx(
        row["change"]["w00"] + (row["metrics"]["w00"] - row["change"]["w00"])
    )
    assert result["disagreements"] == 0
    assert result["taint_rounds"] == [1]
    assert result["export_rounds"] >= 1
    assert result["statement_error"] is not None
    assert result["statement_error"][1] == 4  # not found: the stand-in spec is not in the store
