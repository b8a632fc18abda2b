"""Trustless-gateway fetch of one update from a gateway on 127.0.0.1 vs one sha-256 pass (issue 15 goal).

`python benchmarks/gateway.py [--mib 95] [--repeat 3] [--json]`: puts MIB of random bytes in a local block store,
serves it with `meshprov store serve` (its own process), and fetches it with `ledger.content.gateway.gateway_get`
(raw blocks, every block hashed, Kubo's layout checked) in this process pinned to one core. Reports the client's
CPU and wall time, best of --repeat, against sha-256 over the same bytes in the same process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=95)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from ledger.content.gateway import gateway_get
    from ledger.content.local_store import LocalStore

    cores = sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="meshprov-gateway-bench-") as tmp:
        data = os.urandom(args.mib << 20)
        cid = LocalStore(Path(tmp) / "blocks").put_bytes(data)
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "meshprov"),
                "store",
                "serve",
                "--store-dir",
                f"{tmp}/blocks",
                "--port",
                "0",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stderr is not None
            port = re.search(r":(\d+)/ipfs", server.stderr.readline())
            assert port, "the server did not start"
            url = f"http://127.0.0.1:{port.group(1)}"
            if len(cores) > 1:  # the server on the other core: the goal is the fetching host's one core
                os.sched_setaffinity(server.pid, set(cores[1:]))
            os.sched_setaffinity(0, {cores[0]})
            results: dict[str, Any] = {"bytes": len(data), "cid": cid}
            for name in ("sha256", "gateway"):
                best: dict[str, float] = {}
                for _ in range(args.repeat):
                    wall, cpu = time.perf_counter(), time.process_time()
                    if name == "sha256":
                        h = hashlib.sha256()
                        view = memoryview(data)
                        for i in range(0, len(data), 1 << 20):
                            h.update(view[i : i + (1 << 20)])
                    else:
                        size = sum(len(chunk) for chunk in gateway_get([url], cid))
                        assert size == len(data)
                    took = {"cpu_seconds": time.process_time() - cpu, "seconds": time.perf_counter() - wall}
                    if not best or took["cpu_seconds"] < best["cpu_seconds"]:
                        best = took
                results[name] = best
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
            if server.stderr is not None:
                server.stderr.close()
    sha = results["sha256"]["cpu_seconds"]
    if args.json:
        print(json.dumps(results))
        return
    for name in ("sha256", "gateway"):
        r = results[name]
        rate = results["bytes"] / r["cpu_seconds"] / 1e9
        print(
            f"{name:8s} {rate:.2f} GB/s CPU ({sha / r['cpu_seconds']:.2f}x sha-256), wall {r['seconds']:.2f} s"
        )


if __name__ == "__main__":
    main()
