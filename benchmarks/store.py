"""Local content store: put and get of a large file, against a plain fsynced file copy in the same run.

Writes a file of random bytes (1 GiB by default) to a temp dir, then measures, each in its own subprocess and
several times over (the best run counts):

* baseline: ``shutil.copyfile`` of the file, then fsync (the store fsyncs every block);
* ``LocalStore.put_file`` into an empty store (hash with every core, write ~4096 fsynced blocks, root last);
* ``put_file`` again into the store that already holds it (deduplicated: hashing and a stat per block);
* ``fetch_to_file`` of the CID back out of the store (every block verified, written to a temp file, renamed).

Reported: throughput and peak memory growth (peak RSS over RSS before the operation). No target is set by the
issue for these; the copy is the yardstick. Everything is deleted at the end.

    python benchmarks/store.py                 # 1 GiB, 3 runs each
    python benchmarks/store.py --size-mib 256 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cid import _reset_peak, _rss_kib, write_file  # noqa: E402


def child(kind: str, src: str, workdir: str) -> dict[str, Any]:
    from ledger.content.local_store import LocalStore
    from ledger.content.store import fetch_to_file

    work = Path(workdir)
    store_dir = work / "store"
    out = work / "out.bin"
    if kind == "put":
        shutil.rmtree(store_dir, ignore_errors=True)
    # Start with no dirty pages, so one measurement's writeback does not throttle the next one.
    os.sync()
    _reset_peak()
    before = _rss_kib("VmRSS")
    start = time.perf_counter()
    cid = None
    if kind == "copy":
        shutil.copyfile(src, out)
        with open(out, "rb+") as f:
            os.fsync(f.fileno())
    elif kind in ("put", "put-again"):
        cid = LocalStore(store_dir).put_file(src)
    elif kind == "get":
        store = LocalStore(store_dir)
        cid = (work / "cid").read_text().strip()
        fetch_to_file(store, cid, out)
    seconds = time.perf_counter() - start
    if kind == "put":
        (work / "cid").write_text(str(cid))
    if out.exists():
        out.unlink()
    return {
        "kind": kind,
        "seconds": seconds,
        "rss_growth_mib": (_rss_kib("VmHWM") - before) / 1024,
        "cid": cid,
    }


def run_child(kind: str, src: Path, workdir: Path) -> dict[str, Any]:
    args = [sys.executable, __file__, "--child", kind, "--src", str(src), "--work", str(workdir)]
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    return dict(json.loads(proc.stdout))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the test file (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best counts")
    parser.add_argument("--dir", type=Path, default=None, help="where to work (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.src, args.work)))
        return 0

    size = args.size_mib * MIB
    kinds = ("copy", "put", "put-again", "get")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="meshprov-bench-store-") as tmp:
        work = Path(tmp)
        src = work / "data.bin"
        write_file(src, size)
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for _ in range(args.repeat):
            for kind in kinds:
                runs[kind].append(run_child(kind, src, work))
    cids = {r["cid"] for k in ("put", "put-again", "get") for r in runs[k]}
    assert len(cids) == 1, f"different CIDs: {cids}"
    best = {k: min(rs, key=lambda r: r["seconds"]) for k, rs in runs.items()}
    result = {
        "size_mib": args.size_mib,
        "cid": cids.pop(),
        "throughput_mib_s": {k: size / MIB / r["seconds"] for k, r in best.items()},
        "all_seconds": {k: [round(r["seconds"], 3) for r in rs] for k, rs in runs.items()},
        "rss_growth_mib": {k: max(r["rss_growth_mib"] for r in rs) for k, rs in runs.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    labels = {
        "copy": "copyfile + fsync (baseline)",
        "put": "LocalStore.put_file",
        "put-again": "put_file, already stored",
        "get": "fetch_to_file (verified)",
    }
    print(f"Local store, {args.size_mib} MiB file, best of {args.repeat}: {result['cid']}")
    print(f"{'operation':<30} {'MiB/s':>8} {'runs (s)':>22} {'RSS growth':>11}")
    for k in kinds:
        times = " ".join(f"{t:.2f}" for t in result["all_seconds"][k])
        rate = result["throughput_mib_s"][k]
        print(f"{labels[k]:<30} {rate:>8.0f} {times:>22} {result['rss_growth_mib'][k]:>8.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
