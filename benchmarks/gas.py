"""Gas of the ledger's hot operations on a 16-update round (protocol v2), measured on a real anvil.

Deploys MeshToken + RoundSettlement + MeshLedger from the exported artifacts (``ledger/artifacts``) on an embedded
anvil, through ``lab.consortium`` (the real deployment), with 16 contributors, 4 validators (quorum 3) and an
aggregator, and reads ``gasUsed`` from the receipts:

* ``submit_update`` — one direct ``submitUpdate`` (the median of the round's 16; the last one, which also closes
  submissions, is reported as ``submit_update_closing``). In v2 this is a member's whole on-chain cost per update:
  the content goes to the store, not the chain, and rewards accrue in the ledger (``claim_rewards``, reported
  apart, is paid once for any number of rounds);
* ``relayed_submit_per_update_16`` — one ``submitUpdatesFor`` of 16 EIP-712-signed submissions, divided by 16;
* ``commit_reveal_16`` — one validator's ``commitScores`` + ``revealScores`` of 16 scores (the most any of the 4
  paid); ``commit_scores`` and ``reveal_scores`` give the two parts;
* ``finalize_round_16`` — ``finalizeRound`` of the 16 (consensus of 4 validators' scores, 20 settlements, rewards
  accrued in the ledger, the next round opened with its validator set).

Each is measured twice: in a task's **first round** (the round's storage slots are written for the first time: a
zero-to-nonzero store costs 22,100 gas, a later one 5,000) and in its **second round** (steady state, what a
running consortium pays every round). The top-level numbers of ``--json`` are the
steady state; ``first_round`` holds the others. The baseline, measured in the same run, is a naive registry that
stores each update's CIDv0 as a string (what the issue's "about 86,000 gas" refers to).

    python benchmarks/gas.py            # a table
    python benchmarks/gas.py --json     # JSON on stdout (the table goes to stderr)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

TARGETS = {
    "submit_update": 75_000,
    "relayed_submit_per_update_16": 50_000,
    "commit_reveal_16": 100_000,
    "finalize_round_16": 400_000,
}
N_UPDATES = 16
N_VALIDATORS = 4
QUORUM = 3
BUDGET = 1_000 * 10**18

NAIVE_SOURCE = """
// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;
/// The design the ledger avoids: every update's CIDv0 kept as a string in storage.
contract NaiveRegistry {
    struct Update { address contributor; uint64 numSamples; string cid; }
    mapping(uint256 => mapping(uint256 => Update[])) public updates;
    event UpdateSubmitted(uint256 indexed taskId, uint256 indexed round, address indexed contributor, string cid, uint64 numSamples);
    function submit(uint256 taskId, uint256 round, string calldata cid, uint64 numSamples) external {
        updates[taskId][round].push(Update(msg.sender, numSamples, cid));
        emit UpdateSubmitted(taskId, round, msg.sender, cid, numSamples);
    }
}
"""

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def cid_v0(digest: bytes) -> str:
    n = int.from_bytes(b"\x12\x20" + digest, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return out


def digest_of(*parts: object) -> bytes:
    return hashlib.sha256(json.dumps(parts).encode()).digest()


class Bench:
    def __init__(self, rpc_url: str) -> None:
        from eth_account import Account

        from lab.consortium import RoleKeys, deploy_consortium, task_table
        from ledger.chain.artifacts import load_artifact
        from ledger.chain.client import connect_web3
        from ledger.dev.services import dev_accounts
        from ledger.settings import Settings

        self.w3 = connect_web3(rpc_url, timeout=60)
        keys = dev_accounts(Settings().anvil_mnemonic, 10)
        self.admin = keys[0][0]
        self.aggregator = keys[1][0]
        self.relayer = keys[2][0]
        self.validators = [address for address, _ in keys[3 : 3 + N_VALIDATORS]]
        self.contributors = [
            Account.from_key(hashlib.sha256(f"meshprov gas contributor {i}".encode()).digest())
            for i in range(N_UPDATES)
        ]
        roles = RoleKeys(
            keys[0],
            keys[1],
            tuple(keys[3 : 3 + N_VALIDATORS]),
            tuple((c.address, "0x" + bytes(c.key).hex()) for c in self.contributors),
        )
        task = task_table(
            spec=digest_of("spec"),
            genesis=digest_of("genesis"),
            quorum=QUORUM,
            submission_window_s=3600,
            commit_window_s=1800,
            reveal_window_s=1800,
            finalize_grace_s=3600,
            max_samples=1_000_000,
            reward_per_round=BUDGET,
        )
        deployed = deploy_consortium(self.w3, roles, task)
        self.first_task = deployed.task_id
        """The task the deployment created; :meth:`create_task` makes more with the same parameters."""
        self.token = self.w3.eth.contract(address=deployed.record.token, abi=load_artifact("MeshToken").abi)
        self.ledger = self.w3.eth.contract(address=deployed.ledger, abi=load_artifact("MeshLedger").abi)
        for c in self.contributors:
            self.w3.eth.send_transaction({"from": self.admin, "to": c.address, "value": 10**18})
        _, name, version, chain_id, verifying, _, _ = self.ledger.functions.eip712Domain().call()
        self.domain = {"name": name, "version": version, "chainId": chain_id, "verifyingContract": verifying}

    # ─── plumbing ───
    def _send(self, fn: Any, sender: str) -> Any:
        receipt = self.w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}), timeout=60)
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction reverted: {fn}")
        return receipt

    def _send_signed(self, fn: Any, account: Any) -> Any:
        tx = fn.build_transaction(
            {"from": account.address, "nonce": self.w3.eth.get_transaction_count(account.address)}
        )
        signed = account.sign_transaction(tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(signed.raw_transaction), timeout=60
        )
        if receipt["status"] != 1:
            raise RuntimeError("transaction reverted")
        return receipt

    def create_task(self) -> int:
        params = (
            digest_of("spec"),
            digest_of("genesis"),
            0,
            0,
            QUORUM,
            3600,
            1800,
            1800,
            3600,
            1_000_000,
            BUDGET,
        )
        from web3.logs import DISCARD

        receipt = self._send(self.ledger.functions.createTask(params), self.admin)
        logs = self.ledger.events.TaskCreated().process_receipt(receipt, errors=DISCARD)
        return int(logs[0]["args"]["taskId"])

    def _signed(
        self, account: Any, task_id: int, round_: int, digest: bytes, samples: int
    ) -> tuple[Any, ...]:
        from eth_account import Account
        from eth_account.messages import encode_typed_data

        nonce = self.ledger.functions.nonces(account.address).call()
        deadline = self.w3.eth.get_block("latest")["timestamp"] + 3600
        message = {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Submission": [
                    {"name": "taskId", "type": "uint256"},
                    {"name": "round", "type": "uint32"},
                    {"name": "digest", "type": "bytes32"},
                    {"name": "numSamples", "type": "uint64"},
                    {"name": "nonce", "type": "uint64"},
                    {"name": "deadline", "type": "uint64"},
                ],
            },
            "primaryType": "Submission",
            "domain": self.domain,
            "message": {
                "taskId": task_id,
                "round": round_,
                "digest": digest,
                "numSamples": samples,
                "nonce": nonce,
                "deadline": deadline,
            },
        }
        sig = Account.sign_message(encode_typed_data(full_message=message), account.key)
        return (
            account.address,
            digest,
            samples,
            nonce,
            deadline,
            sig.v,
            sig.r.to_bytes(32, "big"),
            sig.s.to_bytes(32, "big"),
        )

    # ─── one round ───
    def relayed_round(self, task_id: int) -> dict[str, int]:
        """Every contributor's update relayed in one batch, every validator commits and reveals, the aggregator
        finalizes."""
        round_ = self.ledger.functions.currentRound(task_id).call()
        subs = [
            self._signed(c, task_id, round_, digest_of(task_id, round_, i), 1_000 + i)
            for i, c in enumerate(self.contributors)
        ]
        batch = self._send(self.ledger.functions.submitUpdatesFor(task_id, round_, subs), self.relayer)
        out = {"relayed_submit_per_update_16": round(batch["gasUsed"] / N_UPDATES)}
        out.update(self._score_and_finalize(task_id, round_))
        return out

    def direct_round(self, task_id: int) -> dict[str, int]:
        """Every contributor submits its own update; then scores and finalization (not reported here)."""
        round_ = self.ledger.functions.currentRound(task_id).call()
        gas = []
        for i, c in enumerate(self.contributors):
            fn = self.ledger.functions.submitUpdate(
                task_id, round_, digest_of("direct", task_id, round_, i), 500 + i
            )
            gas.append(int(self._send_signed(fn, c)["gasUsed"]))
        self._score_and_finalize(task_id, round_)
        return {"submit_update": int(statistics.median(gas[:-1])), "submit_update_closing": gas[-1]}

    def _score_and_finalize(self, task_id: int, round_: int) -> dict[str, int]:
        from ledger.chain.scores import ScoreSheet

        chain_id = self.w3.eth.chain_id
        sheets = {}
        commits, reveals = [], []
        for v, validator in enumerate(self.validators):
            # Mostly positive scores that differ a little by validator, two rejected updates: a realistic round.
            scores = [-10_000 if i in (3, 11) else 4_000 + 250 * i + 37 * v for i in range(N_UPDATES)]
            reasons = [16 if i in (3, 11) else 0 for i in range(N_UPDATES)]
            sheet = ScoreSheet(
                tuple(scores), tuple(reasons), hashlib.sha256(f"{task_id}/{round_}/{v}".encode()).digest()
            )
            sheets[validator] = sheet
            commitment = sheet.commitment(
                chain_id=chain_id,
                ledger=self.ledger.address,
                task_id=task_id,
                round_=round_,
                validator=validator,
            )
            commits.append(
                int(
                    self._send(self.ledger.functions.commitScores(task_id, round_, commitment), validator)[
                        "gasUsed"
                    ]
                )
            )
        for validator, sheet in sheets.items():
            fn = self.ledger.functions.revealScores(
                task_id, round_, sheet.score_bytes, sheet.reason_bytes, sheet.salt
            )
            reveals.append(int(self._send(fn, validator)["gasUsed"]))
        final = self._send(
            self.ledger.functions.finalizeRound(task_id, round_, digest_of("aggregate", task_id, round_)),
            self.aggregator,
        )
        pairs = [c + r for c, r in zip(commits, reveals, strict=True)]
        worst = pairs.index(max(pairs))
        return {
            "commit_reveal_16": pairs[worst],
            "commit_scores": commits[worst],
            "reveal_scores": reveals[worst],
            "finalize_round_16": int(final["gasUsed"]),
        }

    def claim(self) -> int:
        """Gas of one contributor's ``claimRewards`` after the rounds (the mint of everything it accrued)."""
        return int(self._send_signed(self.ledger.functions.claimRewards(), self.contributors[0])["gasUsed"])

    def naive_baseline(self) -> int:
        """Median gas of a submit to a registry that stores the CIDv0 string (compiled here with the wrapper)."""
        import solcx

        from ledger.dev.toolchain import solc_wrapper

        out = solcx.compile_standard(
            {
                "language": "Solidity",
                "sources": {"NaiveRegistry.sol": {"content": NAIVE_SOURCE}},
                "settings": {
                    "optimizer": {"enabled": True, "runs": 1000},
                    "evmVersion": "cancun",
                    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
                },
            },
            solc_binary=str(solc_wrapper()),
        )
        item = out["contracts"]["NaiveRegistry.sol"]["NaiveRegistry"]
        factory = self.w3.eth.contract(abi=item["abi"], bytecode="0x" + item["evm"]["bytecode"]["object"])
        naive = self.w3.eth.contract(
            address=self._send(factory.constructor(), self.admin)["contractAddress"], abi=item["abi"]
        )
        gas = [
            int(
                self._send_signed(naive.functions.submit(1, 1, cid_v0(digest_of("naive", i)), 1_000 + i), c)[
                    "gasUsed"
                ]
            )
            for i, c in enumerate(self.contributors)
        ]
        return int(statistics.median(gas))


def run() -> dict[str, Any]:
    from ledger.dev.services import AnvilProcess

    with tempfile.TemporaryDirectory(prefix="meshprov-gas-") as tmp, AnvilProcess.start(Path(tmp)) as anvil:
        bench = Bench(anvil.rpc_url)
        relayed_task, direct_task = bench.first_task, bench.create_task()
        first = bench.relayed_round(relayed_task)
        steady = bench.relayed_round(relayed_task)
        first.update(bench.direct_round(direct_task))
        steady.update(bench.direct_round(direct_task))
        claim = bench.claim()
        baseline = bench.naive_baseline()
    metrics = list(TARGETS)
    return {
        **{m: steady[m] for m in metrics},
        "regime": "steady_state (a task's second round; first_round has the first)",
        "steady_state": steady,
        "first_round": first,
        "targets": TARGETS,
        "meets_target": {
            "steady_state": {m: steady[m] <= TARGETS[m] for m in metrics},
            "first_round": {m: first[m] <= TARGETS[m] for m in metrics},
        },
        "baseline": {"naive_cid_string_submit": baseline},
        "setup": {
            "updates": N_UPDATES,
            "validators": N_VALIDATORS,
            "quorum": QUORUM,
            "settlements": N_UPDATES + N_VALIDATORS,
        },
        "claim_rewards": claim,
    }


def table(result: dict[str, Any]) -> str:
    rows = [f"{'operation':<30} {'first round':>12} {'steady':>10} {'target':>10}  verdict"]
    for m, target in TARGETS.items():
        first, steady = result["first_round"][m], result["steady_state"][m]
        verdict = (
            "meets" if first <= target else ("meets in steady state only" if steady <= target else "MISSES")
        )
        rows.append(f"{m:<30} {first:>12,} {steady:>10,} {target:>10,}  {verdict}")
    rows.append(
        f"{'submit_update_closing':<30} {result['first_round']['submit_update_closing']:>12,} "
        f"{result['steady_state']['submit_update_closing']:>10,} {'':>10}  (the submit that closes the round)"
    )
    rows.append(
        f"{'claim_rewards':<30} {result['claim_rewards']:>12,} {'':>10} {'':>10}  (once, for all rounds accrued)"
    )
    base = result["baseline"]["naive_cid_string_submit"]
    ours = result["steady_state"]["submit_update"]
    rows.append(
        f"baseline: naive registry storing the CIDv0 string: {base:,} gas per submit "
        f"(submit_update uses {ours / base:.0%} of it)"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON on stdout (the table goes to stderr)")
    args = parser.parse_args(argv)
    result = run()
    if args.json:
        print(table(result), file=sys.stderr)
        print(json.dumps(result, indent=2))
    else:
        print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
