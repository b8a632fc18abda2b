"""A member's packaging and store put of one update, the path before session 6 against the one-pass path.

One update of ``--mib`` MiB of float32 values (default: 97.2 MiB, the 25.5M-parameter transformer_lm of
benchmarks/round.py), in one process pinned to one core, CPU seconds (user + system, every thread), best of
``--repeat`` runs, each into a fresh local block store (every block new):

* before: the update file as ``write_update_file`` wrote it until session 6 (``ledger.updatefile.write_update``:
  write, fsync, then read and hash it for its CID) → ``put_update`` (the store reads, hashes and writes it
  again as blocks);
* now: ``store_update`` (serialized straight into the store: each byte hashed once and written once, no file);

and three references on the same bytes: one sha-256 pass (the round goal's unit), writing them once to a single
file (write + fsync), and writing them as one file per 256 KiB block without any fsync (what the store's flatfs
layout cannot avoid: a file per block).

    nice -n 10 python benchmarks/member_put.py [--mib 97.2] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BASE = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
CHUNK = 262144


class _Timer:
    """CPU seconds of the ``with`` block (every thread of the process), kept as the best per name."""

    def __init__(self) -> None:
        self.best: dict[str, float] = {}
        self._name = ""
        self._start = 0.0

    def __call__(self, name: str) -> _Timer:
        self._name = name
        return self

    def __enter__(self) -> None:
        self._start = time.process_time()

    def __exit__(self, *exc: object) -> None:
        took = time.process_time() - self._start
        self.best[self._name] = min(self.best.get(self._name, float("inf")), took)


def _one_run(root: Path, rep: int, delta: dict[str, np.ndarray], data: bytes, timer: _Timer) -> None:
    from ledger.content.local_store import LocalStore
    from ledger.updatefile import UpdateMeta, file_tensors, write_update
    from node.packaging import put_update, store_update

    kw: dict[str, Any] = {
        "task": 1,
        "round_": 1,
        "base": BASE,
        "contributor": "0x" + "ab" * 20,
        "num_samples": 1,
    }
    with timer("sha-256 of the update's bytes"):
        hashlib.sha256(data).digest()
    old_store, new_store = LocalStore(root / f"old{rep}"), LocalStore(root / f"new{rep}")
    meta = UpdateMeta(task=1, round=1, base=BASE, contributor=kw["contributor"], num_samples=1)
    with timer("before: update file (ledger.updatefile.write_update: write, then read + hash)"):
        written = write_update(root / f"u{rep}.safetensors", file_tensors(delta), meta)
    with timer("before: put_update"):
        put_update(old_store, written)
    written.path.unlink()
    with timer("now: store_update"):
        stored = store_update(new_store, delta, **kw)
    assert stored.cid == written.cid, (stored, written)
    view = memoryview(data)
    with timer("reference: write once to one file (+ fsync)"):
        fd = os.open(root / f"one{rep}", os.O_WRONLY | os.O_CREAT, 0o644)
        for i in range(0, len(data), CHUNK):
            os.write(fd, view[i : i + CHUNK])
        os.fsync(fd)
        os.close(fd)
    directory = root / f"blocks{rep}"
    directory.mkdir()
    with timer("reference: write once as a file per block (no fsync)"):
        for i in range(0, len(data), CHUNK):
            fd = os.open(directory / str(i), os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, view[i : i + CHUNK])
            os.close(fd)


def run(mib: float, repeat: int) -> dict[str, Any]:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    n = int(mib * (1 << 20)) // 4
    rng = np.random.default_rng(0)
    parts = 8
    delta = {f"layer{i}": rng.standard_normal(n // parts).astype(np.float32) for i in range(parts)}
    timer = _Timer()
    with tempfile.TemporaryDirectory(prefix="meshprov-bench-member-put-") as tmp:
        for rep in range(repeat):
            for v in delta.values():  # new bytes each run: every block is new to its store
                np.add(v, np.float32(1), out=v)
            data = b"".join(bytes(v.data) for v in delta.values())
            _one_run(Path(tmp), rep, delta, data, timer)
    best = timer.best
    best["before: both"] = (
        best["before: update file (ledger.updatefile.write_update: write, then read + hash)"]
        + best["before: put_update"]
    )
    sha = best["sha-256 of the update's bytes"]
    return {
        "bytes": n // parts * parts * 4,
        "repeat": repeat,
        "cpu_best": best,
        "x_sha256": {k: v / sha for k, v in best.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=float, default=97.2, help="update size in MiB (default 97.2)")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best CPU time of each is kept")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.mib <= 0 or args.repeat < 1:
        parser.error("--mib must be positive and --repeat at least 1")
    result = run(args.mib, args.repeat)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"one update of {result['bytes'] / 1e6:.1f} MB, CPU seconds, best of {result['repeat']}")
    for name, cpu in result["cpu_best"].items():
        print(f"{name:<58} {cpu:7.3f} s  {result['x_sha256'][name]:6.2f}× sha-256")
    return 0


if __name__ == "__main__":
    sys.exit(main())
