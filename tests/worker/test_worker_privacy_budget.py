"""A task anchoring a privacy budget, on a real chain and store: the validator's own judging path
(``worker.verify.score_round``) rejects the member whose second update takes it over the budget, and the member
whose update carries no privacy record, with ``PRIVACY_BUDGET_EXCEEDED``; `meshprov audit rejudge` recomputes the
check and lists a planted validator that accepted the update over the budget; `meshprov audit privacy` shows the
same two members over the budget."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.chain.client import connect_web3
from ledger.chain.scores import REJECT
from ledger.checks import CheckLimits
from ledger.checks.privacy_budget import budget_of
from ledger.content import cid_to_digest
from ledger.content.local_store import LocalStore
from ledger.dev.services import AnvilProcess
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason
from ledger.recipe import RecipeRef, TaskSpec
from ledger.settings import Settings
from ledger.updatefile import GenesisMeta, UpdateMeta, write_aggregate, write_update
from tests.support.audit_cli import meshprov_cli
from tests.support.chain import Consortium, chain_snapshot
from worker.chain import WorkerChain
from worker.config import WorkerConfig
from worker.runtime import Runtime
from worker.verify import score_round

pytestmark = pytest.mark.anvil

CHECKS = {"privacy_epsilon": 6.0, "privacy_delta": 1e-5}


def _dp(sigma: float) -> dict[str, Any]:
    return {"mechanism": "gaussian", "clip": 1.0, "noise_multiplier": sigma, "delta": 1e-5}


# Member 0: σ = 1 twice (ε 4.73, then 7.08 > 6); members 1 and 3: σ = 3 (2.03 after two); member 2: no record in
# round 2 (unbounded).
RECORDS: dict[int, list[dict[str, Any] | None]] = {
    1: [_dp(1.0), _dp(3.0), _dp(3.0), _dp(3.0)],
    2: [_dp(1.0), _dp(3.0), None, _dp(3.0)],
}
OVER, BARE, PLANTED = 0, 2, 2
SUBMITTED: dict[str, Any] = {}


def _honest(_v: int, i: int, r: int) -> int | tuple[int, int]:
    if r == 2 and i in (OVER, BARE):
        return (REJECT, int(Reason.PRIVACY_BUDGET_EXCEEDED))
    return 4000 + 100 * i


def _planted(v: int, i: int, r: int) -> int | tuple[int, int]:
    if v == PLANTED and r == 2 and i == OVER:
        return 8000  # ignores the budget
    return _honest(v, i, r)


class _Asked:
    """A store that notes every CID it is asked about."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.cids: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if args and isinstance(args[0], str):
                self.cids.add(args[0])
            return attr(*args, **kwargs)

        return call


def _runtime(c: Consortium, data_dir: Path, anvil: AnvilProcess, tmp: Path) -> Runtime:
    _, key = c.validators[0]
    settings = Settings(
        data_dir=tmp,
        chain_rpc_url=anvil.rpc_url,
        store_dir=data_dir / "blocks",
        deployment_file=data_dir / "deployment.json",
        task_id=1,
    )
    rt = Runtime(
        settings=settings,
        config=WorkerConfig(),
        role="validator",
        redis_url="redis://127.0.0.1:1/0",  # never used: scoring does not touch Redis
        private_key=key,
        limits=CheckLimits(),
        privacy_budget=budget_of(CHECKS),
    )
    rt._chain = WorkerChain(c.client(key))
    return rt


@pytest.fixture(scope="module")
def task(
    anvil: AnvilProcess, dev_keys: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Any:
    data_dir = tmp_path_factory.mktemp("privacy-budget")
    work = data_dir / "work"
    work.mkdir()
    store = LocalStore(data_dir / "blocks")
    rng = np.random.default_rng(11)
    base = work / "base.safetensors"
    write_aggregate(
        base,
        {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)},
        GenesisMeta(model="tiny-linear"),
    )
    base_cid = store.put_file(base)
    spec_path = work / "spec.json"
    spec_path.write_text(TaskSpec(recipe=RecipeRef("tiny", "1", base_cid), checks=CHECKS).to_json())
    spec_cid = store.put_file(spec_path)
    w3 = connect_web3(anvil.rpc_url)
    with chain_snapshot(w3):
        c = Consortium.deploy(
            w3,
            dev_keys,
            validators=3,
            contributors=4,
            genesis=cid_to_digest(base_cid),
            spec=cid_to_digest(spec_cid),
        )
        c.record.write(data_dir / "deployment.json")
        round1: list[str] = []
        for round_ in (1, 2):
            digests = []
            for i, (address, _) in enumerate(c.contributors):
                path = work / f"update-{round_}-{i}.safetensors"
                meta = UpdateMeta(
                    task=1,
                    round=round_,
                    base=base_cid,
                    contributor=address,
                    num_samples=10,
                    privacy=RECORDS[round_][i],
                )
                tensors = {
                    "w": (rng.normal(size=(4, 3)) * 0.1).astype(np.float32),
                    "b": (rng.normal(size=3) * 0.1).astype(np.float32),
                }
                write_update(path, tensors, meta)
                cid = store.put_file(path)
                digests.append(cid_to_digest(cid))
                if round_ == 1:
                    round1.append(cid)
            if round_ == 2:
                # The validator judges the round with its real judging path once submissions are closed.
                c.submit(1, 2, digests=digests, num_samples=[10] * 4)
                c.close_submissions(1, 2)
                rt = _runtime(c, data_dir, anvil, data_dir / "validator")
                subs = rt.chain().submissions(1, 2)
                SUBMITTED["scored"] = score_round(rt, c.view(1, 2), subs)
                SUBMITTED["cache"] = rt.cache_dir / "privacy-records"
                # Judged again from scratch: the round-1 records come from the validator's cache, not the store.
                again = _runtime(c, data_dir, anvil, data_dir / "validator")
                asked = _Asked(LocalStore(data_dir / "blocks"))
                again._store = asked  # type: ignore[assignment]
                shutil.rmtree(rt.cache_dir / "rounds")
                assert score_round(again, c.view(1, 2), subs) == SUBMITTED["scored"]
                SUBMITTED["asked"] = asked.cids
                SUBMITTED["round1"] = set(round1)
                rt2 = _runtime(c, data_dir, anvil, data_dir / "validator-no-budget")
                rt2.privacy_budget = None
                SUBMITTED["unbudgeted"] = score_round(rt2, c.view(1, 2), subs)
            c.run_round(
                1,
                scores=_planted,
                digests=digests,
                num_samples=[10] * 4,
                aggregate=cid_to_digest(base_cid),
            )
        store.close()
        yield c, data_dir


@pytest.fixture
def cli(
    task: Any, anvil: AnvilProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    c, data_dir = task
    return meshprov_cli(c, data_dir, anvil.rpc_url, monkeypatch, capsys)


def test_the_validator_rejects_the_update_that_crosses_the_budget(task: Any) -> None:
    scored = SUBMITTED["scored"]
    reasons = [Reason(s.reason) for s in scored]
    assert reasons == [
        Reason.PRIVACY_BUDGET_EXCEEDED,
        Reason.ACCEPTED,
        Reason.PRIVACY_BUDGET_EXCEEDED,
        Reason.ACCEPTED,
    ]
    assert scored[OVER].score == REJECT
    assert "over the task's budget 6" in scored[OVER].detail
    assert "unbounded" in scored[BARE].detail
    # each record read once from the store, then from the validator's own cache (content never changes)
    kept = SUBMITTED["cache"]
    assert len(list(kept.glob("*.json"))) == 8  # the 4 members' updates of rounds 1 and 2
    assert SUBMITTED["round1"]
    assert len(SUBMITTED["asked"]) >= 4  # round 2's updates were fetched through the noting store
    assert not SUBMITTED["round1"] & SUBMITTED["asked"]
    # the same round judged without the budget: nothing else would have rejected them
    assert [s.reason for s in SUBMITTED["unbudgeted"]] == [0, 0, 0, 0]


def test_rejudge_lists_the_validator_that_accepted_the_update_over_the_budget(task: Any, cli: Any) -> None:
    c, _ = task
    validators = [address.lower() for address, _ in c.validators]
    code, out, _ = cli("audit", "rejudge", "1", "2", "--json")
    assert code == ExitCode.MISMATCH
    report = json.loads(out)
    assert report["privacy_budget"] == {"epsilon": 6.0, "delta": 1e-5}
    assert [u["reason"] for u in report["updates"]] == [
        "PRIVACY_BUDGET_EXCEEDED",
        "ACCEPTED",
        "PRIVACY_BUDGET_EXCEEDED",
        "ACCEPTED",
    ]
    found = {(d["validator"].lower(), d["index"], d["kind"]) for d in report["disagreements"]}
    assert found == {(validators[PLANTED], OVER, "accepted-rejected")}
    assert report["disagreements"][0]["checks_reason"] == "PRIVACY_BUDGET_EXCEEDED"
    # round 1 was within the budget for everyone: nobody disagrees
    code, out, _ = cli("audit", "rejudge", "1", "1", "--json")
    assert code == ExitCode.OK, json.loads(out)["disagreements"]


def test_audit_privacy_shows_the_same_members_over_the_budget(task: Any, cli: Any) -> None:
    c, _ = task
    code, out, _ = cli("audit", "privacy", "1", "--json")
    assert code == ExitCode.MISMATCH
    over = {m["member"].lower() for m in json.loads(out)["members"] if m["over_budget"]}
    assert over == {c.contributors[OVER][0].lower(), c.contributors[BARE][0].lower()}
