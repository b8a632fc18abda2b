"""CID of a large file: meshprov's streaming UnixFS importer against hashlib.sha256 over the same bytes.

Writes a file of random bytes (1 GiB by default) to a temp dir, then times, each in its own subprocess (so the
peak memory reported is the measurement's own) and several times over (the best run counts; the machine is
shared), reading the file from the page cache:

* baseline: ``hashlib.sha256`` of the file, read with ``readinto`` into one 4 MiB buffer;
* meshprov, one core: ``import_file(path, workers=1)``;
* meshprov, every core: ``import_file(path, workers=<cores>)`` (leaves hashed by a thread pool).

Targets (issue 4): one core >= 90 % of the baseline's throughput; every core >= 1.6x one core; memory growth
(peak RSS over RSS before the import) <= 64 MiB. The file is deleted at the end.

    python benchmarks/cid.py                 # 1 GiB, 3 runs each
    python benchmarks/cid.py --size-mib 256 --repeat 5 --json
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
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


def _rss_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so the peak below is this measurement's alone.
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pass


def child(kind: str, path: str, workers: int, trace: bool) -> dict[str, Any]:
    """One measurement, run in a fresh process; prints JSON."""
    from ledger.content.unixfs import import_file

    if trace:
        import tracemalloc

        tracemalloc.start()
    _reset_peak()
    before = _rss_kib("VmRSS")
    start = time.perf_counter()
    if kind == "sha256":
        h = hashlib.sha256()
        view = memoryview(bytearray(4 * MIB))
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(view):
                h.update(view[:n])
        digest = h.hexdigest()
    else:
        digest = import_file(path, workers=workers).cid
    seconds = time.perf_counter() - start
    out = {
        "kind": kind,
        "workers": workers,
        "seconds": seconds,
        "rss_growth_mib": (_rss_kib("VmHWM") - before) / 1024,
        "digest": digest,
    }
    if trace:
        import tracemalloc

        out["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / MIB
        tracemalloc.stop()
    return out


def run_child(kind: str, path: Path, workers: int = 1, trace: bool = False) -> dict[str, Any]:
    args = [sys.executable, __file__, "--child", kind, "--path", str(path), "--workers", str(workers)]
    if trace:
        args.append("--trace")
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    return dict(json.loads(proc.stdout))


def write_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * MIB)
            f.write(os.urandom(n))
            left -= n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the test file (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best counts")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write the test file (default: a temp dir)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.path, args.workers, args.trace)))
        return 0

    from ledger.content.unixfs import default_workers

    cores = default_workers()
    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="meshprov-bench-cid-") as tmp:
        path = Path(tmp) / "data.bin"
        write_file(path, size)
        run_child("sha256", path)  # warm the page cache and the interpreter's files
        runs: dict[str, list[dict[str, Any]]] = {"sha256": [], "cid-1": [], f"cid-{cores}": []}
        for _ in range(args.repeat):  # interleaved, so a noisy moment hurts every contender alike
            runs["sha256"].append(run_child("sha256", path))
            runs["cid-1"].append(run_child("cid", path, 1))
            runs[f"cid-{cores}"].append(run_child("cid", path, cores))
        traced = run_child("cid", path, cores, trace=True)
        path.unlink()

    cids = {r["digest"] for name, rs in runs.items() if name != "sha256" for r in rs}
    assert len(cids) == 1, f"the importer gave different CIDs: {cids}"
    best = {name: min(rs, key=lambda r: r["seconds"]) for name, rs in runs.items()}
    rate = {name: size / MIB / r["seconds"] for name, r in best.items()}
    growth = max(r["rss_growth_mib"] for name, rs in runs.items() if name != "sha256" for r in rs)
    single_ratio = rate["cid-1"] / rate["sha256"]
    multi_ratio = rate[f"cid-{cores}"] / rate["cid-1"]
    result = {
        "size_mib": args.size_mib,
        "cores": cores,
        "cid": cids.pop(),
        "throughput_mib_s": rate,
        "all_seconds": {name: [round(r["seconds"], 3) for r in rs] for name, rs in runs.items()},
        "rss_growth_mib": {name: max(r["rss_growth_mib"] for r in rs) for name, rs in runs.items()},
        "tracemalloc_peak_mib": traced["tracemalloc_peak_mib"],
        "targets": {
            "one core >= 90% of sha256": [round(single_ratio, 3), single_ratio >= 0.90],
            f"{cores} cores >= 1.6x one core": [round(multi_ratio, 3), multi_ratio >= 1.6],
            "memory growth <= 64 MiB": [round(growth, 1), growth <= 64],
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"CID of a {args.size_mib} MiB file (page cache), {cores} cores, best of {args.repeat}: {result['cid']}"
    )
    print(f"{'contender':<28} {'MiB/s':>8} {'runs (s)':>24} {'RSS growth':>11}")
    labels = {"sha256": "hashlib.sha256 (baseline)", "cid-1": "meshprov cid, 1 core"}
    for name in runs:
        label = labels.get(name, f"meshprov cid, {cores} cores")
        times = " ".join(f"{t:.2f}" for t in result["all_seconds"][name])
        print(f"{label:<28} {rate[name]:>8.0f} {times:>24} {result['rss_growth_mib'][name]:>8.1f} MiB")
    print(f"tracemalloc peak ({cores} cores): {result['tracemalloc_peak_mib']:.1f} MiB")
    for target, (value, ok) in result["targets"].items():
        print(f"  {'PASS' if ok else 'MISS'}  {target}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
