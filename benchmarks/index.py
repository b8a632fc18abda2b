"""Event index and lineage: indexing throughput and the latency of a deep lineage, from the index and trustless.

Generates a real history on a fresh anvil with the real contracts (protocol v2): ROUNDS rounds (100) of UPDATES
updates (20), batch-relayed with EIP-712 signatures; VALIDATORS validators (4) each commit to a score sheet of
every update, then reveal it (one `commitScores` and one `revealScores` transaction per validator and round), one
update per round is rejected by everyone with a reason code, and the aggregator finalizes (the contract computes
the consensus and every settlement). That is UPDATES + 2 × VALIDATORS + 3 events per round (31, ~3,100 in all).
Then it measures, against baselines taken in the same run:

* index build from scratch into SQLite (and PostgreSQL at 127.0.0.1:5432 when reachable) — target: 10,000
  events in ≤ 10 s; baseline: fetching and decoding the same logs with no database (the floor of any indexer);
* lineage of the latest model (ROUNDS deep, UPDATES updates per round, every revealed score) from the index — target
  ≤ 50 ms (median of 20); baseline: walking the rounds with contract view calls (`baseDigest` and
  `aggregateDigest` per round, which cannot return the updates or scores at all);
* `--trustless`: the same lineage from the chain alone (in-memory index built from eth_getLogs, then the query).

    python benchmarks/index.py                  # 100 rounds x 20 updates x 4 validators
    python benchmarks/index.py --rounds 10 --json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from hexbytes import HexBytes

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def digest(*parts: object) -> bytes:
    return hashlib.sha256(":".join(map(str, parts)).encode()).digest()


class FastSender:
    """Pipelined sends for generating history quickly: fixed gas, cached fees, local nonces, receipts awaited
    once per batch (the product's TxSender estimates and awaits every transaction)."""

    def __init__(self, w3: Any, key: str) -> None:
        from eth_account import Account

        self.w3 = w3
        self.account = Account.from_key(key)
        self.nonce = w3.eth.get_transaction_count(self.account.address)
        self.chain_id = w3.eth.chain_id
        base = int(w3.eth.get_block("latest")["baseFeePerGas"])
        self.fees = {"maxFeePerGas": 4 * base + 10**9, "maxPriorityFeePerGas": 10**9}

    def send(self, fn: Any, gas: int) -> HexBytes:
        tx = fn.build_transaction(
            {
                "from": self.account.address,
                "nonce": self.nonce,
                "gas": gas,
                "chainId": self.chain_id,
                **self.fees,
            }
        )
        self.nonce += 1
        signed = self.account.sign_transaction(tx)
        return HexBytes(self.w3.eth.send_raw_transaction(signed.raw_transaction))


def generate(rounds: int, updates: int, validators: int, log: Any) -> dict[str, Any]:
    """Start anvil, deploy, run the history; returns the handles the measurements need."""
    from eth_account import Account

    from lab.consortium import RoleKeys, deploy_consortium, task_table
    from ledger.chain.client import connect_web3
    from ledger.chain.scores import REJECT, ScoreSheet
    from ledger.dev.services import AnvilProcess
    from ledger.reasons import Reason
    from ledger.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="meshprov-bench-index-"))
    anvil = AnvilProcess.start(tmp, settings=Settings(data_dir=tmp, anvil_mnemonic=Settings().anvil_mnemonic))
    w3 = connect_web3(anvil.rpc_url)
    dev = RoleKeys.dev(validators, 0)
    # Contributors only sign (their submissions are relayed), so they need no ether: fresh keys will do.
    contributors = [Account.from_key(digest("contributor", i)) for i in range(updates)]
    roles = RoleKeys(
        dev.admin,
        dev.aggregator,
        dev.validators,
        tuple((a.address, "0x" + bytes(a.key).hex()) for a in contributors),
    )
    task = task_table(
        spec=digest("spec"),
        genesis=digest("genesis"),
        quorum=2,
        submission_window_s=3600,
        commit_window_s=3600,
        reveal_window_s=3600,
    )
    deployed = deploy_consortium(w3, roles, task)
    task_id = deployed.task_id
    aggregator = deployed.client(roles.aggregator[1])
    val_keys = [k for _, k in roles.validators]
    relay = FastSender(w3, roles.aggregator[1])
    scorers = [FastSender(w3, k) for k in val_keys]
    fn = aggregator.contract.functions
    chain_id = w3.eth.chain_id
    started = time.perf_counter()
    domain_client = deployed.client()
    for r in range(1, rounds + 1):
        subs = [
            domain_client.sign_submission(
                "0x" + bytes(acct.key).hex(),
                task_id,
                r,
                digest(task_id, r, i),
                100 + i,
                nonce=r - 1,
                deadline=2**40,
            )
            for i, acct in enumerate(contributors)
        ]
        last = relay.send(
            fn.submitUpdatesFor(task_id, r, [s.to_abi() for s in subs]), 120_000 + 60_000 * updates
        )
        w3.eth.wait_for_transaction_receipt(last)
        # Every contributor has submitted, so submissions are closed: each validator commits to its sheet, and
        # once all have committed (the commit phase ends at once) each reveals; all revealed = finalizable.
        reject = r % updates  # one update per round rejected by everyone
        sheets = []
        for v, scorer in enumerate(scorers):
            scores = [REJECT if i == reject else 2000 + 300 * ((i + v + r) % 7) for i in range(updates)]
            reasons = [int(Reason.NORM_OUTLIER) if i == reject else 0 for i in range(updates)]
            sheet = ScoreSheet(tuple(scores), tuple(reasons), digest("salt", r, v))
            commitment = sheet.commitment(
                chain_id=chain_id,
                ledger=aggregator.address,
                task_id=task_id,
                round_=r,
                validator=scorer.account.address,
            )
            last = scorer.send(fn.commitScores(task_id, r, commitment), 150_000)
            sheets.append(sheet)
        for scorer, sheet in zip(scorers, sheets, strict=True):
            last = scorer.send(
                fn.revealScores(task_id, r, sheet.score_bytes, sheet.reason_bytes, sheet.salt),
                150_000 + 4_000 * updates,
            )
        w3.eth.wait_for_transaction_receipt(last)
        last = relay.send(fn.finalizeRound(task_id, r, digest("aggregate", r)), 3_000_000)
        receipt = w3.eth.wait_for_transaction_receipt(last)
        if receipt["status"] != 1:
            # Sends are pipelined with fixed gas and unchecked receipts: a failed commit or reveal shows here.
            raise SystemExit(f"finalizing round {r} failed (a commit or reveal before it may have reverted)")
        if r % 10 == 0:
            log(f"  generated {r}/{rounds} rounds ({time.perf_counter() - started:.0f} s)")
    return {
        "anvil": anvil,
        "w3": w3,
        "client": deployed.client(),
        "deploy_block": deployed.deploy_block,
        "task_id": task_id,
        "latest": digest("aggregate", rounds),
        "generate_seconds": time.perf_counter() - started,
        "tmp": tmp,
    }


def measure(env: dict[str, Any], repeats: int, log: Any) -> dict[str, Any]:
    from ledger.chain.events import iter_log_ranges
    from ledger.index import service
    from ledger.index.db import IndexDB
    from ledger.index.queries import Queries

    client = env["client"]
    start = env["deploy_block"]
    latest = "0x" + env["latest"].hex()
    out: dict[str, Any] = {"generate_seconds": env["generate_seconds"]}

    # Baseline: fetch and decode the logs, no database.
    t = time.perf_counter()
    raw = [
        e
        for _, _, logs in iter_log_ranges(client.w3, client.address, start, client.block_number())
        for e in logs
    ]
    decoded = client.events_decoder.decode_all(raw)
    out["baseline_fetch_decode_s"] = time.perf_counter() - t
    out["events"] = len(decoded)
    log(f"  {len(decoded)} events; fetch+decode alone {out['baseline_fetch_decode_s']:.2f} s")

    sqlite_path = env["tmp"] / "index.sqlite"
    db = IndexDB(f"sqlite:///{sqlite_path}")
    t = time.perf_counter()
    result = service.update(db, client, start_block=start)
    out["index_sqlite_s"] = time.perf_counter() - t
    assert result.events == len(decoded), (result.events, len(decoded))
    log(f"  SQLite index built in {out['index_sqlite_s']:.2f} s")

    try:
        pg = IndexDB(POSTGRES_URL, schema_name=f"meshprov_bench_{uuid.uuid4().hex[:8]}")
    except Exception as exc:
        log(f"  PostgreSQL skipped: {exc}")
        pg = None
    if pg is not None:
        try:
            t = time.perf_counter()
            service.update(pg, client, start_block=start)
            out["index_postgres_s"] = time.perf_counter() - t
            log(f"  PostgreSQL index built in {out['index_postgres_s']:.2f} s")
            out["lineage_postgres_ms"] = _median_ms(lambda: Queries(pg).lineage(latest), repeats)
        finally:
            pg.drop()
            pg.dispose()

    queries = Queries(db)
    (lineage,) = queries.lineage(latest)
    out["lineage_depth"] = lineage.depth
    out["lineage_updates"] = sum(len(r.updates) for r in lineage.rounds)
    out["lineage_scores"] = sum(len(u.scores) for r in lineage.rounds for u in r.updates)
    out["lineage_verified"] = lineage.verified
    out["lineage_sqlite_ms"] = _median_ms(lambda: queries.lineage(latest), repeats)
    log(f"  lineage {lineage.depth} rounds deep: {out['lineage_sqlite_ms']:.1f} ms (median of {repeats})")

    # Baseline: the chain's own views walk the rounds but cannot say which updates or scores made them.
    def walk_views() -> None:
        task_id = env["task_id"]
        for r in range(lineage.depth, 0, -1):
            client.aggregate_digest(task_id, r)
            client.base_digest(task_id, r)

    out["baseline_view_walk_ms"] = _median_ms(walk_views, 3)

    t = time.perf_counter()
    memory, _ = service.trustless(client, start_block=start)
    out["trustless_build_s"] = time.perf_counter() - t
    t = time.perf_counter()
    Queries(memory).lineage(latest)
    out["trustless_lineage_total_s"] = out["trustless_build_s"] + (time.perf_counter() - t)
    out["lineage_memory_ms"] = _median_ms(lambda: Queries(memory).lineage(latest), repeats)
    memory.dispose()
    db.dispose()
    log(f"  trustless lineage (build + query): {out['trustless_lineage_total_s']:.2f} s")
    return out


def _median_ms(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def table(r: dict[str, Any]) -> str:
    events = r["events"]
    per_10k = r["index_sqlite_s"] * 10_000 / events
    rows = [
        ("events generated on anvil", f"{events:,}", "", ""),
        ("baseline: getLogs + decode, no DB", f"{r['baseline_fetch_decode_s']:.2f} s", "", ""),
        (
            "index build, SQLite",
            f"{r['index_sqlite_s']:.2f} s ({events / r['index_sqlite_s']:,.0f} ev/s; {per_10k:.2f} s per 10k)",
            "10k events ≤ 10 s",
            "PASS" if per_10k <= 10 else "FAIL",
        ),
    ]
    if "index_postgres_s" in r:
        pg_10k = r["index_postgres_s"] * 10_000 / events
        rows.append(
            (
                "index build, PostgreSQL",
                f"{r['index_postgres_s']:.2f} s ({pg_10k:.2f} s per 10k)",
                "10k events ≤ 10 s",
                "PASS" if pg_10k <= 10 else "FAIL",
            )
        )
    rows += [
        (
            "trustless: in-memory index from getLogs",
            f"{r['trustless_build_s']:.2f} s",
            "(reported)",
            "",
        ),
        (
            f"lineage {r['lineage_depth']} rounds × {r['lineage_updates'] // max(1, r['lineage_depth'])} updates "
            f"({r['lineage_scores']:,} scores), SQLite",
            f"{r['lineage_sqlite_ms']:.1f} ms",
            "≤ 50 ms",
            "PASS" if r["lineage_sqlite_ms"] <= 50 else "FAIL",
        ),
    ]
    if "lineage_postgres_ms" in r:
        rows.append(
            (
                "lineage, PostgreSQL",
                f"{r['lineage_postgres_ms']:.1f} ms",
                "≤ 50 ms",
                "PASS" if r["lineage_postgres_ms"] <= 50 else "FAIL",
            )
        )
    rows += [
        ("lineage, in-memory (trustless query)", f"{r['lineage_memory_ms']:.1f} ms", "", ""),
        ("lineage --trustless end to end", f"{r['trustless_lineage_total_s']:.2f} s", "(reported)", ""),
        (
            "baseline: walk rounds by view calls (no updates/scores)",
            f"{r['baseline_view_walk_ms']:.0f} ms",
            "",
            "",
        ),
    ]
    width = [max(len(str(row[i])) for row in rows) for i in range(4)]
    head = ("measure", "measured", "target", "")
    width = [max(w, len(h)) for w, h in zip(width, head, strict=True)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, width, strict=True))]
    lines.append("-+-".join("-" * w for w in width))
    lines += [" | ".join(str(c).ljust(w) for c, w in zip(row, width, strict=True)) for row in rows]
    return "\n".join(lines)


def main() -> None:
    import warnings

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=ResourceWarning)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    log(f"generating {args.rounds} rounds × {args.updates} updates × {args.validators} validators on anvil…")
    env = generate(args.rounds, args.updates, args.validators, log)
    try:
        log(f"  history generated in {env['generate_seconds']:.0f} s; measuring…")
        result = measure(env, args.repeats, log)
    finally:
        env["anvil"].stop()
        import shutil

        shutil.rmtree(env["tmp"], ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(table(result))


if __name__ == "__main__":
    main()
