"""`meshprov chain revoke` and `meshprov audit taint` on a real chain: a round-1 update accepted into a task of
four rounds is revoked by a validator majority (one validator alone is not enough); its taint names every later
model with its depth, says the latest still carries it and shows the revocation; a member's taint covers all of
its accepted updates; a rejected update taints nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ledger.chain.client import connect_web3
from ledger.chain.scores import REJECT
from ledger.cli.app import main
from ledger.content import digest_to_cid
from ledger.dev.services import AnvilProcess
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason
from tests.support.chain import Consortium, chain_snapshot, fake_digest

pytestmark = pytest.mark.anvil

ROUNDS = 4


def _scores(v: int, i: int, r: int) -> int | tuple[int, int]:
    if r == 1 and i == 3:
        return (REJECT, int(Reason.NORM_OUTLIER))  # contributor 3's round-1 update is rejected
    return 5000


@pytest.fixture(scope="module")
def task(
    anvil: AnvilProcess, dev_keys: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Any:
    data_dir = tmp_path_factory.mktemp("taint")
    w3 = connect_web3(anvil.rpc_url)
    with chain_snapshot(w3):
        c = Consortium.deploy(w3, dev_keys, validators=3, contributors=4)
        updates: dict[int, list[bytes]] = {}
        for r in range(1, ROUNDS + 1):
            updates[r] = [fake_digest("update", r, i) for i in range(4)]
            c.run_round(c.task_id, scores=_scores, digests=updates[r])
        c.record.write(data_dir / "deployment.json")
        yield c, data_dir, updates


def _cli(c: Consortium, data_dir: Path, anvil: AnvilProcess, capsys: Any, key: str | None = None) -> Any:
    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        extra = os.environ.copy()
        if key is not None:
            os.environ["MESHPROV_PRIVATE_KEY"] = key
        try:
            index = ["--index-url", "sqlite://"] if args[0] == "audit" else []
            code = main(["--data-dir", str(data_dir), *args, "--rpc-url", anvil.rpc_url, *index])
        finally:
            os.environ.clear()
            os.environ.update(extra)
        out = capsys.readouterr()
        assert "Traceback" not in out.err
        return code, out.out, out.err

    return run


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MESHPROV_"):
            monkeypatch.delenv(name)


def test_revoke_then_taint(task: Any, anvil: AnvilProcess, capsys: Any, clean_env: None) -> None:
    c, data_dir, updates = task
    c.reset_nonces()
    target = digest_to_cid(updates[1][0])
    evidence = digest_to_cid(fake_digest("rejudge report"))
    as_validator = [_cli(c, data_dir, anvil, capsys, key=k) for _, k in c.validators]
    audit = _cli(c, data_dir, anvil, capsys)

    code, out, err = as_validator[0](
        "chain", "revoke", target, "--reason", "poisoned", "--evidence", evidence, "--json"
    )
    assert code == ExitCode.OK, err
    first = json.loads(out)
    assert first["revoked"] is False  # one of three validators is not a majority
    assert first["approved_weight"] * 3 == first["total_weight"]
    # a different reason is refused, named by the contract's error
    code, _, err = as_validator[1]("chain", "revoke", target, "--reason", "license", "--evidence", evidence)
    assert code != ExitCode.OK
    assert "ReasonDiffers" in err
    # not a validator: refused before anything changes
    code, _, err = _cli(c, data_dir, anvil, capsys, key=c.contributors[0][1])(
        "chain", "revoke", target, "--reason", "poisoned", "--evidence", evidence
    )
    assert code != ExitCode.OK
    assert "NotValidator" in err
    code, _, err = as_validator[1]("chain", "revoke", target, "--reason", "bad-vibes")
    assert code == ExitCode.CONFIG
    assert "not a revocation reason" in err
    code, out, _ = as_validator[1](
        "chain", "revoke", target, "--reason", "poisoned", "--evidence", evidence, "--json"
    )
    assert code == ExitCode.OK
    assert json.loads(out)["revoked"] is True

    code, out, _ = audit("audit", "taint", target, "--json")
    assert code == ExitCode.OK
    report = json.loads(out)
    assert report["revocations_checked"] is True
    [update] = report["updates"]
    assert (update["task_id"], update["round"], update["verdict"]) == (1, 1, "accepted")
    assert update["revocation"]["reason"] == "poisoned"
    assert update["revocation"]["evidence"] == evidence
    rounds = {r.round: r for r in c.rounds}
    assert [(m["round"], m["depth"], m["model_cid"]) for m in report["models"]] == [
        (r, r - 1, digest_to_cid(rounds[r].aggregate)) for r in range(1, ROUNDS + 1)
    ]
    assert report["latest"] == [
        {"task_id": 1, "round": ROUNDS, "model_cid": digest_to_cid(rounds[ROUNDS].aggregate), "carries": True}
    ]
    code, out, _ = audit("audit", "taint", "--revoked", "--json")
    assert code == ExitCode.OK
    assert [u["cid"] for u in json.loads(out)["updates"]] == [target]
    code, human, _ = audit("audit", "taint", target)
    assert "REVOKED" in human
    assert "still carries it" in human


def test_a_members_taint_and_a_rejected_update(
    task: Any, anvil: AnvilProcess, capsys: Any, clean_env: None
) -> None:
    c, data_dir, updates = task
    audit = _cli(c, data_dir, anvil, capsys)
    member = c.contributors[3][0]
    code, out, _ = audit("audit", "taint", member, "--json")
    assert code == ExitCode.OK
    report = json.loads(out)
    assert report["kind"] == "member"
    assert len(report["updates"]) == ROUNDS
    # its round-1 update was rejected: the models carry its updates from round 2 on
    assert [(m["round"], m["depth"]) for m in report["models"]] == [(2, 0), (3, 1), (4, 2)]
    assert [len(m["via"]) for m in report["models"]] == [1, 2, 3]
    code, out, _ = audit("audit", "taint", digest_to_cid(updates[1][3]), "--json")
    assert code == ExitCode.OK
    rejected = json.loads(out)
    assert rejected["models"] == []
    assert rejected["updates"][0]["verdict"] == "rejected"
    assert rejected["updates"][0]["revocation"] is None
    code, _, _ = audit("audit", "taint", digest_to_cid(fake_digest("never submitted")))
    assert code == ExitCode.NOT_FOUND
