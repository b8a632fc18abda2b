"""Chain fixtures for the client, index and audit tests: compiled contracts, a deployment, and a scenario driver.

`Consortium` deploys MeshToken + MeshLedger with dev keys (admin, aggregator, validators, contributors), creates a
task and drives rounds: submissions (direct or batch-relayed with EIP-712 signatures), validator verdicts, and
finalization with the quorum outcome. Tests import what they need from here:

    from tests.support.chain import Consortium, chain_snapshot, contracts  # noqa: F401  (fixtures)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ledger.chain.client import LedgerClient
from ledger.chain.sender import TxSender
from ledger.chain.types import TaskParams, bitmap, bits
from tests.support import REPO

SOLC = REPO / "contracts" / "tools" / "solc"
ARTIFACTS = REPO / "ledger" / "artifacts"


# ─── compiling ──────────────────────────────────────────────────────────────────────────────────────────────


def compile_sources(sources: dict[str, str], cache: Path | None = None) -> dict[str, dict[str, Any]]:
    """Compile Solidity sources (path -> text) with the repo's solc wrapper; {contract: {abi, bytecode}}.

    The result is cached by the sources' hash (solc-js takes seconds)."""
    key = hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()[:20]
    if cache is not None:
        hit = cache / f"solc-{key}.json"
        if hit.exists():
            result: dict[str, dict[str, Any]] = json.loads(hit.read_text())
            return result
    import solcx

    standard = {
        "language": "Solidity",
        "sources": {path: {"content": text} for path, text in sources.items()},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "evmVersion": "cancun",
            "remappings": ["@openzeppelin/contracts/=node_modules/@openzeppelin/contracts/"],
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    out = solcx.compile_standard(
        standard, solc_binary=str(SOLC), base_path=str(REPO), allow_paths=[str(REPO)]
    )
    result = {}
    for path in sources:
        for name, item in out["contracts"].get(path, {}).items():
            result[name] = {"abi": item["abi"], "bytecode": "0x" + item["evm"]["bytecode"]["object"]}
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / f"solc-{key}.json").write_text(json.dumps(result))
    return result


def meshprov_contracts(cache: Path | None = None) -> dict[str, dict[str, Any]]:
    """ABI and bytecode of MeshLedger and MeshToken: the exported artifacts when present, else compiled here.

    ``$TEST_MESHPROV_CONTRACTS`` may name a JSON file of {name: {abi, bytecode}} to test against instead."""
    override = os.environ.get("TEST_MESHPROV_CONTRACTS")
    if override:
        pinned: dict[str, dict[str, Any]] = json.loads(Path(override).read_text())
        return pinned
    if (ARTIFACTS / "MeshLedger.json").exists() and (ARTIFACTS / "MeshToken.json").exists():
        out = {}
        for name in ("MeshLedger", "MeshToken"):
            data = json.loads((ARTIFACTS / f"{name}.json").read_text())
            bytecode = data.get("bytecode")
            if isinstance(bytecode, dict):
                bytecode = bytecode.get("object")
            bytecode = str(bytecode)
            out[name] = {
                "abi": data["abi"],
                "bytecode": bytecode if bytecode.startswith("0x") else "0x" + bytecode,
            }
        return out
    src = REPO / "contracts" / "src"
    sources = {str(p.relative_to(REPO / "contracts")): p.read_text() for p in sorted(src.rglob("*.sol"))}
    return compile_sources(sources, cache)


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
def contracts(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    cache = Path(str(request.config.cache.mkdir("meshprov-solc"))) if request.config.cache else None
    return meshprov_contracts(cache)


@pytest.fixture
def artifact_abis(contracts: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``ledger.chain.client.load_abi`` answer from the contracts under test when the exported artifacts
    (``make contracts``) are not there yet."""
    if (ARTIFACTS / "MeshLedger.json").exists() and not os.environ.get("TEST_MESHPROV_CONTRACTS"):
        return
    from ledger.chain import client

    monkeypatch.setattr(client, "load_abi", lambda name: contracts[name]["abi"])


@pytest.fixture(scope="session")
def reverter_artifact(request: pytest.FixtureRequest) -> dict[str, Any]:
    cache = Path(str(request.config.cache.mkdir("meshprov-solc"))) if request.config.cache else None
    return reverter_contract(cache)


# ─── chain state ────────────────────────────────────────────────────────────────────────────────────────────


def web3_for(url: str) -> Any:
    from web3 import HTTPProvider, Web3

    return Web3(HTTPProvider(url, request_kwargs={"timeout": 30}))


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


# ─── deployment ─────────────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Deployed:
    ledger: str
    token: str
    block: int
    chain_id: int
    ledger_abi: list[dict[str, Any]]
    token_abi: list[dict[str, Any]]

    def record(self) -> dict[str, Any]:
        """A deployment record as `meshprov chain deploy` writes it."""
        return {"chain_id": self.chain_id, "ledger": self.ledger, "token": self.token, "block": self.block}

    def write_record(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.record()))
        return path


def deploy(w3: Any, admin_key: str, contracts: dict[str, dict[str, Any]]) -> Deployed:
    sender = TxSender(w3, admin_key)
    token_art, ledger_art = contracts["MeshToken"], contracts["MeshLedger"]
    token_factory = w3.eth.contract(abi=token_art["abi"], bytecode=token_art["bytecode"])
    token, receipt = sender.deploy(token_factory.constructor())
    ledger_factory = w3.eth.contract(abi=ledger_art["abi"], bytecode=ledger_art["bytecode"])
    ledger, _ = sender.deploy(ledger_factory.constructor(sender.address, token))
    sender.send(w3.eth.contract(address=token, abi=token_art["abi"]).functions.setMinter(ledger))
    return Deployed(
        ledger, token, int(receipt["blockNumber"]), int(w3.eth.chain_id), ledger_art["abi"], token_art["abi"]
    )


# ─── the scenario driver ────────────────────────────────────────────────────────────────────────────────────


def fake_digest(*parts: object) -> bytes:
    """A deterministic nonzero digest for a named thing (a stand-in for a real file's CID)."""
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


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
    """Dev keys in fixed roles: 0 admin, 1 aggregator, 2.. validators, then contributors."""

    def __init__(
        self,
        w3: Any,
        keys: Sequence[tuple[str, str]],
        deployed: Deployed,
        *,
        validators: int = 3,
        contributors: int = 4,
    ) -> None:
        self.w3 = w3
        self.deployed = deployed
        self.admin = keys[0]
        self.aggregator = keys[1]
        self.validators = list(keys[2 : 2 + validators])
        self.contributors = list(keys[2 + validators : 2 + validators + contributors])
        if len(self.contributors) < contributors:
            raise ValueError("not enough dev keys")
        self._clients: dict[str, LedgerClient] = {}
        self.rounds: list[RoundRecord] = []

    @classmethod
    def deploy(
        cls,
        w3: Any,
        keys: Sequence[tuple[str, str]],
        contracts: dict[str, dict[str, Any]],
        *,
        validators: int = 3,
        contributors: int = 4,
    ) -> Consortium:
        deployed = deploy(w3, keys[0][1], contracts)
        consortium = cls(w3, keys, deployed, validators=validators, contributors=contributors)
        consortium.grant_roles()
        return consortium

    def client(self, key: str | None = None) -> LedgerClient:
        """A client sending with ``key`` (None: read-only). One per key, so nonces stay in one manager."""
        name = key or ""
        if name not in self._clients:
            self._clients[name] = LedgerClient.connect(
                self.w3,
                self.deployed.ledger,
                key=key,
                abi=self.deployed.ledger_abi,
                token_abi=self.deployed.token_abi,
                timeout=30,
            )
        return self._clients[name]

    def reset_nonces(self) -> None:
        """After an evm_revert the cached nonces are wrong: forget them."""
        for client in self._clients.values():
            if client.sender is not None:
                client.sender.resync()

    @property
    def admin_client(self) -> LedgerClient:
        return self.client(self.admin[1])

    def grant_roles(self) -> None:
        admin = self.admin_client
        admin.grant_role("aggregator", self.aggregator[0])
        for address, _ in self.validators:
            admin.grant_role("validator", address)
        for address, _ in self.contributors:
            admin.grant_role("contributor", address)

    def create_task(
        self,
        *,
        rule: int = 0,
        rule_param: int = 0,
        quorum: int = 2,
        submission_window: int = 3600,
        vote_window: int = 3600,
        reward: int = 10**18,
        genesis: bytes | None = None,
    ) -> int:
        params = TaskParams(
            spec_digest=fake_digest("spec"),
            genesis_digest=genesis or fake_digest("genesis", len(self.rounds)),
            rule=rule,
            rule_param=rule_param,
            quorum=quorum,
            submission_window=submission_window,
            vote_window=vote_window,
            reward_per_round=reward,
        )
        return self.admin_client.create_task(params).value

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
            for e in reader.events(self.deployed.block, names=["UpdateSubmitted"])
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
