"""Chain fixtures for the client, index and audit tests: the shipped contracts, a test-only contract, and a
scenario driver.

`contracts` is the committed artifacts (``ledger.chain.artifacts``: what the client and the deployment use;
tests/ledger/chain/test_chain_artifacts.py fails when they drift from the sources). Only a contract that is not
shipped is compiled here (the Reverter). `Consortium` deploys through ``lab.consortium`` (the one consortium setup:
``ledger.chain.deploy``, dev keys laid out 0 admin, 1 aggregator, validators, contributors; task 1 created by the
deployment) and drives protocol-v2 rounds: submissions (direct or batch-relayed with EIP-712 signatures), every
validator's scores committed then revealed (some absent, some committing without revealing), the ledger clock
warped past a window when a phase must end by time, finalization by the aggregator or a carry-over by anyone.
Tests import what they need from here:

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
from ledger.chain.scores import SCORE_ONE, ScoreSheet
from ledger.chain.types import Phase, RoundView, TaskParams, bits
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


def warp_past(client: LedgerClient, ledger_time: int) -> None:
    """Move the chain's clock until the ledger clock (wall time minus paused time) is past ``ledger_time``: the
    next transaction sees every window that ends at ``ledger_time`` over."""
    now = client.clock(block="latest").ledger_now
    if now <= ledger_time:
        advance_time(client.w3, ledger_time - now + 1)


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
    commit_window: int = 600,
    reveal_window: int = 600,
    finalize_grace: int = 600,
    max_samples: int = 1_000_000,
    reward: int = 10**18,
    genesis: bytes | None = None,
    spec: bytes | None = None,
) -> TaskParams:
    """A task's parameters for the tests (spec and genesis are stand-in digests unless given)."""
    return TaskParams(
        spec_digest=spec or fake_digest("spec"),
        genesis_digest=genesis or fake_digest("genesis", 0),
        rule=rule,
        rule_param=rule_param,
        quorum=quorum,
        submission_window=submission_window,
        commit_window=commit_window,
        reveal_window=reveal_window,
        finalize_grace=finalize_grace,
        max_samples=max_samples,
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
        commit_window_s=p.commit_window,
        reveal_window_s=p.reveal_window,
        finalize_grace_s=p.finalize_grace,
        max_samples=p.max_samples,
        reward_per_round=p.reward_per_round,
    )


Scorer = Callable[[int, int, int], "int | tuple[int, int]"]
"""(validator index in the consortium, update index, round) -> score, or (score, reason) for a hard reject."""


def score_all_half(_v: int, _i: int, _r: int) -> int:
    return SCORE_ONE // 2


@dataclass
class RoundRecord:
    task_id: int
    round: int
    base: bytes
    digests: list[bytes]  # by update index
    contributors: list[str]  # by update index
    num_samples: list[int]
    validators: list[str]  # the round's set, in set order
    weights: list[int]  # frozen at the round's opening
    sheets: dict[str, ScoreSheet]  # validator -> what it committed
    revealed: list[str]  # validators that revealed, in reveal order
    consensus: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    aggregate: bytes = b""
    carried_over: bool = False
    blocks: list[int] = field(default_factory=list)

    def scores(self) -> list[list[int] | None]:
        """Per set member (set order): its revealed scores, or None when absent (what settlement takes)."""
        return [list(self.sheets[v].scores) if v in self.revealed else None for v in self.validators]


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
        role_delay: int = 60,
        **task: Any,
    ) -> Consortium:
        """Deploy for the first ``validators`` and ``contributors`` of ``keys`` (after the admin and the
        aggregator); the deployment creates task 1 from ``task`` (:func:`task_params`'s keywords)."""
        net = deploy_consortium(
            w3,
            RoleKeys.laid_out(keys, validators, contributors),
            _task_table(**task),
            role_delay_s=role_delay,
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

    @property
    def aggregator_client(self) -> LedgerClient:
        return self.client(self.aggregator[1])

    def key_of(self, address: str) -> str:
        for a, k in (self.admin, self.aggregator, *self.validators, *self.contributors):
            if a.lower() == address.lower():
                return k
        raise KeyError(address)

    def create_task(self, **task: Any) -> int:
        """Another task (the admin's ``createTask``) with :func:`task_params`'s keywords; its id."""
        task.setdefault("genesis", fake_digest("genesis", len(self.rounds)))
        return self.admin_client.create_task(task_params(**task)).value

    def view(self, task_id: int, round_: int) -> RoundView:
        return self.client().round_view(task_id, round_, block="latest")

    # ─── phases ─────────────────────────────────────────────────────────────────────────────────────────────
    def submit(
        self,
        task_id: int,
        round_: int,
        *,
        who: Sequence[int] | None = None,
        relayed: bool = False,
        digests: Sequence[bytes] | None = None,
        num_samples: Sequence[int] | None = None,
    ) -> list[int]:
        """Contributors ``who`` (indexes; default all) that have not submitted yet submit; the blocks."""
        reader = self.client()
        n = len(self.contributors)
        digests = (
            list(digests) if digests is not None else [fake_digest(task_id, round_, i) for i in range(n)]
        )
        samples = list(num_samples) if num_samples is not None else [100 + 10 * i for i in range(n)]
        chosen = range(n) if who is None else who
        pending = [
            (i, self.contributors[i][1])
            for i in chosen
            if not reader.submission_of(task_id, round_, self.contributors[i][0], block="latest").submitted
        ]
        if relayed and pending:
            subs = [
                reader.sign_submission(key, task_id, round_, digests[i], samples[i]) for i, key in pending
            ]
            return [self.aggregator_client.submit_updates_for(task_id, round_, subs).block_number]
        return [
            self.client(key).submit_update(task_id, round_, digests[i], samples[i]).block_number
            for i, key in pending
        ]

    def close_submissions(self, task_id: int, round_: int) -> None:
        """End the submission window by time when not every contributor submitted."""
        view = self.view(task_id, round_)
        if view.phase is Phase.OPEN:
            warp_past(self.client(), view.submission_end)

    def end_commits(self, task_id: int, round_: int) -> None:
        view = self.view(task_id, round_)
        if view.phase in (Phase.OPEN, Phase.COMMIT):
            warp_past(self.client(), view.commit_end)

    def end_reveals(self, task_id: int, round_: int) -> None:
        view = self.view(task_id, round_)
        if not view.finalizable:
            warp_past(self.client(), view.reveal_end)

    def commit(
        self,
        task_id: int,
        round_: int,
        validator: str,
        scores: Sequence[int],
        reasons: Sequence[int] | None = None,
    ) -> ScoreSheet:
        sheet = ScoreSheet.new(scores, reasons)
        self.client(self.key_of(validator)).commit_sheet(task_id, round_, sheet)
        return sheet

    def run_round(
        self,
        task_id: int,
        *,
        scores: Scorer = score_all_half,
        absent: Sequence[int] = (),
        unrevealed: Sequence[int] = (),
        submitters: Sequence[int] | None = None,
        relayed: bool = False,
        digests: Sequence[bytes] | None = None,
        num_samples: Sequence[int] | None = None,
        aggregate: bytes | None = None,
        finalize: bool = True,
    ) -> RoundRecord:
        """One round: ``submitters`` (default every contributor) submit; every member of the round's validator
        set except those in ``absent`` (consortium validator indexes) commits ``scores``; every committer except
        those in ``unrevealed`` reveals; windows that do not end early are warped past; and (by default) the
        aggregator finalizes with the consensus outcome."""
        reader = self.client()
        round_ = reader.current_round(task_id, block="latest")
        base = reader.base_digest(task_id, round_, block="latest")
        blocks = self.submit(
            task_id, round_, who=submitters, relayed=relayed, digests=digests, num_samples=num_samples
        )
        self.close_submissions(task_id, round_)
        submitted = reader.submissions(task_id, round_)
        count = len(submitted)
        vset = reader.validator_set(task_id, round_, block="latest")
        index_of = {a: v for v, (a, _) in enumerate(self.validators)}
        sheets: dict[str, ScoreSheet] = {}
        for member in vset.members:
            v = index_of[member]
            if v in absent:
                continue
            given = [scores(v, i, round_) for i in range(count)]
            values = [g if isinstance(g, int) else g[0] for g in given]
            reasons = [0 if isinstance(g, int) else g[1] for g in given]
            sheets[member] = self.commit(task_id, round_, member, values, reasons)
        self.end_commits(task_id, round_)
        revealed: list[str] = []
        for member, sheet in sheets.items():
            if index_of[member] in unrevealed:
                continue
            blocks.append(self.client(self.key_of(member)).reveal_sheet(task_id, round_, sheet).block_number)
            revealed.append(member)
        record = RoundRecord(
            task_id,
            round_,
            base,
            [s.digest for s in submitted],
            [s.contributor for s in submitted],
            [s.num_samples for s in submitted],
            list(vset.members),
            list(vset.weights),
            sheets,
            revealed,
            blocks=blocks,
        )
        if finalize:
            self.finalize(record, aggregate)
        self.rounds.append(record)
        return record

    def finalize(self, record: RoundRecord, aggregate: bytes | None = None) -> None:
        """The aggregator ends the round with the consensus outcome (after the reveals are over)."""
        self.end_reveals(record.task_id, record.round)
        tally = self.client().tally(record.task_id, record.round, block="latest")
        record.consensus = list(tally.consensus)
        record.accepted = bits(tally.accepted_bitmap)
        if not record.accepted:
            record.aggregate = record.base
        else:
            record.aggregate = aggregate or fake_digest("aggregate", record.task_id, record.round)
        result = self.aggregator_client.finalize_round(record.task_id, record.round, record.aggregate)
        record.blocks.append(result.block_number)

    def carry_over(self, record: RoundRecord, by: str | None = None) -> None:
        """Anyone (``by``'s key; default the first contributor) carries the round over after its grace."""
        view = self.view(record.task_id, record.round)
        warp_past(self.client(), view.grace_end)
        tally = self.client().tally(record.task_id, record.round, block="latest")
        record.consensus = list(tally.consensus)
        record.accepted = bits(tally.accepted_bitmap)
        record.aggregate = record.base
        record.carried_over = True
        client = self.client(by or self.contributors[0][1])
        record.blocks.append(client.finalize_carry_over(record.task_id, record.round).block_number)
