"""Aggregation and verification speed against Flower, on the same update files, in the same run.

Writes N update files (deltas, float32) and a base once to a temp dir, then measures each contender in its own
subprocess (so peak RSS is its own, not the sum of everything before it):

* fedavg, files -> full weights in memory: meshprov's streaming driver over memory-mapped files vs Flower's
  ``flwr.server.strategy.aggregate.aggregate`` on the arrays loaded with ``safetensors.numpy.load_file``
  (Flower needs all N models in memory as ``(list of ndarrays, num_examples)``). Target: >= 1.5x faster, and
  meshprov's peak RSS <= 3x one model.
* coordinate-wise median, the same way against ``aggregate_median``. Target: >= 3x faster.
* verification of every update (Kubo CID + all per-update checks), pinned to one core. Target: >= 1 GB/s.
* multi-krum's cost as N grows (N = 4, 8, 16, 32 on a smaller model): reported, no target.

    python benchmarks/aggregate.py            # 16 updates x 25M float32 parameters (1.6 GB of files)
    python benchmarks/aggregate.py --small    # 16 updates x 1M parameters: a quick run
    python benchmarks/aggregate.py --json
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

FULL = {"n": 16, "params": 25_000_000, "krum_params": 2_500_000}
SMALL = {"n": 16, "params": 1_000_000, "krum_params": 250_000}
KRUM_NS = (4, 8, 16, 32)
TASK, ROUND = 1, 1
ADDRESS_SEED = 0x5EED


def layout(params: int) -> dict[str, tuple[int, ...]]:
    """A transformer-ish state_dict of about ``params`` float32 values: a few big matrices and small vectors."""
    width = max(16, int((params / 6.2) ** 0.5) // 16 * 16)
    shapes: dict[str, tuple[int, ...]] = {
        "embed.weight": (2 * width, width),
        "block0.attn.weight": (width, width),
        "block0.mlp.up.weight": (width, 2 * width),
        "block0.mlp.up.bias": (2 * width,),
        "block0.norm.weight": (width,),
        "block1.attn.weight": (width, width),
        "block1.mlp.up.bias": (width,),
    }
    rest = params - sum(int(np.prod(s)) for s in shapes.values())
    shapes["head.weight"] = (max(rest // width, 1), width)
    return shapes


def _addresses(n: int) -> list[str]:
    from eth_account import Account

    return [Account.from_key((ADDRESS_SEED + i).to_bytes(32, "big")).address for i in range(n)]


def write_round(root: Path, n: int, params: int) -> dict[str, Any]:
    """Base and N updates; returns what the children need (paths, digests, counts)."""
    from ledger.content.multiformats import cid_to_digest
    from ledger.updatefile import GenesisMeta, UpdateMeta, write_aggregate, write_update

    root.mkdir(parents=True, exist_ok=True)
    shapes = layout(params)
    rng = np.random.default_rng(0)
    base = {k: rng.standard_normal(s, dtype=np.float32) for k, s in shapes.items()}
    base_path = root / "base.safetensors"
    base_cid = write_aggregate(base_path, base, GenesisMeta(model="bench")).cid
    del base
    updates = []
    for i, address in enumerate(_addresses(n)):
        delta = {k: rng.standard_normal(s, dtype=np.float32) * np.float32(0.01) for k, s in shapes.items()}
        path = root / f"update{i:02d}.safetensors"
        count = 100 + 37 * i
        meta = UpdateMeta(task=TASK, round=ROUND, base=base_cid, contributor=address, num_samples=count)
        written = write_update(path, delta, meta)
        updates.append(
            {
                "path": str(path),
                "digest": cid_to_digest(written.cid).hex(),
                "num_samples": count,
                "address": address,
            }
        )
    model_bytes = 4 * sum(int(np.prod(s)) for s in shapes.values())
    return {"base": str(base_path), "base_cid": base_cid, "updates": updates, "model_bytes": model_bytes}


# --- children: each runs in its own process and prints one JSON line -----------------------------------------


def _rss_kib(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _warm_imports() -> None:
    """Import what reading metadata imports lazily (eth_utils, ~0.2 s), so it is not timed as aggregation."""
    import eth_utils  # noqa: F401


def _checksum(weights: dict[str, np.ndarray]) -> float:
    # dtype= sums through numpy's small cast buffer: no float64 copy of a tensor inflating the peak RSS
    return float(sum(np.add.reduce(w.ravel(), dtype=np.float64) for w in weights.values()))


def child_meshprov(job: dict[str, Any], rule: str) -> dict[str, Any]:
    import contextlib

    from ledger.aggregation import AggregationSpec, Contribution, prepare
    from ledger.updatefile import UpdateFile

    spec = {"fedavg": AggregationSpec.fedavg(), "median": AggregationSpec.median()}[rule]
    _warm_imports()
    baseline = _rss_kib()
    started, cpu = time.perf_counter(), time.process_time()
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(UpdateFile.open(job["base"]))
        contribs = []
        for u in job["updates"]:
            f = stack.enter_context(UpdateFile.open(u["path"], kind="update"))
            contribs.append(Contribution(bytes.fromhex(u["digest"]), f, f.metadata.num_samples))  # type: ignore[union-attr]
        weights = dict(prepare(base, contribs, spec).tensors())
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "baseline_kib": baseline,
        "checksum": _checksum(weights),
    }


def child_flower(job: dict[str, Any], rule: str) -> dict[str, Any]:
    from flwr.server.strategy.aggregate import aggregate, aggregate_median
    from safetensors.numpy import load_file

    baseline = _rss_kib()
    started, cpu = time.perf_counter(), time.process_time()
    base = load_file(job["base"])
    keys = sorted(base)
    results = []
    for u in job["updates"]:
        tensors = load_file(u["path"])
        results.append(([tensors[k] for k in keys], u["num_samples"]))
    deltas = aggregate(results) if rule == "fedavg" else aggregate_median(results)
    weights = {k: (base[k] + d).astype(base[k].dtype) for k, d in zip(keys, deltas, strict=True)}
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "baseline_kib": baseline,
        "checksum": _checksum(weights),
    }


def child_verify(job: dict[str, Any], part: str) -> dict[str, Any]:
    from ledger.aggregation.source import describe_source
    from ledger.checks import ChainRecord, CheckLimits, kubo_digest, verify_update
    from ledger.content.multiformats import cid_to_digest
    from ledger.updatefile import UpdateFile

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # "per core": one CPU only
    _warm_imports()
    limits = CheckLimits(max_update_bytes=1 << 40)
    total = 0
    started = time.perf_counter()
    cpu = time.process_time()
    with UpdateFile.open(job["base"]) as base:
        layout = describe_source(base)
        for u in job["updates"]:
            digest = bytes.fromhex(u["digest"])
            record = ChainRecord(
                digest, TASK, ROUND, cid_to_digest(job["base_cid"]), u["address"], u["num_samples"]
            )
            total += Path(u["path"]).stat().st_size
            if part == "cid":
                assert kubo_digest(Path(u["path"])) == digest
                continue
            known = None if part == "all" else digest  # "checks": the CID was computed during the download
            verdict = verify_update(
                u["path"], base=base, record=record, limits=limits, digest=known, base_layout=layout
            )
            assert verdict.accepted, verdict.detail
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "cpu_seconds": time.process_time() - cpu, "bytes": total}


def child_krum(job: dict[str, Any], n: int) -> dict[str, Any]:
    import contextlib

    from ledger.aggregation import AggregationSpec, Contribution, prepare
    from ledger.updatefile import UpdateFile

    f = max(1, (n - 3) // 2)
    _warm_imports()
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(UpdateFile.open(job["base"]))
        contribs = [
            Contribution(
                bytes.fromhex(u["digest"]), stack.enter_context(UpdateFile.open(u["path"])), u["num_samples"]
            )
            for u in job["updates"][:n]
        ]
        started = time.process_time()
        agg = prepare(base, contribs, AggregationSpec.multi_krum(f))
        planned = time.process_time()
        for _key, _value in agg.tensors():
            pass
        done = time.process_time()
    return {"n": n, "f": f, "select_cpu_seconds": planned - started, "mean_cpu_seconds": done - planned}


def run_child(kind: str, arg: str, job_file: Path) -> dict[str, Any]:
    # Flower pins old typer/fastapi releases that meshprov's environment cannot share, so `make bench` installs
    # it into its own venv and names that interpreter here; the Flower child imports only flwr, numpy, safetensors.
    python = os.environ.get("FLOWER_PYTHON", sys.executable) if kind == "flower" else sys.executable
    proc = subprocess.run(
        [python, __file__, "--child", kind, arg, str(job_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {kind} {arg} failed:\n{proc.stderr}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def child_main(kind: str, arg: str, job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    if kind == "meshprov":
        out = child_meshprov(job, arg)
    elif kind == "flower":
        out = child_flower(job, arg)
    elif kind == "verify":
        out = child_verify(job, arg)
    else:
        out = child_krum(job, int(arg))
    # VmHWM, not getrusage's ru_maxrss: Linux carries the parent's high-water mark across fork + exec into
    # ru_maxrss, while exec starts a new address space whose VmHWM is this child's own.
    out["peak_rss_kib"] = _rss_kib("VmHWM")
    print(json.dumps(out))


# --- the run -------------------------------------------------------------------------------------------------


def run(small: bool) -> dict[str, Any]:
    size = SMALL if small else FULL
    with tempfile.TemporaryDirectory(prefix="meshprov-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        job = write_round(root / "main", size["n"], size["params"])
        krum_job = write_round(root / "krum", max(KRUM_NS), size["krum_params"])
        setup = time.perf_counter() - started
        job_file, krum_file = root / "job.json", root / "krum.json"
        job_file.write_text(json.dumps(job))
        krum_file.write_text(json.dumps(krum_job))

        results: dict[str, Any] = {
            "config": {**size, "model_bytes": job["model_bytes"], "setup_seconds": setup}
        }
        for rule in ("fedavg", "median"):
            results[rule] = {
                "meshprov": run_child("meshprov", rule, job_file),
                "flower": run_child("flower", rule, job_file),
            }
        results["verify"] = {part: run_child("verify", part, job_file) for part in ("all", "checks", "cid")}
        results["krum"] = [run_child("krum", str(n), krum_file) for n in KRUM_NS]
        results["krum_model_bytes"] = krum_job["model_bytes"]
    return results


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Rows of (measure, value, target, pass/fail).

    Times are CPU seconds of the measured process (user + system): this machine's 2 cores are shared with other
    work, and CPU time is what "per core" means; wall-clock seconds are shown beside them. Memory is the peak
    RSS above the child's RSS after its imports (the interpreter, numpy, ledger: shown as the raw peak too).
    """
    model = results["config"]["model_bytes"]
    rows = []
    for rule, target in (("fedavg", 1.5), ("median", 3.0)):
        ours, flower = results[rule]["meshprov"], results[rule]["flower"]
        speedup = flower["cpu_seconds"] / ours["cpu_seconds"]
        rows.append(
            (
                f"{rule}, files -> weights: meshprov {ours['cpu_seconds']:.2f} s ({ours['seconds']:.2f} s wall) "
                f"vs Flower {flower['cpu_seconds']:.2f} s ({flower['seconds']:.2f} s wall)",
                f"{speedup:.1f}x",
                f">= {target}x",
                "pass" if speedup >= target else "FAIL",
            )
        )
        agree = abs(ours["checksum"] - flower["checksum"]) <= 1e-4 * max(1.0, abs(flower["checksum"]))
        rows.append(
            (
                f"{rule}: same result as Flower (sum of weights)",
                "yes" if agree else "NO",
                "yes",
                "pass" if agree else "FAIL",
            )
        )
    for rule in ("fedavg", "median"):
        ours, flower = results[rule]["meshprov"], results[rule]["flower"]
        work = (ours["peak_rss_kib"] - ours["baseline_kib"]) * 1024
        flower_work = (flower["peak_rss_kib"] - flower["baseline_kib"]) * 1024
        ratio = work / model
        rows.append(
            (
                f"{rule}: peak memory meshprov {work / 2**20:.0f} MiB (RSS {ours['peak_rss_kib'] / 2**10:.0f} MiB), "
                f"Flower {flower_work / 2**20:.0f} MiB; model {model / 2**20:.0f} MiB",
                f"{ratio:.2f}x model",
                "<= 3.0x model",
                "pass" if ratio <= 3.0 else "FAIL",
            )
        )
    for part, label, target in (
        ("all", "verification: Kubo CID + every per-update check, 1 core", 1.0),
        ("checks", "checks alone (CID known from the download)", None),
        ("cid", "Kubo CID alone (ledger.content, 1 thread)", None),
    ):
        v = results["verify"][part]
        rate = v["bytes"] / v["cpu_seconds"] / 1e9
        rows.append(
            (
                f"{label}: {v['bytes'] / 1e9:.2f} GB in {v['cpu_seconds']:.2f} s ({v['seconds']:.2f} s wall)",
                f"{rate:.2f} GB/s",
                f">= {target} GB/s" if target else "(report)",
                ("pass" if rate >= target else "FAIL") if target else "-",
            )
        )
    krum_model = results["krum_model_bytes"]
    for k in results["krum"]:
        pairs = k["n"] * (k["n"] + 1) // 2
        rows.append(
            (
                f"multi-krum N={k['n']:>2} f={k['f']:>2} ({krum_model / 2**20:.0f} MiB model): "
                f"distances + selection {k['select_cpu_seconds']:.2f} s, mean {k['mean_cpu_seconds']:.2f} s",
                f"{k['select_cpu_seconds'] / pairs * 1e3:.1f} ms/pair",
                "(report)",
                "-",
            )
        )
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="1M-parameter models: a quick run")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = parser.parse_args()
    results = run(args.small)
    rows = table(results)
    if args.json:
        print(json.dumps({"results": results, "table": rows}, indent=2))
        return
    cfg = results["config"]
    print(
        f"{cfg['n']} updates x {cfg['params'] / 1e6:.0f}M float32 parameters "
        f"({cfg['model_bytes'] / 2**20:.0f} MiB each; files written in {cfg['setup_seconds']:.0f} s)\n"
    )
    if args.small:
        print(
            "(--small: a smoke run; the targets are set for the full size, where fixed costs do not dominate)\n"
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("measure", "value", "target", "result")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
