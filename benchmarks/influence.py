"""Influence of one update by leave-one-out replay, against one aggregation of the same round (the baseline).

Writes a round of N update files (float32 deltas, the `benchmarks/aggregate.py` layout) and a base once, then
times, on one core each and in its own subprocess:

* **baseline: one aggregation of the round** — FedAvg of the N updates weighted by distinct consensus scores
  (``prepare`` + ``write_aggregation``: what the aggregator and `audit replay` compute, CID included);
* **influence of one update** — what `meshprov audit influence --update CID` computes once the files are local:
  the aggregate without that update (N − 1 inputs, the same driver and writer, CID included) and the streaming L2
  distance between the round's model and it (``ledger.audit.influence.distance``);
* **influence of every update** — N of those (reported, no target).

Fetching is left out of both sides: `audit replay` and `audit influence` fetch the same files through the same
verified download. Goal (issue 16): influence of one update ≤ 2× one aggregation.

    python benchmarks/influence.py                 # 16 updates x 25M float32 parameters (1.6 GB of files)
    python benchmarks/influence.py --small         # 16 x 1M: a quick run
    python benchmarks/influence.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aggregate import layout

FULL = {"n": 16, "params": 25_000_000}
SMALL = {"n": 16, "params": 1_000_000}
GOAL = 2.0


def write_round(work: Path, n: int, params: int) -> None:
    from ledger.content.unixfs import import_file
    from ledger.updatefile import GenesisMeta, UpdateMeta, write_aggregate, write_update

    shapes = layout(params)
    rng = np.random.default_rng(16)
    base = {k: rng.standard_normal(s, dtype=np.float32) for k, s in shapes.items()}
    write_aggregate(work / "base.safetensors", base, GenesisMeta(model="bench"))
    base_cid = import_file(work / "base.safetensors").cid
    del base
    cids = []
    for i in range(n):
        delta = {k: rng.standard_normal(s, dtype=np.float32) * 0.01 for k, s in shapes.items()}
        meta = UpdateMeta(task=1, round=1, base=base_cid, contributor=f"0x{i + 1:040x}", num_samples=100)
        path = work / f"update-{i}.safetensors"
        write_update(path, delta, meta)
        cids.append(import_file(path).cid)
    (work / "round.json").write_text(json.dumps({"base_cid": base_cid, "cids": cids}))


def _aggregate(work: Path, indexes: list[int], out: Path) -> str:
    import contextlib

    from ledger.aggregation import AggregationSpec, Contribution, prepare, write_aggregation
    from ledger.content import cid_to_digest
    from ledger.updatefile import UpdateFile

    meta = json.loads((work / "round.json").read_text())
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(UpdateFile.open(work / "base.safetensors"))
        inputs = [
            Contribution(
                cid_to_digest(meta["cids"][i]),
                stack.enter_context(UpdateFile.open(work / f"update-{i}.safetensors")),
                weight=1000 + 137 * i,
            )
            for i in indexes
        ]
        agg = prepare(base, inputs, AggregationSpec.fedavg())
        return write_aggregation(out, agg, task=1, round=1, parent=meta["base_cid"]).cid


def child(work: Path, what: str, n: int) -> dict[str, Any]:
    """One measurement in this process (CPU time, so the 2-core machine's other load does not count)."""
    import ledger.aggregation
    import ledger.content
    from ledger.audit.influence import distance
    from ledger.updatefile import UpdateFile

    del ledger  # imported before the clock starts: every child pays its imports outside the measurement
    model = work / "model.safetensors"
    started, cpu = time.perf_counter(), time.process_time()
    if what == "aggregate":
        _aggregate(work, list(range(n)), model)
    elif what == "one":
        loo = work / "loo-0.safetensors"
        _aggregate(work, list(range(1, n)), loo)
        with UpdateFile.open(model) as a, UpdateFile.open(loo) as b:
            distance(a, b)
        loo.unlink()
    else:  # every update
        for i in range(n):
            loo = work / f"loo-{i}.safetensors"
            _aggregate(work, [j for j in range(n) if j != i], loo)
            with UpdateFile.open(model) as a, UpdateFile.open(loo) as b:
                distance(a, b)
            loo.unlink()
    return {"wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu}


def _run(work: Path, what: str, n: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [
        "taskset",
        "-c",
        "0",
        sys.executable,
        __file__,
        "--child",
        what,
        "--work",
        str(work),
        "--n",
        str(n),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--n", type=int)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.work, args.child, args.n)))
        return 0
    size = SMALL if args.small else FULL
    n, params = size["n"], size["params"]
    with tempfile.TemporaryDirectory(prefix="meshprov-bench-influence-") as tmp:
        work = Path(tmp)
        write_round(work, n, params)
        results = {what: _run(work, what, n) for what in ("aggregate", "one", "every")}
    ratio = results["one"]["cpu_s"] / results["aggregate"]["cpu_s"]
    summary = {
        "updates": n,
        "parameters": params,
        "results": results,
        "one_over_aggregate": ratio,
        "goal": GOAL,
        "met": ratio <= GOAL,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"influence, {n} updates x {params:,} float32 parameters (CPU seconds on one core)")
    print(f"{'measurement':<46}{'wall s':>10}{'CPU s':>10}{'x aggregation':>16}")
    names = {
        "aggregate": "baseline: one aggregation of the round",
        "one": "influence of one update (n-1 aggregate + dist)",
        "every": f"influence of all {n} updates",
    }
    base_cpu = results["aggregate"]["cpu_s"]
    for what, r in results.items():
        print(f"{names[what]:<46}{r['wall_s']:>10.2f}{r['cpu_s']:>10.2f}{r['cpu_s'] / base_cpu:>16.2f}")
    print(
        f"goal: one update <= {GOAL}x one aggregation: {'met' if ratio <= GOAL else 'NOT met'} ({ratio:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
