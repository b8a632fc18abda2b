"""Fixtures for the node's tests: a fresh ledger on an anvil, a local store holding the genesis model, member
runners in threads, and a stand-in for the validators and the aggregator that scores as told and finalizes with a
real aggregate (ledger's own fedavg), so the next round's base is a model file the node must fetch.

    net = NodeNet.create(anvil_url, tmp_path, dev_keys, contributors=2)
    thread = net.start(net.runner(0, NodeOptions(rounds=2)))       # a member's loop in a thread
    net.judge_round(1)                                  # commit + reveal (accept all) + finalize
    records = thread.join_result()

Keys: dev account 0 is the admin, 1 the aggregator, 2.. the validators, then the contributors.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.consortium import DeployedConsortium, RoleKeys, deploy_consortium, task_table
from ledger.chain.client import LedgerClient, connect_web3
from ledger.chain.types import Phase, bits
from ledger.content import cid_to_digest, digest_to_cid, fetch_to_file
from ledger.content.local_store import LocalStore
from ledger.settings import Settings
from node.journal import Journal
from node.runner import NodeOptions, NodeRunner
from tests.support.chain import fake_digest
from tests.support.worker import wait_until


class RunnerThread(threading.Thread):
    """A runner's loop in a thread; the result (or the exception) is kept for the test."""

    def __init__(self, runner: NodeRunner) -> None:
        super().__init__(daemon=True, name=f"node-{runner.address[:8]}")
        self.runner = runner
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.runner.run()
        except BaseException as exc:
            self.error = exc

    def join_result(self, timeout: float = 60.0) -> Any:
        self.join(timeout)
        if self.is_alive():
            self.runner.stop.set()
            self.join(10)
            raise AssertionError(f"{self.name} did not finish within {timeout:.0f} s")
        if self.error is not None:
            raise self.error
        return self.result


@dataclass
class NodeNet:
    url: str
    root: Path
    consortium: DeployedConsortium
    genesis_cid: str
    messages: dict[str, list[str]] = field(default_factory=dict)
    threads: list[RunnerThread] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        url: str,
        root: Path,
        keys: Sequence[tuple[str, str]],
        *,
        contributors: int = 2,
        validators: int = 1,
        quorum: int = 1,
        submission_window: int = 120,
        commit_window: int = 120,
        reveal_window: int = 120,
        finalize_grace: int = 120,
        max_samples: int = 1_000_000,
        genesis_cid: str | None = None,
        model: str = "mlp",
    ) -> NodeNet:
        """A consortium deployed through ``lab.consortium`` on the chain at ``url`` (record in
        ``root/deployment.json``), whose task starts from ``genesis_cid`` (default: a fresh ``model`` genesis
        put in the local store)."""
        from node.packaging import put_update, write_genesis

        store = LocalStore(root / "blocks")
        if genesis_cid is None:
            genesis_cid = put_update(store, write_genesis(root / "genesis.safetensors", model, 0))
        consortium = deploy_consortium(
            connect_web3(url),
            RoleKeys.laid_out(keys, validators, contributors),
            task_table(
                spec=fake_digest("spec"),
                genesis=genesis_cid,
                quorum=quorum,
                submission_window_s=submission_window,
                commit_window_s=commit_window,
                reveal_window_s=reveal_window,
                finalize_grace_s=finalize_grace,
                max_samples=max_samples,
            ),
            record_path=root / "deployment.json",
            timeout=20,
            client_timeout=20,
            source="tests.support.node",
        )
        consortium.view_block = (
            "pending"  # the stand-in workers see the time the next block will have, as workers do
        )
        return cls(url=url, root=root, consortium=consortium, genesis_cid=genesis_cid)

    # --- keys and clients ---------------------------------------------------------------------------------
    @property
    def task_id(self) -> int:
        return self.consortium.task_id

    @property
    def deployment_file(self) -> Path:
        assert self.consortium.record_path is not None
        return self.consortium.record_path

    @property
    def aggregator_key(self) -> str:
        return self.consortium.keys.aggregator[1]

    @property
    def validator_keys(self) -> list[tuple[str, str]]:
        return list(self.consortium.keys.validators)

    @property
    def contributor_keys(self) -> list[tuple[str, str]]:
        return list(self.consortium.keys.contributors)

    @property
    def contributors(self) -> int:
        return len(self.consortium.keys.contributors)

    @property
    def store(self) -> LocalStore:
        return LocalStore(self.root / "blocks")

    def client(self, key: str | None = None) -> LedgerClient:
        return self.consortium.client(key)

    def resync(self) -> None:
        self.consortium.resync()

    def settings(self, key: str | None, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": self.root / "data",
            "chain_rpc_url": self.url,
            "deployment_file": self.deployment_file,
            "store": "local",
            "store_dir": self.root / "blocks",
            "task_id": self.task_id,
            "tx_timeout_s": 20,
            "private_key": key,
        }
        values.update(overrides)
        return Settings(**{k: v for k, v in values.items() if v is not None})

    # --- members ------------------------------------------------------------------------------------------
    def runner(
        self,
        i: int,
        options: NodeOptions,
        *,
        key: str | None = None,
        read_only: bool = False,
        **kwargs: Any,
    ) -> NodeRunner:
        """A runner for contributor ``i`` (or any ``key``), its messages collected in ``self.messages``."""
        key = key or self.contributor_keys[i][1]
        s = self.settings(key)
        client = LedgerClient.from_settings(s, read_only=read_only)
        from eth_account import Account

        address = Account.from_key(key).address
        said = self.messages.setdefault(address, [])
        options = NodeOptions(**{**options.__dict__, "task": self.task_id})
        kwargs.setdefault("say", said.append)
        return NodeRunner(
            options,
            client=client,
            store=self.store,
            key=key,
            journal=Journal.for_member(s.data_dir, address),
            max_update_bytes=s.max_update_bytes,
            **kwargs,
        )

    def start(self, runner: NodeRunner) -> RunnerThread:
        thread = RunnerThread(runner)
        self.threads.append(thread)
        thread.start()
        return thread

    def journal_status(self, runner: NodeRunner, round_: int) -> str | None:
        record = runner.journal.load(self.task_id, round_)
        return record.status if record is not None else None

    def close(self) -> None:
        for t in self.threads:
            t.runner.stop.set()
        for t in self.threads:
            t.join(10)

    # --- the chain ----------------------------------------------------------------------------------------
    def current_round(self) -> int:
        return self.client().current_round(self.task_id)

    def view(self, round_: int) -> Any:
        return self.client().round_view(self.task_id, round_)

    def submissions(self, round_: int) -> list[Any]:
        events = self.client().events(self.consortium.deploy_block, names=["UpdateSubmitted"])
        out = [e for e in events if e.args["taskId"] == self.task_id and e.args["round"] == round_]
        return sorted(out, key=lambda e: e.args["index"])

    def wait_submissions(self, round_: int, count: int, timeout: float = 60.0) -> list[Any]:
        def enough() -> tuple[list[Any]] | None:
            self._check_threads()
            subs = self.submissions(round_)
            return (subs,) if len(subs) >= count else None

        (subs,) = wait_until(enough, timeout, f"{count} submissions in round {round_}", every=0.1)
        return subs

    def _check_threads(self) -> None:
        for t in self.threads:
            if t.error is not None:
                raise AssertionError(f"{t.name} failed") from t.error

    def close_submissions(self, round_: int) -> None:
        """Move the ledger clock past the round's submission window (the commit phase starts)."""
        from tests.support.chain import warp_past

        if self.view(round_).phase is Phase.OPEN:
            warp_past(self.client(), self.view(round_).submission_end)

    def judge_round(
        self,
        round_: int,
        reasons: Callable[[int], int] = lambda _i: 0,
        *,
        wait_for: int | None = None,
        score: int = 8_000,
    ) -> Any:
        """Once ``wait_for`` (default: all contributors) submitted, submissions close; every validator commits,
        then reveals ``score`` for each update whose ``reasons(index)`` is 0, else a hard reject with that reason;
        once the members published their accepted updates, the aggregator finalizes with the real
        consensus-weighted fedavg aggregate of the accepted ones."""
        from ledger.chain.scores import REJECT, ScoreSheet

        subs = self.wait_submissions(round_, self.contributors if wait_for is None else wait_for)
        self.close_submissions(round_)
        count = len(subs)
        if count:
            verdicts = [reasons(i) for i in range(count)]
            sheet = ScoreSheet.new([score if r == 0 else REJECT for r in verdicts], verdicts)
            for _address, key in self.validator_keys:
                self.client(key).commit_sheet(self.task_id, round_, sheet)
            for _address, key in self.validator_keys:
                self.client(key).reveal_sheet(self.task_id, round_, sheet)
        else:
            from tests.support.chain import warp_past

            warp_past(self.client(), self.view(round_).reveal_end)
        wait_until(lambda: self.view(round_).finalizable, 30, f"round {round_} to be finalizable")
        tally = self.client().tally(self.task_id, round_)
        accepted = bits(tally.accepted_bitmap)
        for i in accepted:  # members publish once submissions closed (R1)
            cid = digest_to_cid(subs[i].args["digest"])
            wait_until(lambda cid=cid: self._published(cid), 30, f"update {i} ({cid}) to be published")
        base = self.client().base_digest(self.task_id, round_)
        weights = [tally.consensus[i] for i in accepted]
        digest = self.aggregate(round_, base, [subs[i] for i in accepted], weights) if accepted else base
        self.client(self.aggregator_key).finalize_round(self.task_id, round_, digest)
        assert self.view(round_).phase is Phase.FINALIZED
        return digest

    def _published(self, cid: str) -> bool:
        self._check_threads()
        return self.store.has(cid)

    def aggregate(
        self, round_: int, base_digest: bytes, accepted: Sequence[Any], weights: Sequence[int]
    ) -> bytes:
        from ledger.aggregation import AggregationSpec, Contribution, prepare
        from ledger.aggregation.output import write_aggregation
        from ledger.updatefile import UpdateFile

        work = self.root / "aggregator" / str(round_)
        work.mkdir(parents=True, exist_ok=True)
        fetch_to_file(self.store, digest_to_cid(base_digest), work / "base")
        files = []
        for e in accepted:
            path = work / f"u{e.args['index']}"
            fetch_to_file(self.store, digest_to_cid(e.args["digest"]), path)
            files.append((e, UpdateFile.open(path)))
        try:
            with UpdateFile.open(work / "base") as base:
                contributions = [
                    Contribution(e.args["digest"], source=f, weight=w, num_samples=e.args["numSamples"])
                    for (e, f), w in zip(files, weights, strict=True)
                ]
                agg = prepare(base, contributions, AggregationSpec.fedavg())
                written = write_aggregation(
                    work / "aggregate",
                    agg,
                    task=self.task_id,
                    round=round_,
                    parent=digest_to_cid(base_digest),
                )
        finally:
            for _, f in files:
                f.close()
        return cid_to_digest(self.store.put_file(written.path))
