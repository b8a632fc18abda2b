"""Trustless-gateway fetch of one update from a gateway on 127.0.0.1 vs one sha-256 pass (issue 15 goal).

`python benchmarks/gateway.py [--mib 95] [--repeat 5] [--json]`: puts MIB of random bytes in a local block store,
serves it with `meshprov store serve` (its own process, on the other core), and fetches it in this process pinned
to one core, with `ledger.content.gateway.gateway_get` (raw blocks: one request per block; CAR: the whole DAG in
one request), every block hashed and Kubo's layout checked, and with `fetch_to_file` through a `GatewayStore`
(CAR, written to a file and fsynced). Two references in the same run: sha-256 over the same bytes in memory (the
goal's baseline), and the floor any fetch over a socket pays here: the same bytes sent by another process over
plain TCP on 127.0.0.1, received into a reused 2 MiB buffer and hashed, with no HTTP, CAR or DAG at all.
Reports the client's CPU seconds (user + system, this process only) and wall time, best of --repeat.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FLOOR_SEGMENT = 2 * 1024 * 1024


def _floor_server(data: bytes, repeat: int, core: int | None) -> tuple[int, int]:
    """A child process that sends ``data`` ``repeat`` times over one TCP connection; (pid, port)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            if core is not None:
                os.sched_setaffinity(0, {core})
            conn, _ = listener.accept()
            for _ in range(repeat):
                conn.sendall(data)
            conn.close()
        finally:
            os._exit(0)
    listener.close()
    return pid, port


def _floor_fetch(sock: socket.socket, size: int) -> None:
    buf = bytearray(FLOOR_SEGMENT)
    view = memoryview(buf)
    got = 0
    while got < size:
        filled = 0
        while filled < len(buf) and got + filled < size:
            n = sock.recv_into(view[filled:], min(len(buf) - filled, size - got - filled))
            if not n:
                raise RuntimeError("floor sender stopped early")
            filled += n
        for i in range(0, filled, 262144):
            hashlib.sha256(view[i : min(filled, i + 262144)])
        got += filled


def _best(fn: Callable[[], None], repeat: int) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        took = {"cpu_seconds": time.process_time() - cpu, "seconds": time.perf_counter() - wall}
        if not best or took["cpu_seconds"] < best["cpu_seconds"]:
            best = took
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=95)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from ledger.content.gateway import GatewayStore, gateway_get
    from ledger.content.local_store import LocalStore
    from ledger.content.store import fetch_to_file

    cores = sorted(os.sched_getaffinity(0))
    other = cores[1] if len(cores) > 1 else None
    with tempfile.TemporaryDirectory(prefix="meshprov-gateway-bench-") as tmp:
        data = os.urandom(args.mib << 20)
        cid = LocalStore(Path(tmp) / "blocks").put_bytes(data)
        floor_pid, floor_port = _floor_server(data, args.repeat, other)
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
            if other is not None:  # the server on the other core: the goal is the fetching host's one core
                os.sched_setaffinity(server.pid, {other})
            os.sched_setaffinity(0, {cores[0]})
            results: dict[str, Any] = {"bytes": len(data), "cid": cid, "mib": args.mib}
            view = memoryview(data)

            def sha256() -> None:
                h = hashlib.sha256()
                for i in range(0, len(data), 1 << 20):
                    h.update(view[i : i + (1 << 20)])

            floor_sock = socket.create_connection(("127.0.0.1", floor_port))

            def floor() -> None:
                _floor_fetch(floor_sock, len(data))

            def fetch(car: bool) -> Callable[[], None]:
                def run() -> None:
                    size = sum(len(chunk) for chunk in gateway_get([url], cid, car=car))
                    assert size == len(data)

                return run

            mine = LocalStore(Path(tmp) / "mine")
            store = GatewayStore(mine, [url])
            dest = Path(tmp) / "update.bin"

            def to_file() -> None:
                assert fetch_to_file(store, cid, dest, max_bytes=len(data)) == len(data)

            results["sha256"] = _best(sha256, args.repeat)
            results["socket_floor"] = _best(floor, args.repeat)
            floor_sock.close()
            results["gateway_raw"] = _best(fetch(False), args.repeat)
            results["gateway_car"] = _best(fetch(True), args.repeat)
            results["gateway_car_to_file"] = _best(to_file, args.repeat)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
            if server.stderr is not None:
                server.stderr.close()
            os.waitpid(floor_pid, 0)
    sha = results["sha256"]["cpu_seconds"]
    for name in ("sha256", "socket_floor", "gateway_raw", "gateway_car", "gateway_car_to_file"):
        results[name]["vs_sha256"] = round(sha / results[name]["cpu_seconds"], 3)
    if args.json:
        print(json.dumps(results))
        return
    print(f"{args.mib} MiB, client on one core, best of {args.repeat} by CPU")
    print(f"{'':22s} {'CPU s':>7s} {'GB/s CPU':>9s} {'vs sha-256':>10s} {'wall s':>7s}")
    for name in ("sha256", "socket_floor", "gateway_raw", "gateway_car", "gateway_car_to_file"):
        r = results[name]
        rate = results["bytes"] / r["cpu_seconds"] / 1e9
        print(f"{name:22s} {r['cpu_seconds']:7.3f} {rate:9.2f} {r['vs_sha256']:9.2f}x {r['seconds']:7.3f}")


if __name__ == "__main__":
    main()
