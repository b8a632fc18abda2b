"""Node training speed and quality: one local round, evaluation, DP, a 10-round FedAvg simulation, the central
baseline.

Baseline, measured in the same run: the same local round with torch's default intra-op thread count (the node
pins one thread because several nodes share a 2-core machine).

    python benchmarks/node_training.py [--json] [--repeats 20] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

import torch

from lab.central import train_central
from lab.simulate import simulate_fedavg
from node.data import make_federation
from node.models import genesis_state
from node.privacy import DPConfig, privatize
from node.training import default_config, evaluate, local_train


def _median_seconds(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _node_process(node_index: int, threads: int | None, rounds: int) -> float:
    """One node process as the demo runs it: load its shard, then `rounds` local rounds from the genesis."""
    started = time.perf_counter()
    shard = make_federation(5, 0.5, seed=0).node_data(node_index)
    base = genesis_state("mlp")
    for round_index in range(rounds):
        config = replace(default_config("mlp"), threads=threads, seed=round_index)
        base = local_train("mlp", base, shard, config).state
    return time.perf_counter() - started


def parallel_nodes(threads: int | None, nodes: int = 5, rounds: int = 5) -> float:
    """Wall-clock seconds for `nodes` fresh processes to train `rounds` rounds each, concurrently."""
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=nodes, mp_context=context) as pool:
        list(pool.map(_node_process, range(nodes), [threads] * nodes, [rounds] * nodes))
    return time.perf_counter() - started


def run(repeats: int, seeds: int) -> dict[str, Any]:
    federation = make_federation(5, 0.5, seed=0)
    shard = federation.node_data(0)
    default_threads = torch.get_num_threads()
    rows: list[dict[str, Any]] = []
    for model in ("mlp", "cnn"):
        base = genesis_state(model)
        config = default_config(model)
        started = time.perf_counter()
        local = local_train(model, base, shard, config)
        cold = time.perf_counter() - started
        ours = _median_seconds(lambda m=model, b=base, c=config: local_train(m, b, shard, c), repeats)
        baseline_config = replace(config, threads=default_threads)
        baseline = _median_seconds(
            lambda m=model, b=base, c=baseline_config: local_train(m, b, shard, c), repeats
        )
        eval_s = _median_seconds(lambda m=model, s=local.state: evaluate(m, s, federation.test), repeats)
        dp_s = _median_seconds(
            lambda d=local.delta: privatize(d, DPConfig(clip=3.0, noise_multiplier=1.0), seed=0), repeats
        )
        curves = [simulate_fedavg(model=model, seed=seed) for seed in range(seeds)]
        sim_started = time.perf_counter()
        simulate_fedavg(model=model, seed=0)
        sim_s = time.perf_counter() - sim_started
        central = [train_central(model, rounds=10, seed=seed) for seed in range(seeds)]
        rows.append(
            {
                "model": model,
                "params": sum(v.size for v in base.values()),
                "shard_samples": len(shard),
                "epochs": config.epochs,
                "local_round_cold_s": cold,
                "local_round_s": ours,
                "local_round_default_threads_s": baseline,
                "default_threads": default_threads,
                "evaluate_test_s": eval_s,
                "privatize_s": dp_s,
                "simulation_10_rounds_s": sim_s,
                "rounds_to_95": [c.rounds_to(0.95) for c in curves],
                "curve_seed0": [round(r.accuracy, 4) for r in curves[0].rounds],
                "final_accuracy": [round(c.final_accuracy, 4) for c in curves],
                "central_accuracy": [round(c.accuracy, 4) for c in central],
                "central_s": statistics.median(c.seconds for c in central),
            }
        )
    parallel = {
        "nodes": 5,
        "rounds": 5,
        "one_thread_s": parallel_nodes(1),
        "default_threads_s": parallel_nodes(None),
    }
    return {"torch": torch.__version__, "rows": rows, "parallel_mlp": parallel}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions per measurement (median)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the accuracy curves")
    args = parser.parse_args()
    result = run(args.repeats, args.seeds)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"torch {result['torch']}; 5 nodes, α=0.5, node 0's shard; medians of {args.repeats} runs")
    header = (
        f"{'model':5} {'params':>7} {'round 1 thr':>11} {'round ' + str(result['rows'][0]['default_threads']) + ' thr':>11}"
        f" {'cold':>7} {'eval':>7} {'DP':>7} {'sim 10r':>8} {'→95% (seeds)':>14} {'central acc':>20}"
    )
    print(header)
    for row in result["rows"]:
        print(
            f"{row['model']:5} {row['params']:>7} {row['local_round_s'] * 1e3:>9.1f}ms"
            f" {row['local_round_default_threads_s'] * 1e3:>9.1f}ms {row['local_round_cold_s'] * 1e3:>5.0f}ms"
            f" {row['evaluate_test_s'] * 1e3:>5.1f}ms {row['privatize_s'] * 1e3:>5.1f}ms"
            f" {row['simulation_10_rounds_s']:>7.2f}s {row['rounds_to_95']!s:>14} {row['central_accuracy']!s:>20}"
        )
    for row in result["rows"]:
        print(f"{row['model']} curve (seed 0): {row['curve_seed0']}")
    par = result["parallel_mlp"]
    print(
        f"{par['nodes']} fresh node processes × {par['rounds']} mlp rounds, concurrently (incl. start-up):"
        f" 1 thread {par['one_thread_s']:.2f}s, torch default threads {par['default_threads_s']:.2f}s"
    )


if __name__ == "__main__":
    main()
