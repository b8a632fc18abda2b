"""`meshprov audit` and `meshprov index` as a user runs them, on a real ledger history: answers, exit codes and
clear messages for every kind of bad input (never a traceback)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import update

from ledger.cli.app import main
from ledger.content import cid_of_file, cid_to_digest
from ledger.dev.services import AnvilProcess
from ledger.exit_codes import ExitCode
from ledger.index import schema
from ledger.index.db import IndexDB
from ledger.updatefile import GenesisMeta, UpdateMeta, write_aggregate, write_update
from tests.support.chain import Consortium, fake_digest

pytestmark = pytest.mark.anvil


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(
    h: Consortium,
    anvil: AnvilProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    """Run `meshprov …` in-process against the history's chain, with a fresh data directory."""
    for name in list(os.environ):
        if name.startswith("MESHPROV_"):
            monkeypatch.delenv(name)
    data_dir = tmp_path / "data"
    h.record.write(data_dir / "deployment.json")

    def run(*args: str, rpc: str | None = anvil.rpc_url) -> Result:
        capsys.readouterr()
        env_rpc = ["--rpc-url", rpc] if rpc is not None and args[0] in ("audit", "index") else []
        code = main(["--data-dir", str(data_dir), *args, *env_rpc])
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        return Result(code, captured.out, captured.err)

    run.data_dir = data_dir  # type: ignore[attr-defined]
    return run


def hx(digest: bytes) -> str:
    return "0x" + digest.hex()


def test_lineage_json_from_the_index(h: Consortium, cli: Any) -> None:
    r2 = h.rounds[1]
    result = cli("audit", "lineage", "--json", hx(r2.aggregate))
    assert result.code == ExitCode.OK
    data = result.json
    assert data["verified"] is True
    (lineage,) = data["lineages"]
    assert lineage["role"] == "aggregate"
    assert lineage["depth"] == 2
    assert [r["round"] for r in lineage["rounds"]] == [2, 1]
    assert lineage["rounds"][0]["updates"][1]["verdict"] == "rejected"
    assert data["source"]["mode"] == "index"
    assert data["source"]["behind"] == 0
    assert (cli.data_dir / "index.sqlite").exists()


def test_lineage_human_and_trustless_agree(h: Consortium, cli: Any) -> None:
    cid = chainfixtures_cid(h.rounds[1].aggregate)
    human = cli("audit", "lineage", cid)
    assert human.code == ExitCode.OK
    assert "verified" in human.out
    assert "round 2" in human.out
    assert "norm-outlier" in human.out
    indexed = cli("audit", "lineage", cid, "--json").json
    trustless = cli("audit", "lineage", cid, "--json", "--trustless").json
    assert trustless["source"]["mode"] == "trustless"
    assert trustless["lineages"] == indexed["lineages"]


def chainfixtures_cid(digest: bytes) -> str:
    from ledger.content import digest_to_cid

    return digest_to_cid(digest)


def test_lineage_bad_input(cli: Any) -> None:
    not_anchored = cli("audit", "lineage", hx(fake_digest("nothing")))
    assert not_anchored.code == ExitCode.NOT_FOUND
    assert "not anchored" in not_anchored.err
    garbage = cli("audit", "lineage", "QmNotACid", rpc="http://127.0.0.1:9")
    assert garbage.code == ExitCode.USAGE  # refused before any service is touched
    assert "invalid CID" in garbage.err
    v1_raw = cli("audit", "lineage", "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
    assert v1_raw.code == ExitCode.USAGE
    assert "raw" in v1_raw.err


def test_an_unreachable_rpc_is_reported(cli: Any) -> None:
    result = cli("audit", "lineage", hx(fake_digest("x")), rpc="http://127.0.0.1:9")
    assert result.code == ExitCode.UNAVAILABLE
    assert "unavailable" in result.err
    assert "hint" in result.err


def test_a_missing_deployment_record_is_reported(cli: Any) -> None:
    (cli.data_dir / "deployment.json").unlink()
    result = cli("audit", "round", "1", "1")
    assert result.code == ExitCode.NOT_FOUND
    assert "deployment record" in result.err
    assert "meshprov chain deploy" in result.err


def test_round_and_its_bad_input(h: Consortium, cli: Any) -> None:
    result = cli("audit", "round", "1", "2", "--json")
    assert result.code == ExitCode.OK
    detail = result.json["round"]
    r2 = h.rounds[1]
    assert detail["accepted_indexes"] == [0, 2, 3]
    assert len(detail["updates"]) == 4
    assert [u["consensus"] for u in detail["updates"]] == r2.consensus
    assert [[(v["validator"], v["score"]) for v in u["scores"]] for u in detail["updates"]] == [
        [(v, r2.sheets[v].scores[i]) for v in r2.revealed] for i in range(4)
    ]
    assert detail["updates"][1]["scores"][0]["reason_name"] == "norm-outlier"
    assert detail["updates"][2]["accepted"] is True
    assert [m["validator"] for m in detail["validators"]] == r2.validators
    assert all(m["absent"] is False and m["distance"] is not None for m in detail["validators"])
    assert detail["validators"][0]["distance"] > detail["validators"][1]["distance"]
    assert sum(m["reward"] for m in detail["validators"]) > 0
    human = cli("audit", "round", "1", "2").out
    assert human.count("rejected") >= 1
    assert "norm-outlier" in human
    assert "+0.4500" in human  # validator 1's score of update 2: 2000 + 1000 + 2 x 250
    assert "distance" in human
    absent = cli("audit", "round", "1", "1", "--json").json["round"]
    assert [m["absent"] for m in absent["validators"]] == [False, False, True]
    assert "absent" in cli("audit", "round", "1", "1").out
    carried = cli("audit", "round", "1", "4")
    assert "carried over" in carried.out
    assert cli("audit", "round", "1", "4", "--json").json["round"]["carried_over"] is True
    missing = cli("audit", "round", "1", "9")
    assert missing.code == ExitCode.NOT_FOUND
    assert "no round 9" in missing.err
    unknown = cli("audit", "round", "5", "1")
    assert unknown.code == ExitCode.NOT_FOUND
    assert "task 5" in unknown.err
    assert cli("audit", "round", "x", "1").code == ExitCode.USAGE


def test_contributor_and_its_bad_input(h: Consortium, cli: Any) -> None:
    address = h.contributors[1][0]
    result = cli("audit", "contributor", address.lower(), "--json")
    assert result.code == ExitCode.OK
    data = result.json
    assert [s["verdict"] for s in data["account"]["submissions"]] == [
        "accepted",
        "rejected",
        "rejected",
        "carried-over",
        "pending",
    ]
    assert [s["consensus"] for s in data["account"]["submissions"]] == [
        r.consensus[1] for r in h.rounds[:4]
    ] + [None]
    # Never claimed: everything it earned is still accrued on chain, none minted.
    assert data["accrued_on_chain"] == data["account"]["total_rewards"] == data["account"]["unclaimed"] > 0
    assert (data["token_balance"], data["account"]["total_claimed"]) == (0, 0)
    human = cli("audit", "contributor", address)
    assert "1 accepted, 2 rejected, 1 in carried-over rounds" in human.out
    assert "unclaimed" in human.out
    claimer = cli("audit", "contributor", h.contributors[0][0], "--json").json
    assert (
        claimer["token_balance"] == claimer["account"]["total_claimed"] == claimer["account"]["total_rewards"]
    )
    assert claimer["accrued_on_chain"] == claimer["account"]["unclaimed"] == 0
    assert len(claimer["account"]["claims"]) == 1
    scheduled = cli("audit", "contributor", h.contributors[3][0]).out
    assert "role change scheduled: grant validator, executable by anyone from" in scheduled
    assert "role change cancelled: grant validator" in scheduled
    bad = cli("audit", "contributor", "0x1234", rpc="http://127.0.0.1:9")
    assert bad.code == ExitCode.USAGE
    assert "not an Ethereum address" in bad.err
    nobody = cli("audit", "contributor", "0x" + "77" * 20)
    assert nobody.code == ExitCode.NOT_FOUND
    assert "no record" in nobody.err


def test_settlements_of_an_honest_history_are_the_rules_outcome(h: Consortium, cli: Any) -> None:
    if "DISTANCE_FLOOR" not in h.client().constants():
        # A contract from before the R5 rule change (docs/protocol.md) follows other rules than ledger.consensus:
        # the audit says so instead of reporting every validator's pay as wrong.
        refused = cli("audit", "settlements")
        assert refused.code == ExitCode.CONFIG
        assert "DISTANCE_FLOOR, DISTANCE_TOLERANCE" in refused.err
        assert "follows other rules" in refused.err
        pytest.skip("the deployed MeshLedger predates protocol R5's relative distance (no DISTANCE_FLOOR)")
    result = cli("audit", "settlements", "--json")
    assert result.code == ExitCode.OK, result.out
    data = result.json
    assert (data["checked"], data["mismatches"], data["constants_from"]) == (4, 0, "chain")
    assert [(r["round"], r["carried_over"]) for r in data["rounds"]] == [
        (1, False),
        (2, False),
        (3, False),
        (4, True),
    ]
    assert "OK" in cli("audit", "settlements").out
    assert cli("audit", "settlements", "--trustless").code == ExitCode.OK
    assert cli("audit", "settlements", "--task", "7").code == ExitCode.NOT_FOUND


def test_a_settlement_that_is_not_the_rules_outcome_is_named(h: Consortium, cli: Any) -> None:
    # An index whose settlement says otherwise than the rules (here: a reward raised in the database) is caught,
    # with the round, the account and the field, from the index alone with the protocol's default constants.
    assert cli("index", "follow", "--once").code == ExitCode.OK
    victim = h.contributors[0][0]
    db = IndexDB(f"sqlite:///{cli.data_dir / 'index.sqlite'}")
    with db.begin() as conn:
        conn.execute(
            update(schema.reputation_changes)
            .where(schema.reputation_changes.c.account == victim, schema.reputation_changes.c.round == 2)
            .values(reward=str(10**30))
        )
    db.dispose()
    tampered = cli("audit", "settlements", "--no-sync", rpc="http://127.0.0.1:9")
    assert tampered.code == ExitCode.MISMATCH
    assert "default constants" in tampered.out
    line = f"contributor {victim}: reward {10**30} recorded"
    assert tampered.out.count(line) == 1
    data = cli("audit", "settlements", "--task", "1", "--no-sync", "--json", rpc="http://127.0.0.1:9").json
    (round2,) = [r for r in data["rounds"] if r["round"] == 2]
    assert any(line in d for d in round2["differences"])
    assert data["mismatches"] >= 1


def test_export_formats(h: Consortium, cli: Any, tmp_path: Path) -> None:
    as_json = cli("audit", "export", "--task", "1", "--format", "json")
    assert as_json.code == ExitCode.OK
    data = json.loads(as_json.out)
    assert data["verified"] is True
    assert len(data["rounds"]) == 5
    assert data["rounds"][3]["carried_over"] is True
    as_csv = cli("audit", "export", "--task", "1", "--format", "csv")
    lines = as_csv.out.strip().splitlines()
    assert lines[0].startswith("task_id,round,base_cid")
    assert "consensus,scores" in lines[0]
    assert len(lines) == 1 + 18
    assert sum("rejected" in line for line in lines) == 1 + 4  # round 2's update 1, round 3's four
    assert sum("carried-over" in line for line in lines) == 4  # round 4's
    out = tmp_path / "report.html"
    as_html = cli("audit", "export", "--task", "1", "-o", str(out))
    assert as_html.code == ExitCode.OK
    page = out.read_text()
    assert page.startswith("<!doctype html>")
    assert "verified" in page
    for external in ("<script", "<link", "src=", "http://", "https://"):
        assert external not in page  # self-contained
    assert chainfixtures_cid(h.rounds[1].aggregate) in page
    assert cli("audit", "export", "--task", "1", "--format", "pdf").code == ExitCode.USAGE
    assert cli("audit", "export", "--task", "3", "--format", "json").code == ExitCode.NOT_FOUND


def _anchor_files(h: Consortium, tmp_path: Path) -> tuple[Path, Path]:
    """A genesis model of a new task 2 and an update submitted to task 1 round 5, as real files."""
    genesis = tmp_path / "genesis.safetensors"
    write_aggregate(genesis, {"w": np.arange(6, dtype=np.float32)}, GenesisMeta(model="tiny"))
    h.create_task(genesis=cid_to_digest(cid_of_file(genesis)))
    contributor, key = h.contributors[2]
    upd = tmp_path / "update.safetensors"
    meta = UpdateMeta(task=1, round=5, base=cid_of_file(genesis), contributor=contributor, num_samples=3)
    write_update(upd, {"w": np.ones(6, dtype=np.float32)}, meta)
    h.client(key).submit_update(1, 5, cid_to_digest(cid_of_file(upd)), 3)
    return genesis, upd


def test_verify_a_file(h: Consortium, cli: Any, tmp_path: Path) -> None:
    genesis, upd = _anchor_files(h, tmp_path)
    found = cli("audit", "verify", str(genesis), "--json")
    assert found.code == ExitCode.OK
    data = found.json
    assert data["status"] == "anchored"
    assert [(a["role"], a["task_id"]) for a in data["anchors"]] == [("genesis", 2)]
    assert data["metadata"]["model"] == "tiny"
    as_update = cli("audit", "verify", str(upd))
    assert as_update.code == ExitCode.OK
    assert "update #2 of task 1 round 5" in as_update.out
    assert "pending" in as_update.out
    assert cli("audit", "verify", str(genesis), "--task", "2", "--round", "0").code == ExitCode.OK
    mismatch = cli("audit", "verify", str(upd), "--task", "2", "--round", "0", "--json")
    assert mismatch.code == ExitCode.MISMATCH
    assert mismatch.json["status"] == "mismatch"
    stranger = tmp_path / "stranger.bin"
    stranger.write_bytes(b"not anchored anywhere")
    unanchored = cli("audit", "verify", str(stranger))
    assert unanchored.code == ExitCode.NOT_FOUND
    assert "not anchored" in unanchored.out
    assert cli("audit", "verify", str(tmp_path / "missing.bin")).code == ExitCode.NOT_FOUND
    assert cli("audit", "verify", str(genesis), "--task", "2").code == ExitCode.USAGE
    not_final = cli("audit", "verify", str(upd), "--task", "1", "--round", "5")
    assert not_final.code == ExitCode.NOT_FOUND
    assert "not finalized" in not_final.err


def test_index_follow_status_and_a_lagging_index(h: Consortium, cli: Any) -> None:
    followed = cli("index", "follow", "--once", "--json")
    assert followed.code == ExitCode.OK
    assert followed.json["events"] == len(h.client().events(h.record.deploy_block))
    status = cli("index", "status", "--json")
    assert status.code == ExitCode.OK
    assert status.json["behind"] == 0
    h.client(h.contributors[3][1]).submit_update(1, 5, fake_digest("late"), 1)
    lagging = cli("index", "status")
    assert "1 blocks behind" in lagging.out
    stale = cli("audit", "lineage", hx(h.rounds[1].aggregate), "--no-sync")
    assert stale.code == ExitCode.OK
    assert "1 blocks behind" in stale.err
    assert "meshprov index follow --once" in stale.err
    offline = cli("audit", "lineage", hx(h.rounds[1].aggregate), "--no-sync", rpc="http://127.0.0.1:9")
    assert offline.code == ExitCode.OK
    assert "unreachable" in offline.err
    fresh = cli("audit", "lineage", hx(h.rounds[1].aggregate), "--json")  # updates in-process
    assert fresh.json["source"]["behind"] == 0


def test_no_sync_without_an_index(cli: Any) -> None:
    result = cli("audit", "round", "1", "1", "--no-sync")
    assert result.code == ExitCode.NOT_FOUND
    assert "index follow --once" in result.err
    assert cli("index", "status").code == ExitCode.NOT_FOUND


def test_an_index_of_another_chain_is_refused(cli: Any) -> None:
    assert cli("index", "follow", "--once").code == ExitCode.OK
    db = IndexDB(f"sqlite:///{cli.data_dir / 'index.sqlite'}")
    with db.begin() as conn:
        conn.execute(update(schema.checkpoint).values(chain_id=999))
    db.dispose()
    for args in (
        ("audit", "round", "1", "1"),
        ("audit", "round", "1", "1", "--no-sync"),
        ("index", "status"),
    ):
        result = cli(*args)
        assert result.code == ExitCode.CONFIG, args
        assert "chain id 999" in result.err
    trustless = cli("audit", "round", "1", "1", "--trustless")  # needs no index at all
    assert trustless.code == ExitCode.OK


def test_an_unusable_index_database_is_reported(cli: Any) -> None:
    down = cli("audit", "round", "1", "1", "--index-url", "postgresql+psycopg://postgres@127.0.0.1:9/test")
    assert down.code == ExitCode.UNAVAILABLE
    assert "index database" in down.err
    bad = cli("audit", "round", "1", "1", "--index-url", "not a url")
    assert bad.code == ExitCode.CONFIG
    assert "MESHPROV_INDEX_URL" in bad.err
