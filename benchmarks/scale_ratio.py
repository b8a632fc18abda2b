"""How large is an honest update next to its base? The numbers behind ``CheckLimits.max_scale_ratio``.

Runs honest FedAvg on the digits federation (``node.data.make_federation``, ``node.training.local_train`` with
each model's tuned settings) from genesis for rounds 1..R, and for every member's update in every round records

* the global ratio ``|update|_2 / |base|_2`` over the floating-point tensors (what the check uses), and
* the largest per-tensor ratio ``|update[k]|_2 / |base[k]|_2`` (the alternative, for comparison),

then the same for the x10 scale attack (``node.behaviours.scale``). Each (model, nodes, seed, alpha) federation
runs in its own process.

    python benchmarks/scale_ratio.py [--rounds 10] [--seeds 0 1 2] [--alphas 0.1 0.5 10] [--nodes 2 5 10] [--json]

docs/worker.md ("Scale against the base") has the numbers of the defaults (about 10 minutes on 2 busy cores) and
of ``--nodes 2 --seeds 3 4``.
"""

from __future__ import annotations

import argparse
import json
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np


def _norm(values: Any) -> float:
    return float(np.sqrt(np.sum(np.square(np.asarray(values, np.float64)))))


def ratios(delta: dict[str, np.ndarray], base: dict[str, np.ndarray]) -> tuple[float, float]:
    keys = [k for k, v in base.items() if v.dtype.kind == "f"]
    whole = math.sqrt(sum(_norm(delta[k]) ** 2 for k in keys)) / math.sqrt(
        sum(_norm(base[k]) ** 2 for k in keys)
    )
    per = max((_norm(delta[k]) / _norm(base[k]) if _norm(base[k]) > 0 else math.inf) for k in keys)
    return whole, per


def federation(model: str, seed: int, alpha: float, nodes: int, rounds: int) -> dict[str, Any]:
    from node.behaviours import scale
    from node.data import make_federation
    from node.models import genesis_state
    from node.training import apply_delta, default_config, local_train, round_seed

    fed = make_federation(nodes, alpha, seed)
    base = genesis_state(model, seed)
    config = default_config(model)
    honest: list[dict[str, Any]] = []
    for r in range(1, rounds + 1):
        deltas, weights = [], []
        for i in range(nodes):
            result = local_train(model, base, fed.node_data(i), replace(config, seed=round_seed(seed, r, i)))
            whole, per = ratios(result.delta, base)
            scaled, scaled_per = ratios(scale(result.delta), base)
            honest.append(
                {
                    "round": r,
                    "node": i,
                    "ratio": whole,
                    "per_tensor": per,
                    "x10": scaled,
                    "x10_per": scaled_per,
                }
            )
            deltas.append(result.delta)
            weights.append(result.num_samples)
        share = np.array(weights, np.float64) / sum(weights)  # FedAvg: weighted by sample count
        mean = {k: np.tensordot(share, np.stack([d[k] for d in deltas]), axes=1) for k in base}
        base = apply_delta(base, {k: v.astype(base[k].dtype) for k, v in mean.items()})
    return {"model": model, "nodes": nodes, "seed": seed, "alpha": alpha, "updates": honest}


def summary(runs: list[dict[str, Any]], bound: float) -> dict[str, dict[str, Any]]:
    """Per model: the honest ratios' largest, 99th percentile and per-federation medians; the share of x10 and
    x100 scaled updates over ``bound``."""
    out: dict[str, dict[str, Any]] = {}
    for model in sorted({r["model"] for r in runs}):
        mine = [r for r in runs if r["model"] == model]
        ups = [u for r in mine for u in r["updates"]]
        ratios = np.array([u["ratio"] for u in ups])
        over_1 = [u for u in ups if u["ratio"] > 1]
        out[model] = {
            "updates": len(ups),
            "largest": float(ratios.max()),
            "p99": float(np.quantile(ratios, 0.99)),
            "over_1": len(over_1),
            "over_1_in_round_1": sum(u["round"] == 1 for u in over_1),
            "median_by_federation": [float(np.median([u["ratio"] for u in r["updates"]])) for r in mine],
            "largest_per_tensor": max(u["per_tensor"] for u in ups),
            "x10_over": float(np.mean([u["x10"] > bound for u in ups])),
            "x100_over": float(np.mean([10 * u["x10"] > bound for u in ups])),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1, 0.5, 10.0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--bound", type=float, default=5.0, help="the scale bound to report against")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    jobs = [
        (m, s, a, n, args.rounds)
        for m in args.models
        for n in args.nodes
        for s in args.seeds
        for a in args.alphas
    ]
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(federation, *zip(*jobs, strict=True)))
    result = summary(runs, args.bound)
    if args.json:
        print(json.dumps({"summary": result, "runs": runs}, indent=2))
        return
    for model, r in result.items():
        medians = r["median_by_federation"]
        print(
            f"{model}: {r['updates']} honest updates, |u|/|b| largest {r['largest']:.2f} (p99 {r['p99']:.2f}; "
            f"{r['over_1_in_round_1']} of the {r['over_1']} over 1 in round 1), medians {min(medians):.2f}-"
            f"{max(medians):.2f}, largest per-tensor {r['largest_per_tensor']:.1f}; over {args.bound:g}x: "
            f"x10 {r['x10_over']:.0%}, x100 {r['x100_over']:.0%}"
        )


if __name__ == "__main__":
    main()
