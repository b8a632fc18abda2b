"""The worker's fetch-and-verify of an update, one pass from the store's verified stream, against sha-256 in the
same run (goal: >= 0.9x one sha-256 pass on one core).

The same round as benchmarks/verify.py (N updates x 25M float32 parameters in a local block store), each measure
in a child process pinned to one core, CPU seconds, the best of ``--repeat`` passes:

* ``sha256``: sha-256 of the update files (1 MiB reads): the floor;
* ``read``: the local store's verified read alone (every block hashed once as it is read, Kubo's layout checked);
* ``stream``: ``worker.fetch.fetch_checked`` with ``StreamChecks``: that read, the header parsed within its
  bound, metadata and layout checked, every value scanned (finite, norm, fingerprint) as it arrives — the
  per-update verdict, nothing written;
* ``stream+vector``: the same, also writing the update's vector file on the way (what a validator runs now:
  the copy checks, the scorer and the evaluation read that file; no update file is written);
* ``file`` (before): ``worker.fetch.fetch`` (the update file written, fsynced, renamed) then
  ``ledger.checks.judge_update`` with the proven digest (the file read again to scan it);
* ``file+vector`` (before): that, then ``worker.vectorfiles.vector_file`` (the file read a third time to write
  the vector): what a validator ran per update before the one-pass path.

    python benchmarks/fetch_verify.py                # 4 updates x 25M parameters
    python benchmarks/fetch_verify.py --updates 16 --repeat 3
    python benchmarks/fetch_verify.py --small --json
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from verify import FULL, ROUND, SMALL, TASK, write_round  # benchmarks/verify.py: the same round

PARTS = ("sha256", "read", "stream", "stream+vector", "file", "file+vector", "stream-2threads")
GOAL = 0.9
LABELS = {
    "sha256": "sha-256 of the files (the floor)",
    "read": "store's verified read alone (each block hashed once, layout checked)",
    "stream": "fetch_checked: verified read + header + every check, in one pass, nothing written",
    "stream+vector": "fetch_checked + the vector written in-stream (the validator's path now)",
    "file": "before: fetch to a file (write, fsync, rename) + judge_update (file read again)",
    "file+vector": "before: that + vector_file (file read a third time): the validator's path before",
    "stream-2threads": "NOT the goal's measure (both cores, wall clock): read+hash || checks in two threads",
}


def child(job: dict[str, Any], part: str, repeat: int) -> dict[str, Any]:
    from ledger.aggregation.source import describe_source
    from ledger.checks import ChainRecord, CheckLimits, base_norm, judge_update
    from ledger.checks.update_checks import StreamChecks
    from ledger.content import cid_to_digest, digest_to_cid
    from ledger.content.local_store import LocalStore
    from ledger.updatefile import UpdateFile
    from worker.fetch import fetch, fetch_checked, remove
    from worker.vectorfiles import VectorWriter, vector_file

    if part != "stream-2threads":  # the pipeline row is about wall time on two cores
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import eth_utils  # noqa: F401  (imported lazily by the metadata parser: not part of the measurement)

    store = LocalStore(Path(job["root"]) / "blocks")
    limits = CheckLimits(max_update_bytes=1 << 40)
    scratch = Path(job["root"]) / f"scratch-{part}"
    scratch.mkdir(exist_ok=True)
    total = sum(Path(u["path"]).stat().st_size for u in job["updates"])

    def one_round() -> None:
        with UpdateFile.open(job["base"]) as base:
            layout = describe_source(base)
            scale = base_norm(base, layout)  # once per round, as the worker does
            for u in job["updates"]:
                digest = bytes.fromhex(u["digest"])
                record = ChainRecord(
                    digest, TASK, ROUND, cid_to_digest(job["base_cid"]), u["address"], u["n"]
                )
                vector = scratch / "vector.npy"
                if part == "sha256":
                    with open(u["path"], "rb", buffering=0) as f:
                        h = hashlib.sha256()
                        while block := f.read(1 << 20):
                            h.update(block)
                elif part == "read":
                    for _ in store.get(digest_to_cid(digest), max_bytes=limits.max_update_bytes):
                        pass
                elif part == "stream-2threads":
                    judge = StreamChecks(
                        store.stat(digest_to_cid(digest)).size,
                        base=base,
                        record=record,
                        limits=limits,
                        base_layout=layout,
                        base_scale=scale,
                    )
                    _pipeline(store.get(digest_to_cid(digest), max_bytes=limits.max_update_bytes), judge.feed)
                    verdict = judge.finish(digest)
                    assert verdict.accepted, verdict
                elif part.startswith("stream"):
                    sink = VectorWriter(vector, layout) if part == "stream+vector" else None

                    def checks(size: int, record: Any = record, sink: Any = sink) -> StreamChecks:
                        return StreamChecks(
                            size,
                            base=base,
                            record=record,
                            limits=limits,
                            base_layout=layout,
                            base_scale=scale,
                            sink=sink,
                        )

                    got = fetch_checked(store, digest, max_bytes=limits.max_update_bytes, checks=checks)
                    assert got.verdict is not None and got.verdict.accepted, got.verdict  # noqa: PT018
                    if sink is not None:
                        sink.finish()
                        remove(vector)
                else:
                    dest = scratch / "update.safetensors"
                    got = fetch(store, digest, dest, max_bytes=limits.max_update_bytes)
                    assert got.rejected is None
                    judged = judge_update(
                        dest,
                        base=base,
                        layout=layout,
                        record=record,
                        limits=limits,
                        digest=got.digest,
                        base_scale=scale,
                    )
                    assert judged.verdict.accepted, judged.verdict.detail
                    if part == "file+vector":
                        with UpdateFile.open(dest) as update:
                            vector_file(update, layout, vector)
                        remove(vector)
                    remove(dest)

    best: dict[str, Any] = {}
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        one_round()
        took = {
            "seconds": time.perf_counter() - wall,
            "cpu_seconds": time.process_time() - cpu,
            "bytes": total,
        }
        if not best or took["cpu_seconds"] < best["cpu_seconds"]:
            best = took
    return best


def _pipeline(chunks: Any, feed: Any) -> None:
    """Read and hash in this thread (the store's walk; hashlib releases the GIL), feed the checks in another."""
    import queue
    import threading

    pieces: queue.Queue[Any] = queue.Queue(maxsize=8)  # bounded: at most 8 blocks (2 MiB) in flight

    def consume() -> None:
        while (piece := pieces.get()) is not None:
            feed(piece)

    worker = threading.Thread(target=consume)
    worker.start()
    try:
        for chunk in chunks:
            pieces.put(chunk)
    finally:
        pieces.put(None)
        worker.join()


def run(small: bool, updates: int, repeat: int) -> dict[str, Any]:
    size = dict(SMALL if small else FULL)
    size["n"] = updates
    with tempfile.TemporaryDirectory(prefix="meshprov-fetch-bench-") as tmp:
        job = write_round(Path(tmp), size["n"], size["params"])
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job))
        results: dict[str, Any] = {"config": {**size, "repeat": repeat}}
        for part in PARTS:
            done = subprocess.run(
                [sys.executable, __file__, "--child", part, str(job_file), str(repeat)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode:
                raise SystemExit(f"{part} failed:\n{done.stderr[-3000:]}")
            results[part] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(Path(sys.argv[3]).read_text()), sys.argv[2], int(sys.argv[4]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="1M-parameter models: a quick run")
    parser.add_argument("--updates", type=int, default=4, help="number of updates (default 4)")
    parser.add_argument("--repeat", type=int, default=3, help="passes per measure; the fastest is reported")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = parser.parse_args()
    results = run(args.small, args.updates, args.repeat)
    sha = results["sha256"]["bytes"] / results["sha256"]["cpu_seconds"]
    ratio = {p: results[p]["bytes"] / results[p]["cpu_seconds"] / sha for p in PARTS}
    if args.json:
        print(json.dumps({"results": results, "vs_sha256": ratio}, indent=2))
    else:
        cfg = results["config"]
        print(
            f"{cfg['n']} updates x {cfg['params'] / 1e6:.0f}M float32 parameters, one core, CPU, best of {cfg['repeat']}\n"
        )
        width = max(len(v) for v in LABELS.values())
        print(f"{'measure':<{width}}  {'CPU s':>6}  {'GB/s':>5}  {'x sha-256':>9}  {'wall s':>6}")
        for p in PARTS:
            r = results[p]
            print(
                f"{LABELS[p]:<{width}}  {r['cpu_seconds']:6.3f}  {r['bytes'] / r['cpu_seconds'] / 1e9:5.2f}  {ratio[p]:9.2f}"
                f"  {r['seconds']:6.3f}"
            )
        print(
            f"\nfetch-and-verify (stream) vs the goal of {GOAL}x: {'pass' if ratio['stream'] >= GOAL else 'FAIL'}"
        )
    return 0 if ratio["stream"] >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
