"""Dashboard latency on a big index: the leaderboard and a contributor's page, server time, beside the index's
queries asked directly (the audit's answers).

The index is SYNTHETIC: rows are generated straight into the index schema (ledger/index/schema.py), not by
driving the contracts (100,000 real submissions would take hours on anvil). Its shape follows what MeshLedger
allows: a round holds at most 112 updates, so 1,000 contributors × 100 rounds is 10 tasks of 100 contributors
each, every contributor submitting in each of its task's 100 rounds (100,000 submissions), 3 validators each
committing, then revealing a score of every update (3,000 commitments, 300,000 scores), ~5% of updates rejected
by most validators with reason codes (their consensus, the lower median, is then a hard reject), the consensus of
every update, one settlement per contributor and validator per round with its score, or distance and absence
(≈104,000 reputation values, ≈98,000 rewards accrued), blocks with timestamps a few seconds apart, the next round
opened at each finalization with its frozen validator set. The `events` table is left empty (the dashboard never
reads it, but for counting it).

Measured in-process through the ASGI app (httpx ASGITransport: no sockets, so this is server time), median and
p95 over the repeats, in three situations and beside the audit's answers:

* full: a dashboard that knows nothing yet (just started, or the index was rewound by a reorganisation): every
  member's figures are folded from the whole index;
* after a round: the last round of the last task (100 submissions, 300 scores, its settlement) is held back when
  the index is generated, then inserted as the follower would; the next request folds in just those rows (the
  common case on a live consortium);
* warm: the index did not change since the last request (answers are memoized per version of its data);
* audit: `Queries.leaderboard()` (the same member fold, from scratch, without the dashboard's memo) and
  `Queries.account(address)` (a member's history with every score it revealed), the answers `meshprov audit` gives.
  The dashboard reads through the same queries (ledger/index/queries/): these are not another implementation.

Target: leaderboard and contributor page ≤ 200 ms server time (after a round and warm; the full fold is reported).

    python benchmarks/dashboard.py                # SQLite (and PostgreSQL at 127.0.0.1:5432 when reachable)
    python benchmarks/dashboard.py --tasks 2 --json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_MS = 200.0


def _hex(*parts: object) -> str:
    return "0x" + hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def _address(*parts: object) -> str:
    from eth_utils.address import to_checksum_address

    return str(to_checksum_address(_hex(*parts)[:42]))


def synthesize(
    db: Any, *, tasks: int, per_task: int, rounds: int, validators: int, seed: int = 1
) -> dict[str, Any]:
    """Fill an empty index with the history described in the module docstring; returns counts and accounts."""
    from eth_utils.crypto import keccak

    from ledger.chain.scores import REJECT
    from ledger.index import schema
    from ledger.reasons import Reason

    rng = random.Random(seed)
    rows: dict[str, list[dict[str, Any]]] = {t.name: [] for t in schema.metadata.sorted_tables}
    state = {"block": 0, "log": 0, "ts": 1_760_000_000}

    def new_block(seconds: int) -> None:
        state["block"] += 1
        state["ts"] += seconds
        state["log"] = 0
        n = state["block"]
        rows["blocks"].append(
            {"number": n, "hash": _hex("b", n), "parent_hash": _hex("b", n - 1), "timestamp": state["ts"]}
        )

    def pos(tx: bool = True) -> dict[str, Any]:
        state["log"] += 1
        out: dict[str, Any] = {"block_number": state["block"], "log_index": state["log"]}
        if tx:
            out["tx_hash"] = _hex("tx", state["block"], state["log"])
        return out

    role = {n: "0x" + keccak(text=f"{n}_ROLE").hex() for n in ("CONTRIBUTOR", "VALIDATOR", "AGGREGATOR")}
    admin, aggregator = _address("admin"), _address("aggregator")
    vals = [_address("validator", i) for i in range(validators)]
    groups = [[_address("contributor", t, i) for i in range(per_task)] for t in range(tasks)]
    rep: dict[tuple[str, int], int] = {}

    def open_round(task: int, round_: int, by: str, base: str) -> None:
        """RoundOpened: the round, and its validator set frozen with their reputations as weights."""
        opened = {**pos(), "task_id": task, "round": round_, "opened_by": by, "base_digest": base,
                  "opened_at": state["ts"]}  # fmt: skip
        rows["rounds"].append(opened)
        at = {"block_number": opened["block_number"], "log_index": opened["log_index"]}
        rows["round_validators"] += [
            {**at, "task_id": task, "round": round_, "position": p, "validator": v, "weight": rep[(v, 1)]}
            for p, v in enumerate(vals)
        ]

    new_block(12)
    for account, name, r in [(a, "VALIDATOR", 1) for a in vals] + [
        (c, "CONTRIBUTOR", 0) for g in groups for c in g
    ]:
        rows["role_changes"].append(
            {**pos(False), "role": role[name], "account": account, "granted": True, "sender": admin}
        )
        rows["reputation_changes"].append(
            {
                **pos(False),
                "task_id": 0,
                "round": 0,
                "account": account,
                "role": r,
                "reputation": 5000,
                "reward": "0",
                "score": 0,
                "distance": 0,
                "absent": False,
            }
        )
        rep[(account, r)] = 5000
    rows["role_changes"].append(
        {**pos(False), "role": role["AGGREGATOR"], "account": aggregator, "granted": True, "sender": admin}
    )
    new_block(12)
    for t in range(1, tasks + 1):
        rows["tasks"].append(
            {**pos(), "task_id": t, "admin": admin, "spec_digest": _hex("spec", t), "genesis_digest": _hex("genesis", t),
             "rule": 0, "rule_param": 0, "quorum": 2, "submission_window": 3600, "commit_window": 1800,
             "reveal_window": 1800, "finalize_grace": 3600, "max_samples": 1_000_000, "reward_per_round": str(10**18)}
        )  # fmt: skip
        open_round(t, 1, admin, _hex("genesis", t))
    reasons = [
        int(r)
        for r in (
            Reason.NON_FINITE,
            Reason.NORM_TOO_LARGE,
            Reason.NORM_OUTLIER,
            Reason.NORM_TOO_SMALL,
            Reason.LOSS_REGRESSION,
        )
    ]
    for r in range(1, rounds + 1):
        for t in range(1, tasks + 1):
            group = groups[t - 1]
            flagged = {i for i in range(len(group)) if rng.random() < 0.05}
            per_block = max(1, len(group) // 10)
            for i, c in enumerate(group):
                if i % per_block == 0:
                    new_block(rng.randint(2, 12))
                rows["submissions"].append(
                    {**pos(), "task_id": t, "round": r, "idx": i, "contributor": c, "digest": _hex("u", t, r, i),
                     "num_samples": 100 + rng.randint(0, 900), "relayer": c}
                )  # fmt: skip
            rows["closures"].append(
                {
                    **pos(False),
                    "task_id": t,
                    "round": r,
                    "last_contributor": group[-1],
                    "submission_count": len(group),
                    "closed_at": state["ts"],
                }
            )
            # Each validator commits, then reveals one score per update: honest updates score positive (each
            # validator a little differently), a flagged one is a hard reject for most validators.
            sheets: list[list[tuple[int, int]]] = []
            for v_i, v in enumerate(vals):
                new_block(rng.randint(5, 30))
                rows["commitments"].append(
                    {**pos(), "task_id": t, "round": r, "validator": v, "commitment": _hex("c", t, r, v)}
                )
                sheets.append(
                    [
                        (REJECT, rng.choice(reasons))
                        if i in flagged and (v_i < 2 or rng.random() < 0.5)
                        else (rng.randint(1000, 6000), 0)
                        for i in range(len(group))
                    ]
                )
            for v, sheet in zip(vals, sheets, strict=True):
                new_block(rng.randint(5, 30))
                rows["scores"] += [
                    {**pos(), "task_id": t, "round": r, "idx": i, "validator": v, "score": score,
                     "positive": score > 0, "reason": reason}
                    for i, (score, reason) in enumerate(sheet)
                ]  # fmt: skip
            # Equal weights here: the consensus is the lower median of an update's scores.
            consensus = [
                sorted(sheet[i][0] for sheet in sheets)[(len(sheets) - 1) // 2] for i in range(len(group))
            ]
            new_block(rng.randint(5, 60))
            accepted = [i for i in range(len(group)) if consensus[i] > 0]
            final = {**pos(), "task_id": t, "round": r, "finalized_by": aggregator, "carried_over": False,
                     "aggregate_digest": _hex("agg", t, r),
                     "accepted_bitmap": hex(sum(1 << i for i in accepted)), "accepted_count": len(accepted),
                     "submission_count": len(group), "rule": 0, "rule_param": 0}  # fmt: skip
            at = {"block_number": final["block_number"], "log_index": final["log_index"]}
            share = 9 * 10**17 // max(1, len(accepted))
            accrued = 0
            rows["accepted"] += [{**at, "task_id": t, "round": r, "idx": i} for i in accepted]
            rows["consensus"] += [
                {**at, "task_id": t, "round": r, "idx": i, "score": score}
                for i, score in enumerate(consensus)
            ]
            for i, c in enumerate(group):
                ok = consensus[i] > 0
                rep[(c, 0)] = max(0, rep[(c, 0)] + (100 if ok else -500))
                reward = share if ok else 0
                accrued += reward
                rows["reputation_changes"].append(
                    {
                        **at,
                        "task_id": t,
                        "round": r,
                        "account": c,
                        "role": 0,
                        "reputation": rep[(c, 0)],
                        "reward": str(reward),
                        "score": consensus[i],
                        "distance": 0,
                        "absent": False,
                    }
                )
                if reward:
                    rows["rewards"].append(
                        {**at, "task_id": t, "round": r, "account": c, "role": 0, "amount": str(reward)}
                    )
            for v, sheet in zip(vals, sheets, strict=True):
                rep[(v, 1)] += 10
                reward = 10**17 // len(vals)
                accrued += reward
                distance = sum(abs(s - c) for (s, _), c in zip(sheet, consensus, strict=True)) // len(group)
                rows["reputation_changes"].append(
                    {
                        **at,
                        "task_id": t,
                        "round": r,
                        "account": v,
                        "role": 1,
                        "reputation": rep[(v, 1)],
                        "reward": str(reward),
                        "score": 0,
                        "distance": distance,
                        "absent": False,
                    }
                )
                rows["rewards"].append(
                    {**at, "task_id": t, "round": r, "account": v, "role": 1, "amount": str(reward)}
                )
            final["rewards_accrued"] = str(accrued)
            rows["finalizations"].append(final)
            open_round(t, r + 1, aggregator, _hex("agg", t, r))
    # The last task's last round is held back: inserting it later is "a round finalizes" (see measure()).
    last_round_from = min(
        r["block_number"] for r in rows["submissions"] if r["task_id"] == tasks and r["round"] == rounds
    )
    insert_rows(db, rows, lambda block: block < last_round_from, ledger=_address("ledger"))
    return {
        "rows": {k: len(v) for k, v in rows.items() if v},
        "all_rows": rows,
        "held_back_from": last_round_from,
        "contributors": [c for g in groups for c in g],
        "validators": vals,
        "latest": _hex("agg", 1, rounds if tasks > 1 else rounds - 1),  # task 1's newest model in the index
    }


def insert_rows(
    db: Any, rows: dict[str, list[dict[str, Any]]], keep: Callable[[int], bool], *, ledger: str = ""
) -> None:
    """Insert the rows of the blocks ``keep`` selects, and move the checkpoint to the newest, in one transaction
    (as the follower commits a batch)."""
    from sqlalchemy import insert, update

    from ledger.index import schema

    newest = max(r["number"] for r in rows["blocks"] if keep(r["number"]))
    with db.begin() as conn:
        if ledger:
            conn.execute(
                insert(schema.checkpoint).values(
                    id=1, schema_version=schema.SCHEMA_VERSION, chain_id=31337, ledger=ledger, start_block=1,
                    block_number=newest, block_hash=_hex("b", newest), updated_at=time.time(),
                )
            )  # fmt: skip
        else:
            conn.execute(
                update(schema.checkpoint).values(
                    block_number=newest, block_hash=_hex("b", newest), updated_at=time.time()
                )
            )
        for name, batch in rows.items():
            chosen = [r for r in batch if keep(r["number"] if name == "blocks" else r["block_number"])]
            table = schema.metadata.tables[name]
            for start in range(0, len(chosen), 20_000):
                conn.execute(insert(table), chosen[start : start + 20_000])


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": statistics.median(ordered), "p95_ms": p95, "n": len(ordered)}


def measure(db: Any, data: dict[str, Any], repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    import copy

    import httpx

    from ledger.dashboard import create_app
    from ledger.index.queries import Queries

    app = create_app(db)
    model = app.state.model
    rng = random.Random(7)
    people = rng.sample(data["contributors"], repeats)
    out: dict[str, Any] = {}

    def forget_all() -> None:  # a dashboard just started, or an index rewound by a reorganisation
        model.memo.clear()
        model._folds.clear()

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:

            async def timed(url: str, reset: Callable[[], None] | None) -> float:
                if reset is not None:
                    reset()
                started = time.perf_counter()
                response = await client.get(url)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{url}: {response.status_code} {response.text[:200]}")
                return elapsed

            await timed("/api/overview", forget_all)  # imports, template compilation
            members: dict[str, Callable[[int], str]] = {
                "leaderboard_api": lambda i: "/api/contributors",
                "leaderboard_page": lambda i: "/contributors",
                "contributor_api": lambda i: f"/api/contributors/{people[i]}",
                "contributor_page": lambda i: f"/contributors/{people[i]}",
            }
            others: dict[str, Callable[[int], str]] = {
                "overview_page": lambda i: "/",
                "round_page": lambda i: f"/tasks/1/rounds/{1 + i % 100}",
                "metrics": lambda i: "/metrics",
            }
            for name, url in {**members, **others}.items():
                full = [await timed(url(i), forget_all) for i in range(repeats)]
                warm = [await timed(url(i % 3), None) for i in range(max(repeats, 30))]
                out[name] = {"full": _stats(full), "warm": _stats(warm)}
                log(
                    f"  {name:17} full {out[name]['full']['median_ms']:7.1f} ms  warm {out[name]['warm']['median_ms']:6.2f} ms"
                )
            lineage = [
                await timed(f"/lineage/{_cid(data['latest'])}", forget_all)
                for _ in range(max(3, repeats // 5))
            ]
            out["lineage_page"] = {"full": _stats(lineage)}

            # A round finalizes: its rows (100 submissions, 300 scores, settlements) arrive in the index, and the
            # next request folds in just those (the saved fold is restored before each repeat).
            await timed("/api/contributors", forget_all)
            saved = copy.deepcopy(model._folds)
            insert_rows(db, data["all_rows"], lambda block: block >= data["held_back_from"])

            def after_a_round() -> None:
                model.memo.clear()
                model._folds = copy.deepcopy(saved)

            for name, url in members.items():
                out[name]["after_round"] = _stats(
                    [await timed(url(i), after_a_round) for i in range(repeats)]
                )
                log(f"  {name:17} after a round {out[name]['after_round']['median_ms']:7.1f} ms")

    asyncio.run(run())
    queries = Queries(db)
    out["baseline_leaderboard"] = _stats(_times(queries.leaderboard, repeats))
    who = iter(people)
    out["baseline_account"] = _stats(_times(lambda: queries.account(next(who)), repeats))
    log(f"  audit: Queries.leaderboard {out['baseline_leaderboard']['median_ms']:.1f} ms, "
        f"Queries.account {out['baseline_account']['median_ms']:.1f} ms")  # fmt: skip
    return out


def _cid(digest: str) -> str:
    from ledger.content import digest_to_cid

    return digest_to_cid(digest)


def _times(fn: Callable[[], Any], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    head = "| measure | database | full median / p95 | after a round median / p95 | warm median | target (p95) | verdict |"
    lines = [head, "|---|---|---|---|---|---|---|"]

    def cell(m: dict[str, float] | None) -> str:
        return f"{m['median_ms']:.1f} / {m['p95_ms']:.1f} ms" if m else ""

    for backend, r in results.items():
        for name in ("leaderboard_api", "leaderboard_page", "contributor_api", "contributor_page"):
            m = r[name]
            ok = m["after_round"]["p95_ms"] <= TARGET_MS and m["warm"]["p95_ms"] <= TARGET_MS
            lines.append(
                f"| {name} | {backend} | {cell(m['full'])} | {cell(m['after_round'])} | {m['warm']['median_ms']:.2f} ms "
                f"| ≤ {TARGET_MS:.0f} ms | {'PASS' if ok else 'FAIL'} |"
            )
        for name in ("overview_page", "round_page", "metrics"):
            m = r[name]
            lines.append(
                f"| {name} | {backend} | {cell(m['full'])} | | {m['warm']['median_ms']:.2f} ms | | |"
            )
        lines.append(
            f"| lineage_page (latest model of task 1) | {backend} | {cell(r['lineage_page']['full'])} | | | | |"
        )
        for name in ("baseline_leaderboard", "baseline_account"):
            lines.append(f"| {name} (Queries, the audit's answer) | {backend} | {cell(r[name])} | | | | |")
    return "\n".join(lines)


def run_backends(
    backends: list[tuple[str, Callable[[], Any]]],
    shape: dict[str, int],
    repeats: int,
    results: dict[str, dict[str, Any]],
    generated: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    for name, make in backends:
        try:
            db = make()
        except Exception as exc:
            log(f"{name}: skipped ({exc})")
            continue
        try:
            started = time.perf_counter()
            data = synthesize(db, **shape)
            generated.update(rows=data["rows"], seconds=time.perf_counter() - started)
            log(f"{name}: synthetic index of {len(data['contributors'])} contributors × {shape['rounds']} rounds "
                f"({sum(data['rows'].values()):,} rows) in {generated['seconds']:.1f} s")  # fmt: skip
            results[name] = measure(db, data, repeats, log)
        finally:
            if db.dialect == "postgresql":
                db.drop()
            db.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--contributors-per-task", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--validators", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.contributors_per_task > 112:
        parser.error("a round holds at most 112 updates (MeshLedger.MAX_UPDATES_PER_ROUND)")
    import logging

    logging.disable(logging.CRITICAL)  # the 500-path logger is not under test here

    from ledger.index.db import IndexDB

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    shape = dict(
        tasks=args.tasks, per_task=args.contributors_per_task, rounds=args.rounds, validators=args.validators
    )
    results: dict[str, dict[str, Any]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="meshprov-bench-dashboard-"))
    backends: list[tuple[str, Callable[[], Any]]] = [
        ("sqlite", lambda: IndexDB(f"sqlite:///{tmp / 'index.sqlite'}"))
    ]
    if not args.no_postgres:
        backends.append(
            ("postgres", lambda: IndexDB(POSTGRES_URL, schema_name=f"meshprov_bench_{uuid.uuid4().hex[:8]}"))
        )
    generated: dict[str, Any] = {}
    try:
        run_backends(backends, shape, args.repeats, results, generated, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the SQLite index is ~150 MB
    if args.json:
        print(json.dumps({"shape": shape, "generated": generated, "results": results}, indent=2))
    else:
        print(f"synthetic index: {shape}, rows {generated.get('rows')}")
        print(table(results))
    failed = any(
        r[n][k]["p95_ms"] > TARGET_MS
        for r in results.values()
        for n in ("leaderboard_api", "leaderboard_page", "contributor_api", "contributor_page")
        for k in ("after_round", "warm")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
