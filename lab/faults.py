"""Fault injection on a multi-round run of real processes (issue 9): what the system guarantees when machines fail.

anvil, redis-server, two validators, an aggregator (with its watcher) and an index follower run as real processes
(lab/meshnet.py); five members train the MLP on non-IID digits and submit every round (one of them a ×10
scaling attacker, so rejections flow through the same path). One fault per round, injected while the round is
being judged or aggregated:

    1  none (reference)
    2  kill -9 of validator 0 while it holds its scored sheet (failpoint before its commit)
    3  kill -9 of the aggregator after it stored the aggregate, before finalizeRound
    4  Redis killed mid-round and restarted with its append-only file
    5  anvil stopped mid-submissions and restarted from its state file (same port)
    6  the block store unavailable for 10 s right after the submissions
    7  Redis killed mid-round and restarted empty (queues, claims and locks lost)
    8  kill -9 of every worker and the index follower at once, restarted 2 s later

Then it checks, from the chain's logs:
  * every round finalized exactly once (one RoundFinalized per round), and the rounds ran in order;
  * no submission was lost: every update the members submitted is on chain at its index (members submit the
    digest, then publish the content once submissions close), every validator revealed exactly once a score for
    every update, and the accepted set is the consensus outcome (the lower weighted median of the revealed scores
    with the weights frozen at the round's opening > 0, with a quorum of reveals: docs/protocol.md R4);
  * the followed index (the `meshprov index follow` process's SQLite file) equals a trustless index rebuilt
    from the chain's logs (``ledger.index.service.trustless``), table by table;
  * baseline: every aggregate's CID equals the one the pure pipeline (no processes, no faults) computes for the
    same inputs, so the faults changed nothing in the result.

    meshprov experiment faults [--rounds 8] [--json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.experiment import (
    DEFAULT_PIPELINE,
    ExperimentConfig,
    dev_roles,
    malicious_members,
    publish_round,
    read_weights,
    run_experiment,
    write_genesis_file,
)
from lab.meshnet import MeshNet, wait_until

HOLD_S = 3  # failpoints: validator 0 waits this long before committing, the aggregator before finalizing


def _stage(net: MeshNet, kind: str, round_: int, role: str, address: str) -> str | None:
    from worker.state import WorkerState, worker_id

    state = WorkerState.from_url(net.redis_url)
    try:
        record = state.progress(kind, net.task_id, round_, worker_id(role, address))
    finally:
        state.redis.close()
    return None if record is None else str(record["stage"])


def _held(net: MeshNet, kind: str, round_: int, who: str, stage: str) -> None:
    role, address = (
        ("validator", net.validator(0)[0]) if who == "validator-0" else ("aggregator", net.aggregator[0])
    )
    wait_until(lambda: _stage(net, kind, round_, role, address) == stage, 120, f"{who} to reach {stage}")


# --- the faults: each runs after the round's submissions are in (anvil's: halfway through them) -------------


def kill_validator(net: MeshNet, round_: int) -> str:
    _held(net, "verify", round_, "validator-0", "scored")
    net.procs["validator-0"].kill9()
    time.sleep(1)
    net.restart("validator-0")
    return "validator 0 killed holding its scored sheet (salt on disk), restarted 1 s later"


def kill_aggregator(net: MeshNet, round_: int) -> str:
    _held(net, "aggregate", round_, "aggregator", "stored")
    net.procs["aggregator"].kill9()
    time.sleep(1)
    net.restart("aggregator")
    return "aggregator killed after storing the aggregate, before finalizeRound; restarted 1 s later"


def redis_keep(net: MeshNet, round_: int) -> str:
    _held(net, "verify", round_, "validator-0", "scored")
    net.restart_redis(keep_data=True)
    return "redis-server killed while validator 0 held its scored sheet; restarted with its append-only file"


def anvil_restart(net: MeshNet, round_: int) -> str:
    down = net.restart_anvil()
    return f"anvil stopped halfway through the submissions, restarted from its state file ({down:.1f} s down)"


def store_outage(net: MeshNet, round_: int, seconds: float = 10.0) -> str:
    with net.store_offline():
        time.sleep(seconds)
    return f"block store unavailable for {seconds:.0f} s (reads and writes fail) right after the submissions"


def redis_empty(net: MeshNet, round_: int) -> str:
    _held(net, "verify", round_, "validator-0", "scored")
    net.restart_redis(keep_data=False)
    return "redis-server killed while validator 0 held its scored sheet; restarted empty"


def kill_all(net: MeshNet, round_: int) -> str:
    for name in list(net.procs):
        net.procs[name].kill9()
    time.sleep(2)
    for name in list(net.procs):
        net.restart(name)
    return "kill -9 of both validators, the aggregator and the index follower at once; restarted 2 s later"


FAULTS: list[tuple[str, Callable[[MeshNet, int], str] | None]] = [
    ("none", None),
    ("kill -9 validator", kill_validator),
    ("kill -9 aggregator", kill_aggregator),
    ("Redis restart (data kept)", redis_keep),
    ("anvil restart (state file)", anvil_restart),
    ("store unavailable 10 s", store_outage),
    ("Redis restart (data lost)", redis_empty),
    ("kill -9 all workers + follower", kill_all),
]


# --- checks ---------------------------------------------------------------------------------------------------


def check_rounds(net: MeshNet, rounds: int, submitted: dict[int, list[Any]]) -> dict[str, Any]:
    from ledger.chain.scores import decode_scores
    from ledger.consensus import consensus_scores
    from ledger.content import cid_to_digest

    problems: list[str] = []
    finalized = net.events("RoundFinalized")
    per_round = {r: [e for e in finalized if e.args["round"] == r] for r in range(1, rounds + 1)}
    for r, found in per_round.items():
        if len(found) != 1:
            problems.append(f"round {r} finalized {len(found)} times")
    order = [e.args["round"] for e in sorted(finalized, key=lambda e: (e.block_number, e.log_index))]
    if order != sorted(order):
        problems.append(f"rounds finalized out of order: {order}")
    stats = {"updates": 0, "accepted": 0, "rejected": 0, "reveals": 0}
    for r in range(1, rounds + 1):
        subs = sorted(net.events("UpdateSubmitted", r), key=lambda e: e.args["index"])
        mine = submitted[r]
        if len(subs) != len(mine):
            problems.append(f"round {r}: {len(subs)} submissions on chain, the members made {len(mine)}")
        for s in mine:
            on_chain = next((e for e in subs if e.args["index"] == s.index), None)
            if on_chain is None or on_chain.args["digest"] != cid_to_digest(s.cid):
                problems.append(
                    f"round {r}: member {s.member}'s update {s.cid} is not on chain at index {s.index}"
                )
        n = len(subs)
        stats["updates"] += n
        accepted = per_round[r][0].args["acceptedBitmap"] if per_round[r] else 0
        scores: dict[str, list[int]] = {}
        for v in net.events("ScoresRevealed", r):
            stats["reveals"] += 1
            if v.args["validator"] in scores:
                problems.append(f"round {r}: {v.args['validator']} revealed twice")
            scores[v.args["validator"]] = decode_scores(bytes(v.args["scores"]))
        for i in range(net.validators):
            address = net.validator(i)[0]
            if len(scores.get(address, [])) != n:
                problems.append(
                    f"round {r}: validator {i} revealed {len(scores.get(address, []))} scores of {n}"
                )
        # The accepted set must be the consensus outcome (R4): the lower weighted median of the revealed scores
        # (weights frozen at the round's opening, an unrevealed member counting 0) > 0. Not "every validator
        # scored > 0": honest validators may split in sign on a near-zero update, and the median then decides.
        (opened,) = net.events("RoundOpened", r)
        members = [str(a) for a in opened.args["validators"]]
        rows = [scores.get(a) for a in members]
        revealed = [row if row is not None and len(row) == n else None for row in rows]
        quorate = sum(row is not None for row in revealed) >= net.quorum
        consensus = consensus_scores(revealed, list(opened.args["weights"]), n)
        for i in range(n):
            said = [scores.get(net.validator(v)[0], [])[i : i + 1] for v in range(net.validators)]
            if accepted >> i & 1:
                stats["accepted"] += 1
            else:
                stats["rejected"] += 1
            if bool(accepted >> i & 1) != (quorate and consensus[i] > 0):
                problems.append(
                    f"round {r}: update {i} accepted={bool(accepted >> i & 1)} against its consensus "
                    f"{consensus[i]} ({said})"
                )
    return {"problems": problems, **stats, "finalizations": {r: len(f) for r, f in per_round.items()}}


def check_index(net: MeshNet) -> dict[str, Any]:
    """The follower process's index against one rebuilt from the chain's logs alone."""
    from ledger.index import service
    from ledger.index.db import IndexDB

    client = net.client()
    head = client.block_number()
    followed = IndexDB(net.index_url, create=False)
    try:

        def caught_up() -> bool:
            if not net.procs["follower"].alive():
                net.restart("follower")
            cp = followed.checkpoint()
            return cp is not None and cp.block_number >= head

        wait_until(caught_up, 120, "the index follower to reach the chain's head", every=0.5)
        memory, result = service.trustless(client)
        mine, theirs = followed.dump(), memory.dump()
        memory.dispose()
    finally:
        followed.dispose()
    differing = sorted(t for t in set(mine) | set(theirs) if mine.get(t) != theirs.get(t))
    return {
        "equal": not differing,
        "differing_tables": differing,
        "rows": sum(len(v) for v in mine.values()),
        "tables": len(mine),
        "events": result.events,
        "head": head,
    }


# --- the run ----------------------------------------------------------------------------------------------------


def run(rounds: int, root: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from ledger.updatefile import UpdateMeta, write_update
    from node.data import make_federation

    faults = FAULTS[:rounds] + [("none", None)] * max(0, rounds - len(FAULTS))
    config = ExperimentConfig("scale", 1, DEFAULT_PIPELINE, 0, num_nodes=5, rounds=rounds, tolerated=1)
    log("pure pipeline (no processes, no faults) for the reference aggregates…")
    pure = run_experiment(config)
    roles = dev_roles(config.validators, config.num_nodes)
    genesis = root / "genesis.safetensors"
    base_cid = write_genesis_file(genesis, config.model, config.seed)
    net = MeshNet.for_experiment(root / "net", config)
    table: list[dict[str, Any]] = []
    submitted: dict[int, list[Any]] = {}
    follower_restarts = 0
    with net:
        net.start(genesis)
        checks = [
            "--evaluator",
            "node.heldout:loss",
            "--loss-delta",
            f"{config.loss_delta:g}",
            "--reference-trainer",
            "node.heldout:reference",
        ]  # as the demo's
        for i in range(net.validators):
            hold = ["--failpoint", f"verify.before_commit={HOLD_S}"] if i == 0 else []
            net.start_validator(i, *checks, *hold)
        net.start_aggregator("--failpoint", f"aggregate.stored={HOLD_S}")
        net.start_follower()
        net.wait_ready()
        federation = make_federation(config.num_nodes, config.alpha, config.seed)
        malicious = malicious_members(config.num_nodes, config.num_malicious, config.seed)
        base = read_weights(genesis)
        for r, (name, fault) in enumerate(faults, start=1):
            started = time.monotonic()
            published = publish_round(config, federation, base, r, malicious)
            paths = []
            for p in published:
                meta = UpdateMeta(
                    task=net.task_id, round=r, base=base_cid, contributor=roles.contributors[p.node],
                    num_samples=p.num_samples,
                )  # fmt: skip
                path = root / f"update-{r}-{p.node}.safetensors"
                write_update(path, p.delta, meta)
                paths.append((p, path))
            detail: dict[str, str] = {}
            thread = None
            if fault is not None:

                def inject(
                    fault: Callable[[MeshNet, int], str] = fault, r: int = r, detail: dict[str, str] = detail
                ) -> None:
                    try:
                        detail["what"] = fault(net, r)
                    except Exception as exc:  # reported in the table: a fault that could not be injected
                        detail["what"] = f"FAILED TO INJECT: {exc}"

                thread = threading.Thread(target=inject)
            subs = []
            for k, (p, path) in enumerate(paths):
                if thread is not None and fault is anvil_restart and k == len(paths) // 2:
                    thread.start()
                subs.append(net.submit(p.node, path, p.num_samples, r, publish=False))
            # Content is published once submissions close (R1): before that nobody can copy it.
            net.wait_submissions_closed(r)
            if thread is not None and not thread.is_alive() and fault is not anvil_restart:
                thread.start()
            for _p, path in paths:
                net.publish(path)
            submitted[r] = subs
            final = net.wait_finalized(r, timeout=600)
            if thread is not None:
                thread.join()
            seconds = time.monotonic() - started
            from ledger.chain.types import bits
            from ledger.content import digest_to_cid

            aggregate = digest_to_cid(final.args["aggregateDigest"])
            if final.args["acceptedBitmap"]:
                base = read_weights(net.fetch(aggregate, root / f"aggregate-{r}.safetensors"))
            base_cid = aggregate
            if not net.procs["follower"].alive():
                follower_restarts += 1
                net.restart("follower")
            row = {
                "round": r,
                "fault": name,
                "detail": detail.get("what", "—"),
                "seconds": round(seconds, 1),
                "submissions": len(subs),
                "retried_submissions": sum(1 for s in subs if s.attempts > 1),
                "accepted": len(bits(final.args["acceptedBitmap"])),
                "aggregate": aggregate,
                "same_as_pure": aggregate == pure.rounds[r - 1].aggregate_cid,
            }
            table.append(row)
            log(f"round {r} [{name}]: finalized in {seconds:.1f} s; {row['detail']}")
        log("checking the chain's record…")
        rounds_check = check_rounds(net, rounds, submitted)
        index_check = check_index(net)
        restarts = {name: p.starts - 1 for name, p in net.procs.items()}
    ok = (
        not rounds_check["problems"]
        and index_check["equal"]
        and all(row["same_as_pure"] for row in table)
        and all(not row["detail"].startswith("FAILED") for row in table)
    )
    return {
        "ok": ok,
        "rounds": table,
        "chain": rounds_check,
        "index": index_check,
        "process_restarts": restarts,
        "follower_restarts_after_exit": follower_restarts,
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        "| round | fault | seconds to finalize | submissions (retried) | accepted | finalized | aggregate = pure run |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rounds"]:
        count = report["chain"]["finalizations"].get(
            row["round"], report["chain"]["finalizations"].get(str(row["round"]))
        )
        lines.append(
            f"| {row['round']} | {row['fault']} | {row['seconds']} | {row['submissions']} ({row['retried_submissions']}) "
            f"| {row['accepted']} | {count}× | {'yes' if row['same_as_pure'] else '**no**'} |"
        )
    chain, index = report["chain"], report["index"]
    lines += [
        "",
        f"every round finalized exactly once: {'yes' if all(c == 1 for c in chain['finalizations'].values()) else 'NO'}",
        f"submissions: {chain['updates']} on chain, {chain['accepted']} accepted + {chain['rejected']} scored <= 0 "
        f"by every validator, {chain['reveals']} reveals; problems: {chain['problems'] or 'none'}",
        f"followed index = trustless index from the chain: {'yes' if index['equal'] else 'NO ' + str(index['differing_tables'])} "
        f"({index['rows']} rows in {index['tables']} tables, {index['events']} events, head block {index['head']})",
        f"process restarts: {report['process_restarts']}; follower found exited and restarted: "
        f"{report['follower_restarts_after_exit']}",
        "",
        "\n".join(f"round {row['round']}: {row['detail']}" for row in report["rounds"]),
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=len(FAULTS))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", type=Path, help="Keep the data directory (logs, chain state, index) here.")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="meshprov-faults-") as tmp:
        root = args.keep if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        report = run(args.rounds, root, log)
    print(json.dumps(report, indent=1, default=str) if args.json else render(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
