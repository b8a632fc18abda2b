"""One federated round at real size through the real code path, stage by stage, against two baselines in one run.

16 members × ``examples/transformer_lm`` (25.5M float32 parameters, 101.9 MB per update) on a fresh anvil, a
local block store and a private redis-server, each role in its own child process pinned to one core:

* members (one process, one member after another): *local training* is one real optimiser step of the recipe's
  own ``train`` (AdamW, batch 8 × 128 bytes of the member's shard; measured, and excluded from the goal), then the
  member's path: ``node.training.compute_delta`` → ``node.packaging.store_update`` (the update serialized
  straight into the local block store: one pass, no file) → ``submit_direct`` (``submitUpdate`` on anvil);
  ``--member-file`` measures the path before it instead: ``write_update_file`` → ``put_update`` (a file, then
  a put of the file);
* validators (one process each, one after the other): the worker's own ``worker.verify.verify_round`` with a
  Runtime built as ``meshprov worker run --role validator --recipe examples/transformer_lm`` builds it (spec read
  from the store, recipe hash checked, the recipe's ``evaluate`` as the held-out loss hook): fetch every update
  from the store, check it against the base, evaluate, score, commit; then a second call reveals. The time inside
  the recipe's evaluation is measured apart (the goal excludes it);
* the aggregator (one process): ``worker.aggregate.aggregate_round``: fetch the accepted updates, aggregate
  (fedavg), write and store the aggregate, ``finalizeRound`` on anvil.

Baselines, in the same run, on the same update files (read back from the store into files after the members'
stages, outside their clock): the floor — one sha-256 pass over the round's update bytes
(one core) — and Flower's aggregation of the same round (``flwr.server.strategy.aggregate.aggregate`` on the
files' ndarrays, as benchmarks/aggregate.py does; when flwr is not installed, a verbatim copy of that function
from flwr 1.42.0, Apache-2.0, below). Peak memory is each child's VmHWM (peak RSS), also shown above its RSS
after imports (torch, web3) and before the work.

    python benchmarks/round.py                 # 16 members × 25.5M parameters (1.6 GB of updates; ~6 min)
    python benchmarks/round.py --members 4     # a quicker run
    python benchmarks/round.py --json
    ROUND_PROFILE=DIR python benchmarks/round.py --members 4   # also a cProfile of each validator's commit
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RECIPE = REPO / "examples" / "transformer_lm"
GOAL_RATIO = 3.0  # everything but training and evaluation ≤ 3 × one sha-256 pass
GOAL_MEMORY = 3.0  # validators' and aggregator's peak ≤ 3 × one model


# ─── Flower's FedAvg, verbatim from flwr 1.42.0 (flwr/server/strategy/aggregate.py, Apache-2.0) ─────────────────
def flower_aggregate(results: list[tuple[list[np.ndarray], int]]) -> list[np.ndarray]:
    """Compute weighted average."""
    # Calculate the total number of examples used during training
    num_examples_total = sum(num_examples for (_, num_examples) in results)

    # Create a list of weights, each multiplied by the related number of examples
    weighted_weights = [[layer * num_examples for layer in weights] for weights, num_examples in results]

    # Compute average weights of each layer
    weights_prime: list[np.ndarray] = [
        reduce(np.add, layer_updates) / num_examples_total
        for layer_updates in zip(*weighted_weights, strict=True)
    ]
    return weights_prime


# ─── helpers the children share ─────────────────────────────────────────────────────────────────────────────────
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _pin() -> None:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


class Clock:
    """Wall and CPU seconds per named stage."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu

    def report(self) -> dict[str, Any]:
        return {"wall": self.wall, "cpu": self.cpu}


# ─── children ───────────────────────────────────────────────────────────────────────────────────────────────────
def child_members(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from ledger.chain.client import LedgerClient, connect_web3
    from ledger.chain.deploy import DeploymentRecord
    from ledger.content.local_store import LocalStore
    from ledger.updatefile import UpdateFile
    from node.packaging import put_update, store_update, submit_direct, write_update_file
    from node.recipe import load_recipe
    from node.statedict import load_numpy_state, state_to_numpy
    from node.training import compute_delta

    _pin()
    torch.set_num_threads(1)
    store = LocalStore(Path(job["store"]))
    recipe = load_recipe(job["recipe"])
    record = DeploymentRecord.read(Path(job["deployment"]))
    w3 = connect_web3(job["anvil"])
    with UpdateFile.open(job["base"]) as f:
        base = {k: np.array(v) for k, v in f.tensors()}
    clock = Clock()
    baseline = _status_kib("VmRSS")
    cids: list[str] = []
    for i, (address, key) in enumerate(job["contributors"]):
        with clock.stage("local training (one optimiser step)"):
            model = recipe.build_model(0)
            load_numpy_state(model, base)
            train, _ = recipe.data(i, len(job["contributors"]), 0)
            recipe.fit(model, train, {"max_steps": 1, "seed": i})
            local = state_to_numpy(model)
            del model
        with clock.stage("package: delta (compute_delta)"):
            delta = compute_delta(local, base)
        if job.get("member_path") == "file":  # the path before session 6: file, then a put of the file
            with clock.stage("package: update file"):
                written = write_update_file(
                    Path(job["root"]) / "members" / f"{i:02d}.safetensors",
                    delta,
                    task=job["task"],
                    round_=job["round"],
                    base=job["base_cid"],
                    contributor=address,
                    num_samples=100 + i,
                )
            del local, delta
            with clock.stage("store: put (CID checked)"):
                cid = put_update(store, written)
        else:  # the update serialized straight into the store: one pass, no file
            with clock.stage("store: update serialized into the store (one pass)"):
                cid = store_update(
                    store,
                    delta,
                    task=job["task"],
                    round_=job["round"],
                    base=job["base_cid"],
                    contributor=address,
                    num_samples=100 + i,
                ).cid
            del local, delta
        with clock.stage("submit on anvil"):
            client = LedgerClient.connect(w3, record.ledger, key=key, timeout=60)
            client.deployment = record
            done = submit_direct(client, task=job["task"], round_=job["round"], cid=cid, num_samples=100 + i)
            assert done.status == "submitted", done
        cids.append(cid)
    # Outside the clock: the updates as files, for the baselines (sha-256, Flower) and --sketch-check.
    files = []
    for i, cid in enumerate(cids):
        path = Path(job["root"]) / "members" / f"{i:02d}.safetensors"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as f:
                for chunk in store.get(cid, max_bytes=1 << 40):
                    f.write(chunk)
        files.append(str(path))
    return {**clock.report(), "files": files, "baseline_kib": baseline, "peak_kib": _status_kib("VmHWM")}


def _worker_runtime(job: dict[str, Any], role: str, key: str) -> Any:
    os.environ.update(job["env"])
    os.environ["MESHPROV_PRIVATE_KEY"] = key
    from worker.cli import _limits, _runtime, _settings_and_config, _use_recipe

    s, config = _settings_and_config()
    limits = _limits(s, None, 0.0, 3.5, None, max_scale_ratio=None)  # `meshprov worker run`'s defaults
    rt = _runtime(s, config=config, role=role, key=key, limits=limits, evaluator=None)
    if role == "validator":
        _use_recipe(rt, job["recipe"], host=None, loss_delta_given=False)
    return rt


def child_validator(job: dict[str, Any], index: int, phase: str) -> dict[str, Any]:
    import torch

    from worker.verify import verify_round

    _pin()
    torch.set_num_threads(1)
    import eth_utils  # noqa: F401  (imported lazily by the metadata parser: not part of the measurement)

    rt = _worker_runtime(job, "validator", job["validators"][index][1])
    evaluation = Clock()
    loss = rt.evaluate

    def timed_loss(weights: Any) -> float:
        with evaluation.stage("evaluate"):
            return float(loss(weights))

    rt.evaluate = timed_loss
    trainer = rt.reference_trainer
    if trainer is not None:  # the validator's own reference training: training, excluded like the members'

        def timed_trainer(*args: Any, **kwargs: Any) -> Any:
            with evaluation.stage("reference training"):
                return trainer(*args, **kwargs)

        rt.reference_trainer = timed_trainer
    import resource

    import worker.verify

    in_child = worker.verify._in_child

    def timed_in_child(work: Any, *, what: str) -> None:
        # The reference training runs in a forked child (worker.verify.REFERENCE_IN_CHILD): its CPU is the
        # child's, added here to the excluded reference training (and, below, to the commit it is part of).
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with evaluation.stage("reference training"):
            in_child(work, what=what)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        evaluation.cpu["reference training"] += spent
        children["cpu"] += spent
        children["peak_kib"] = max(children["peak_kib"], after.ru_maxrss)

    children = {"cpu": 0.0, "peak_kib": 0}
    worker.verify._in_child = timed_in_child
    rt.chain().round_view(job["task"], job["round"])  # connect before timing
    baseline = _status_kib("VmRSS")
    clock = Clock()
    profile = os.environ.get(
        "ROUND_PROFILE"
    )  # a directory: write a cProfile of each validator's commit there
    with clock.stage(phase):
        if profile and phase == "commit":
            import cProfile

            with cProfile.Profile() as profiler:
                result = verify_round(rt, job["task"], job["round"])
            profiler.dump_stats(Path(profile) / f"validator-{index}.prof")
        else:
            result = verify_round(rt, job["task"], job["round"])
    clock.cpu[phase] += children["cpu"]
    return {
        **clock.report(),
        "evaluate": evaluation.report(),
        "reference_child_peak_kib": children["peak_kib"],
        "result": {k: v for k, v in result.items() if isinstance(v, str | int | float)},
        "baseline_kib": baseline,
        "peak_kib": _status_kib("VmHWM"),
    }


def child_aggregator(job: dict[str, Any]) -> dict[str, Any]:
    from worker.aggregate import aggregate_round

    _pin()
    import eth_utils  # noqa: F401

    rt = _worker_runtime(job, "aggregator", job["aggregator"][1])
    rt.chain().round_view(job["task"], job["round"])
    baseline = _status_kib("VmRSS")
    clock = Clock()
    with clock.stage("aggregate + store + finalize"):
        result = aggregate_round(rt, job["task"], job["round"])
    return {
        **clock.report(),
        "result": {k: v for k, v in result.items() if isinstance(v, str | int | float)},
        "baseline_kib": baseline,
        "peak_kib": _status_kib("VmHWM"),
    }


def child_sha256(job: dict[str, Any]) -> dict[str, Any]:
    _pin()
    clock = Clock()
    total = 0
    with clock.stage("sha-256"):
        for path in job["files"]:
            with open(path, "rb", buffering=0) as f:
                h = hashlib.sha256()
                while block := f.read(1 << 20):
                    h.update(block)
                    total += len(block)
    return {**clock.report(), "bytes": total, "peak_kib": _status_kib("VmHWM")}


def child_flower(job: dict[str, Any]) -> dict[str, Any]:
    from safetensors.numpy import load_file

    _pin()
    try:
        from flwr.server.strategy.aggregate import aggregate

        which = "flwr.server.strategy.aggregate.aggregate"
    except ImportError:
        aggregate, which = flower_aggregate, "verbatim copy of flwr 1.42.0's aggregate (flwr not installed)"
    baseline = _status_kib("VmRSS")
    clock = Clock()
    with clock.stage("flower: load + aggregate + apply"):
        base = load_file(job["base"])
        keys = sorted(base)
        results = []
        for path, weight in job["weighted"]:
            tensors = load_file(path)
            results.append(([tensors[k] for k in keys], weight))
        deltas = aggregate(results)
        weights = {k: (base[k] + d).astype(base[k].dtype) for k, d in zip(keys, deltas, strict=True)}
    # How far Flower's float32 average is from meshprov's aggregate (float64 accumulation, rounded once).
    from ledger.updatefile import UpdateFile

    with UpdateFile.open(job["aggregate"]) as f:
        diff = max(float(np.max(np.abs(np.asarray(f.tensor(k)) - weights[k]))) for k in keys)
    return {
        **clock.report(),
        "which": which,
        "max_abs_difference": diff,
        "baseline_kib": baseline,
        "peak_kib": _status_kib("VmHWM"),
    }


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "members": child_members,
    "validator": child_validator,
    "aggregator": child_aggregator,
    "sha256": child_sha256,
    "flower": child_flower,
}


def run_child(job_file: Path, kind: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(job_file), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"the {kind} {' '.join(args)} child failed ({done.returncode}):\n{done.stderr[-4000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ─── the run ────────────────────────────────────────────────────────────────────────────────────────────────────
def run(root: Path, members: int, validators: int, member_path: str = "stream") -> dict[str, Any]:
    from lab.consortium import RoleKeys, deploy_consortium, task_table
    from ledger.chain.client import connect_web3
    from ledger.content.local_store import LocalStore
    from ledger.dev.services import AnvilProcess, RedisProcess, dev_accounts
    from ledger.settings import Settings
    from node.packaging import write_recipe_genesis
    from node.recipe import load_recipe, task_spec
    from tests.support.worker import WorkerNet

    keys = dev_accounts(Settings().anvil_mnemonic, 20)
    if 2 + validators + members > len(keys):
        raise SystemExit(
            f"anvil funds {len(keys)} accounts: 2 + {validators} validators + {members} members is more"
        )
    setup: dict[str, float] = {}
    with ExitStack() as stack:
        started = time.perf_counter()
        anvil = stack.enter_context(AnvilProcess.start(root / "services"))
        redis = stack.enter_context(RedisProcess.start(root / "services"))
        setup["services"] = time.perf_counter() - started

        started = time.perf_counter()
        recipe = load_recipe(str(RECIPE))
        store = LocalStore(root / "blocks")
        genesis = write_recipe_genesis(root / "genesis.safetensors", recipe, seed=0)
        assert store.put_file(genesis.path) == genesis.cid
        # The demo's checks (lab/demo.py): the held-out loss gate on, so validators evaluate every update.
        spec = task_spec(recipe, members=members, seed=0, checks={"zscore": 3.5, "loss_delta": 5.0})
        spec_cid = store.put_bytes(spec.to_json().encode())
        consortium = deploy_consortium(
            connect_web3(anvil.rpc_url),
            RoleKeys.laid_out(keys, validators, members),
            task_table(
                spec=spec_cid,
                genesis=genesis.cid,
                quorum=validators,
                submission_window_s=3600,
                commit_window_s=3600,
                reveal_window_s=3600,
                finalize_grace_s=3600,
            ),
            record_path=root / "deployment.json",
            timeout=60,
            source="benchmarks/round.py",
        )
        net = WorkerNet(
            anvil_url=anvil.rpc_url,
            redis_url=redis.url,
            root=root,
            consortium=consortium,
            base_cid=genesis.cid,
        )
        setup["genesis + spec + deploy"] = time.perf_counter() - started
        round_ = net.current_round()
        job: dict[str, Any] = {
            "root": str(root),
            "store": str(root / "blocks"),
            "base": str(genesis.path),
            "base_cid": genesis.cid,
            "deployment": str(net.deployment_file),
            "anvil": anvil.rpc_url,
            "task": net.task_id,
            "round": round_,
            "recipe": str(RECIPE),
            "member_path": member_path,
            "contributors": [list(k) for k in net.keys.contributors],
            "validators": [list(k) for k in net.keys.validators],
            "aggregator": list(net.keys.aggregator),
            "env": {
                k: v
                for k, v in net.env("").items()
                if k.startswith("MESHPROV_") and k != "MESHPROV_PRIVATE_KEY"
            },
        }
        job_file = root / "job.json"
        job_file.write_text(json.dumps(job))
        out: dict[str, Any] = {
            "config": {
                "members": members,
                "validators": validators,
                "member_path": member_path,
                "recipe": recipe.ref.to_dict(),
                "parameters": sum(p.numel() for p in recipe.build_model(0).parameters()),
                "model_bytes": genesis.path.stat().st_size,
            },
            "setup_seconds": setup,
        }
        out["members"] = run_child(job_file, "members")
        job["files"] = out["members"]["files"]
        job_file.write_text(json.dumps(job))
        net.close_submissions(round_)
        out["validators"] = [run_child(job_file, "validator", str(v), "commit") for v in range(validators)]
        net.end_commits(round_)
        out["reveals"] = [run_child(job_file, "validator", str(v), "reveal") for v in range(validators)]
        view = net.client().round_view(net.task_id, round_)
        if not view.finalizable:
            net.end_reveals(round_)
        # Flower averages with the same weights meshprov's aggregator uses (validators' consensus score × samples).
        from ledger.aggregation import consensus_weights

        tally = net.client().tally(net.task_id, round_)
        by_index = consensus_weights(tally.consensus, tally.accepted_bitmap)
        file_of = {a.lower(): f for (a, _), f in zip(job["contributors"], job["files"], strict=True)}
        job["weighted"] = [
            [file_of[sub.contributor.lower()], by_index[sub.index]]
            for sub in net.client().submissions(net.task_id, round_)
            if sub.index in by_index
        ]
        out["accepted"] = len(job["weighted"])
        out["aggregator"] = run_child(job_file, "aggregator")
        final = net.client().round_view(net.task_id, round_)
        out["finalized"] = final.phase.name
        from ledger.content import digest_to_cid

        aggregate_cid = digest_to_cid(final.aggregate_digest)
        aggregate_path = root / "aggregate.safetensors"
        with aggregate_path.open("wb") as f:
            for chunk in store.get(aggregate_cid, max_bytes=1 << 40):
                f.write(chunk)
        out["aggregate_cid"] = aggregate_cid
        job["aggregate"] = str(aggregate_path)
        job_file.write_text(json.dumps(job))
        out["sha256"] = run_child(job_file, "sha256")
        out["flower"] = run_child(job_file, "flower")
    return out


def overhead(r: dict[str, Any], clock: str) -> dict[str, float]:
    """Everything but training and evaluation, in ``clock`` ("wall" or "cpu") seconds: the members' packaging,
    store and submission (all members: one pass over the round's bytes between them), the slowest validator
    without its evaluations and reference training, the slowest reveal, and the aggregator."""
    members = sum(v for k, v in r["members"][clock].items() if not k.startswith("local training"))
    validator = max(
        v[clock]["commit"]
        - v["evaluate"][clock].get("evaluate", 0.0)
        - v["evaluate"][clock].get("reference training", 0.0)
        for v in r["validators"]
    )
    reveal = max(v[clock]["reveal"] for v in r["reveals"])
    aggregator = r["aggregator"][clock]["aggregate + store + finalize"]
    total = members + validator + reveal + aggregator
    sha = r["sha256"][clock]["sha-256"]
    return {
        "members": members,
        "slowest_validator": validator,
        "reveal": reveal,
        "aggregator": aggregator,
        "total": total,
        "sha256": sha,
        "ratio": total / sha,
    }


def summary(r: dict[str, Any]) -> dict[str, Any]:
    """The round's overhead against the floor (CPU seconds decide: the machine is shared, so wall time also holds
    other jobs' waits), and the peak memories."""
    times = {clock: overhead(r, clock) for clock in ("cpu", "wall")}
    model = r["config"]["model_bytes"]
    peaks = {
        **{f"validator {i}": v["peak_kib"] * 1024 for i, v in enumerate(r["validators"])},
        "aggregator": r["aggregator"]["peak_kib"] * 1024,
    }
    above = {
        **{
            f"validator {i}": (v["peak_kib"] - v["baseline_kib"]) * 1024
            for i, v in enumerate(r["validators"])
        },
        "aggregator": (r["aggregator"]["peak_kib"] - r["aggregator"]["baseline_kib"]) * 1024,
    }
    return {
        "overhead": times,
        "update_bytes": r["sha256"]["bytes"],
        "meets_time_goal": times["cpu"]["ratio"] <= GOAL_RATIO,
        "peak_bytes": peaks,
        "peak_above_imports_bytes": above,
        "peak_ratio": {k: v / model for k, v in peaks.items()},
        "peak_above_imports_ratio": {k: v / model for k, v in above.items()},
        "meets_memory_goal": max(above.values()) / model <= GOAL_MEMORY,
        "flower_peak_above_imports_bytes": (r["flower"]["peak_kib"] - r["flower"]["baseline_kib"]) * 1024,
    }


def print_table(r: dict[str, Any], s: dict[str, Any]) -> None:
    c = r["config"]
    mb = 1e6
    print(
        f"one round: {c['members']} members × {c['recipe']['name']} ({c['parameters'] / 1e6:.1f}M parameters, "
        f"{c['model_bytes'] / mb:.1f} MB per model), {c['validators']} validators, fedavg; each process on one core"
    )
    print(
        f"round's update bytes: {s['update_bytes'] / 1e9:.2f} GB; finalized: {r['finalized']} ({r['aggregate_cid']})\n"
    )
    rows: list[tuple[str, float, float]] = []
    for stage, wall in r["members"]["wall"].items():
        rows.append((f"members (all {c['members']}): {stage}", wall, r["members"]["cpu"][stage]))
    for i, v in enumerate(r["validators"]):
        ev = {k: v["evaluate"][k].get("evaluate", 0.0) for k in ("wall", "cpu")}
        ref = {k: v["evaluate"][k].get("reference training", 0.0) for k in ("wall", "cpu")}
        rows.append(
            (
                f"validator {i}: fetch + check + score + commit (w/o the two below)",
                v["wall"]["commit"] - ev["wall"] - ref["wall"],
                v["cpu"]["commit"] - ev["cpu"] - ref["cpu"],
            )
        )
        rows.append(
            (f"validator {i}: recipe evaluation of base + each update (excluded)", ev["wall"], ev["cpu"])
        )
        rows.append((f"validator {i}: reference training (excluded)", ref["wall"], ref["cpu"]))
    for i, v in enumerate(r["reveals"]):
        rows.append((f"validator {i}: reveal", v["wall"]["reveal"], v["cpu"]["reveal"]))
    a = r["aggregator"]
    stage = "aggregate + store + finalize"
    rows.append(("aggregator: fetch + aggregate + store + finalize", a["wall"][stage], a["cpu"][stage]))
    rows.append(
        (
            "floor: one sha-256 pass over the update bytes",
            r["sha256"]["wall"]["sha-256"],
            r["sha256"]["cpu"]["sha-256"],
        )
    )
    flower = r["flower"]
    stage = "flower: load + aggregate + apply"
    rows.append(
        (f"Flower FedAvg of the same files ({flower['which']})", flower["wall"][stage], flower["cpu"][stage])
    )
    sha_cpu = r["sha256"]["cpu"]["sha-256"]
    width = max(len(x[0]) for x in rows)
    print(f"{'stage':<{width}}  {'wall s':>8}  {'cpu s':>8}  {'cpu × sha-256':>13}")
    for name, wall, cpu in rows:
        print(f"{name:<{width}}  {wall:8.2f}  {cpu:8.2f}  {cpu / sha_cpu:13.2f}")
    for clock in ("cpu", "wall"):
        o = s["overhead"][clock]
        print(
            f"\nround overhead, {clock} seconds (members' packaging + store + submit, slowest validator without "
            f"evaluation and reference training, slowest reveal, aggregator): {o['total']:.2f} s = "
            f"{o['ratio']:.2f}× one sha-256 pass ({o['sha256']:.2f} s)"
        )
    print(f"time goal (cpu, ≤ {GOAL_RATIO:.0f}×): {'pass' if s['meets_time_goal'] else 'FAIL'}")
    print(
        f"\n{'peak memory (VmHWM)':<24} {'peak MB':>8} {'× model':>8} {'above imports MB':>17} {'× model':>8}"
    )
    for k, v in s["peak_bytes"].items():
        above = s["peak_above_imports_bytes"][k]
        print(
            f"{k:<24} {v / mb:8.0f} {s['peak_ratio'][k]:8.2f} {above / mb:17.0f} {s['peak_above_imports_ratio'][k]:8.2f}"
        )
    for i, v in enumerate(r["validators"]):
        if v.get("reference_child_peak_kib"):
            peak = v["reference_child_peak_kib"] * 1024
            print(
                f"{f'validator {i} reference child':<24} {peak / mb:8.0f} {peak / c['model_bytes']:8.2f} "
                f"{'(forked: the recipe training, apart)':>17}"
            )
    flower_above = s["flower_peak_above_imports_bytes"]
    print(
        f"{'Flower FedAvg':<24} {r['flower']['peak_kib'] * 1024 / mb:8.0f} {'':8} {flower_above / mb:17.0f} {flower_above / c['model_bytes']:8.2f}"
    )
    print(
        f"memory goal (validators and aggregator above imports ≤ {GOAL_MEMORY:.0f}× one model): "
        f"{'pass' if s['meets_memory_goal'] else 'FAIL'}; Flower's aggregate vs meshprov's: max |Δ| = "
        f"{r['flower']['max_abs_difference']:.2e}"
    )


def sketch_check(files: list[Path]) -> dict[str, Any]:
    """How well ``ledger.checks.copies``' sketches track the exact cosines on real updates: every pair of the given
    update files, and copies of each (noise of 0.5-30 % of its norm, scaled by 0.5 and 3, both) against it. A miss
    is a pair the exact rule calls a copy (cos >= 0.95) whose sketch cosine the prefilter would drop (below
    0.95 - SKETCH_MARGIN): the copy would pass unseen."""
    from ledger.aggregation.source import describe_source
    from ledger.checks.copies import NEAR_COPY_COSINE, SKETCH_MARGIN, sketch
    from ledger.checks.vectors import cosine, flatten
    from ledger.updatefile import UpdateFile

    vectors = []
    for path in files:
        with UpdateFile.open(path) as f:
            vectors.append(flatten(f, describe_source(f), dtype=np.float32))
    sketches = [sketch(v) for v in vectors]

    def sk_cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    rows = []
    for i in range(len(vectors)):
        for j in range(i + 1, len(vectors)):
            rows.append(("honest pair", cosine(vectors[i], vectors[j]), sk_cos(sketches[i], sketches[j])))
    rng = np.random.default_rng(0)
    for i, v in enumerate(vectors[:4]):
        noise = rng.standard_normal(v.size).astype(np.float32)
        unit = float(np.linalg.norm(v)) / float(np.linalg.norm(noise))
        for level in (0.005, 0.05, 0.2, 0.3):
            copy = v + np.float32(level * unit) * noise
            rows.append((f"copy + {level:.1%} noise", cosine(v, copy), sk_cos(sketches[i], sketch(copy))))
        for scale in (0.5, 3.0):
            copy = np.float32(scale) * v + np.float32(0.02 * unit) * noise
            rows.append((f"copy x{scale:g} + 2% noise", cosine(v, copy), sk_cos(sketches[i], sketch(copy))))
    errors = [abs(e - s) for _, e, s in rows if e is not None]
    misses = [
        r
        for r in rows
        if r[1] is not None and r[1] >= NEAR_COPY_COSINE and r[2] < NEAR_COPY_COSINE - SKETCH_MARGIN
    ]
    return {
        "pairs": len(rows),
        "max_abs_error": max(errors),
        "mean_abs_error": sum(errors) / len(errors),
        "copies": sum(1 for r in rows if r[1] is not None and r[1] >= NEAR_COPY_COSINE),
        "misses": len(misses),
        "rows": [{"kind": k, "exact": e, "sketch": s_} for k, e, s_ in rows],
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, job = sys.argv[2], json.loads(Path(sys.argv[3]).read_text())
        extra: list[Any] = [int(sys.argv[4]), sys.argv[5]] if kind == "validator" else []
        print(json.dumps(CHILDREN[kind](job, *extra)))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=16, help="members (default 16)")
    parser.add_argument("--validators", type=int, default=2, help="validators (default 2; quorum = all)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it (and results.json)")
    parser.add_argument(
        "--render", type=Path, help="print the table of a kept results.json instead of running"
    )
    parser.add_argument(
        "--sketch-check",
        type=Path,
        nargs="+",
        metavar="UPDATE",
        help="measure the copy sketches' error and misses on these update files (e.g. a --keep DIR's members/*)",
    )
    parser.add_argument(
        "--member-file",
        action="store_true",
        help="members write the update file, then put it (the path before store_update) for comparison",
    )
    args = parser.parse_args()
    member_path = "file" if args.member_file else "stream"
    if args.sketch_check:
        checked = sketch_check(args.sketch_check)
        if args.json:
            print(json.dumps(checked, indent=2))
        else:
            for row in checked["rows"]:
                print(f"{row['kind']:<24} exact {row['exact']:+.5f}  sketch {row['sketch']:+.5f}")
            print(
                f"{checked['pairs']} pairs: sketch error max {checked['max_abs_error']:.5f}, mean "
                f"{checked['mean_abs_error']:.5f}; {checked['copies']} copies (cos >= 0.95), {checked['misses']} missed"
            )
        return 0 if checked["misses"] == 0 else 1
    if args.render is not None:
        result = json.loads(args.render.read_text())
    elif args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run(args.keep.resolve(), args.members, args.validators, member_path)
        (args.keep / "results.json").write_text(json.dumps(result, indent=2, default=str))
    else:
        with tempfile.TemporaryDirectory(prefix="meshprov-bench-round-") as tmp:
            result = run(Path(tmp), args.members, args.validators, member_path)
    s = summary(result)
    if args.json:
        print(json.dumps({"results": result, "summary": s}, indent=2, default=str))
    else:
        print_table(result, s)
    return 0 if s["meets_time_goal"] and s["meets_memory_goal"] else 1


if __name__ == "__main__":
    sys.exit(main())
