"""Chain fixtures for the client, index and audit tests: the shipped contracts, a test-only contract, and a
scenario driver.

`contracts` is the committed artifacts (``ledger.chain.artifacts``: what the client and the deployment use;
tests/ledger/chain/test_chain_artifacts.py fails when they drift from the sources). Only a contract that is not
shipped is compiled here (the Reverter). `Consortium` deploys through ``lab.consortium`` (the one consortium setup:
``ledger.chain.deploy``, dev keys laid out 0 admin, 1 aggregator, validators, contributors; task 1 created by the
deployment) and drives rounds: submissions (direct or batch-relayed with EIP-712 signatures), validator verdicts,
and finalization with the quorum outcome. Tests import what they need from here:

    from tests.support.chain import Consortium, chain_snapshot, fake_digest
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab.consortium import DeployedConsortium, RoleKeys, deploy_consortium, task_table
from ledger.chain.artifacts import KNOWN, Artifact, load_artifact
from ledger.chain.client import LedgerClient
from ledger.chain.deploy import DeploymentRecord
from ledger.chain.types import TaskParams, bitmap, bits
from tests.support import REPO

# ─── contracts ──────────────────────────────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="session")
def contracts() -> dict[str, Artifact]:
    """The shipped artifacts of MeshLedger and MeshToken, by name."""
    return {name: load_artifact(name) for name in KNOWN}


def compile_sources(sources: dict[str, str], cache: Path | None = None) -> dict[str, dict[str, Any]]:
    """Compile test-only Solidity sources (path -> text) with the repo's solc wrapper; {contract: {abi, bytecode}}.

    The result is cached by the sources' hash (solc-js takes seconds)."""
    key = hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()[:20]
    if cache is not None:
        hit = cache / f"solc-{key}.json"
        if hit.exists():
            result: dict[str, dict[str, Any]] = json.loads(hit.read_text())
            return result
    import solcx

    from ledger.dev.toolchain import solc_wrapper

    standard = {
        "language": "Solidity",
        "sources": {path: {"content": text} for path, text in sources.items()},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "evmVersion": "cancun",
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    out = solcx.compile_standard(
        standard, solc_binary=str(solc_wrapper()), base_path=str(REPO), allow_paths=[str(REPO)]
    )
    result = {}
    for path in sources:
        for name, item in out["contracts"].get(path, {}).items():
            result[name] = {"abi": item["abi"], "bytecode": "0x" + item["evm"]["bytecode"]["object"]}
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / f"solc-{key}.json").write_text(json.dumps(result))
    return result


# A contract that reverts in every way Solidity can, for the sender and decoder tests.
REVERTER_SOURCE = """
// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

contract Reverter {
    error MeshLedger_UnknownTask(uint256 taskId);
    error NotInAnyAbi(uint256 x);
    uint256 public counter;

    function bump() external returns (uint256) { return ++counter; }
    function custom(uint256 taskId) external { counter++; revert MeshLedger_UnknownTask(taskId); }
    function message() external { counter++; require(counter == 0, "counter must be zero"); }
    function panic(uint256 d) external returns (uint256) { counter++; return 1 / d; }
    function bare() external { counter++; revert(); }
    function unknown() external { counter++; revert NotInAnyAbi(7); }
    function burn(uint256 n) external { for (uint256 i; i < n; ++i) { counter++; } }
}
"""


def reverter_contract(cache: Path | None = None) -> dict[str, Any]:
    return compile_sources({"Reverter.sol": REVERTER_SOURCE}, cache)["Reverter"]


@pytest.fixture(scope="session")
def reverter_artifact(request: pytest.FixtureRequest) -> dict[str, Any]:
    cache = Path(str(request.config.cache.mkdir("meshprov-solc"))) if request.config.cache else None
    return reverter_contract(cache)


# ─── chain state ────────────────────────────────────────────────────────────────────────────────────────────


def rpc(w3: Any, method: str, *params: Any) -> Any:
    reply = w3.provider.make_request(method, list(params))
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


@contextlib.contextmanager
def chain_snapshot(w3: Any) -> Iterator[None]:
    """Everything done inside is undone on exit (evm_snapshot / evm_revert)."""
    snap = rpc(w3, "evm_snapshot")
    try:
        yield
    finally:
        rpc(w3, "evm_revert", snap)


def advance_time(w3: Any, seconds: int) -> None:
    rpc(w3, "evm_increaseTime", seconds)
    rpc(w3, "evm_mine")


# ─── the scenario driver ────────────────────────────────────────────────────────────────────────────────────


def fake_digest(*parts: object) -> bytes:
    """A deterministic nonzero digest for a named thing (a stand-in for a real file's CID)."""
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


def task_params(
    *,
    rule: int = 0,
    rule_param: int = 0,
    quorum: int = 2,
    submission_window: int = 3600,
    vote_window: int = 3600,
    reward: int = 10**18,
    genesis: bytes | None = None,
) -> TaskParams:
    """A task's parameters for the tests (spec and genesis are stand-in digests unless ``genesis`` is given)."""
    return TaskParams(
        spec_digest=fake_digest("spec"),
        genesis_digest=genesis or fake_digest("genesis", 0),
        rule=rule,
        rule_param=rule_param,
        quorum=quorum,
        submission_window=submission_window,
        vote_window=vote_window,
        reward_per_round=reward,
    )


def _task_table(**task: Any) -> dict[str, Any]:
    """:func:`task_params`'s keywords as the consortium file's ``[task]`` table the deployment reads."""
    from ledger.aggregation import AggregationSpec

    p = task_params(**task)
    return task_table(
        spec=p.spec_digest,
        genesis=p.genesis_digest,
        quorum=p.quorum,
        aggregation=AggregationSpec.decode(p.rule, p.rule_param),
        submission_window_s=p.submission_window,
        vote_window_s=p.vote_window,
        reward_per_round=p.reward_per_round,
    )


@dataclass
class RoundRecord:
    task_id: int
    round: int
    base: bytes
    digests: list[bytes]  # by update index
    contributors: list[str]  # by update index
    num_samples: list[int]
    verdicts: dict[str, list[int]]  # validator -> reason per update index (0 = accept)
    accepted: list[int]
    aggregate: bytes
    blocks: list[int] = field(default_factory=list)


Verdict = Callable[[int, int, int], int]  # (validator index, update index, round) -> reason (0 = accept)


def accept_all(_v: int, _i: int, _r: int) -> int:
    return 0


class Consortium:
    """A consortium deployed through ``lab.consortium`` from dev keys (0 admin, 1 aggregator, 2.. validators, then
    contributors), with task 1 created by the deployment; drives rounds and records them."""

    def __init__(self, net: DeployedConsortium) -> None:
        self.net = net
        self.w3 = net.w3
        self.record: DeploymentRecord = net.record
        self.task_id = net.task_id
        """The task the deployment created."""
        self.admin = net.keys.admin
        self.aggregator = net.keys.aggregator
        self.validators = list(net.keys.validators)
        self.contributors = list(net.keys.contributors)
        self.rounds: list[RoundRecord] = []

    @classmethod
    def deploy(
        cls,
        w3: Any,
        keys: Sequence[tuple[str, str]],
        *,
        validators: int = 3,
        contributors: int = 4,
        **task: Any,
    ) -> Consortium:
        """Deploy for the first ``validators`` and ``contributors`` of ``keys`` (after the admin and the
        aggregator); the deployment creates task 1 from ``task`` (:meth:`create_task`'s keywords)."""
        net = deploy_consortium(
            w3,
            RoleKeys.laid_out(keys, validators, contributors),
            _task_table(**task),
            timeout=30,
            source="tests.support.chain",
        )
        return cls(net)

    def client(self, key: str | None = None) -> LedgerClient:
        """A client sending with ``key`` (None: read-only). One per key, so nonces stay in one manager."""
        return self.net.client(key)

    def reset_nonces(self) -> None:
        """After an evm_revert the cached nonces are wrong: forget them."""
        self.net.resync()

    @property
    def admin_client(self) -> LedgerClient:
        return self.client(self.admin[1])

    def create_task(self, **task: Any) -> int:
        """Another task (the admin's ``createTask``) with :func:`task_params`'s keywords; its id."""
        task.setdefault("genesis", fake_digest("genesis", len(self.rounds)))
        return self.admin_client.create_task(task_params(**task)).value

    def run_round(
        self,
        task_id: int,
        *,
        verdict: Verdict = accept_all,
        relayed: bool = False,
        digests: Sequence[bytes] | None = None,
        num_samples: Sequence[int] | None = None,
        aggregate: bytes | None = None,
        finalize: bool = True,
    ) -> RoundRecord:
        """One round where every contributor that has not submitted yet submits, every validator votes on every
        update, and (by default) the aggregator finalizes with the quorum outcome."""
        reader = self.client()
        round_ = reader.current_round(task_id)
        base = reader.base_digest(task_id, round_)
        n = len(self.contributors)
        digests = (
            list(digests) if digests is not None else [fake_digest(task_id, round_, i) for i in range(n)]
        )
        samples = list(num_samples) if num_samples is not None else [100 + 10 * i for i in range(n)]
        pending = [
            (i, key)
            for i, (address, key) in enumerate(self.contributors)
            if not reader.submission_of(task_id, round_, address).submitted
        ]
        blocks: list[int] = []
        if relayed and pending:
            subs = [
                reader.sign_submission(key, task_id, round_, digests[i], samples[i]) for i, key in pending
            ]
            blocks.append(
                self.client(self.aggregator[1]).submit_updates_for(task_id, round_, subs).block_number
            )
        else:
            for i, key in pending:
                blocks.append(
                    self.client(key).submit_update(task_id, round_, digests[i], samples[i]).block_number
                )
        submitted = [
            e
            for e in reader.events(self.record.deploy_block, names=["UpdateSubmitted"])
            if e.args["taskId"] == task_id and e.args["round"] == round_
        ]
        submitted.sort(key=lambda e: e.args["index"])
        count = len(submitted)
        verdicts: dict[str, list[int]] = {}
        for v, (address, key) in enumerate(self.validators):
            reasons = [verdict(v, i, round_) for i in range(count)]
            verdicts[address] = reasons
            accepts = bitmap(i for i in range(count) if reasons[i] == 0)
            blocks.append(
                self.client(key)
                .vote_batch(task_id, round_, bitmap(range(count)), accepts, bytes(reasons))
                .block_number
            )
        record = RoundRecord(
            task_id,
            round_,
            base,
            [e.args["digest"] for e in submitted],
            [e.args["contributor"] for e in submitted],
            [e.args["numSamples"] for e in submitted],
            verdicts,
            [],
            b"",
            blocks,
        )
        if finalize:
            self.finalize(record, aggregate)
        self.rounds.append(record)
        return record

    def finalize(self, record: RoundRecord, aggregate: bytes | None = None) -> None:
        tally = self.client().tally(record.task_id, record.round)
        record.accepted = bits(tally.accepted_bitmap)
        if not record.accepted:
            record.aggregate = record.base
        else:
            record.aggregate = aggregate or fake_digest("aggregate", record.task_id, record.round)
        result = self.client(self.aggregator[1]).finalize_round(
            record.task_id, record.round, record.aggregate, tally.accepted_bitmap
        )
        record.blocks.append(result.block_number)
