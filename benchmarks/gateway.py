"""Trustless-gateway fetch of one update from a gateway on 127.0.0.1 vs one sha-256 pass (issue 15 goal).

`python benchmarks/gateway.py [--mib 95] [--repeat 5] [--json]`: puts MIB of random bytes in a local block store,
serves it with `meshprov store serve` (its own process, on the other core), and fetches it in this process pinned
to one core, with `ledger.content.gateway.gateway_get` (raw blocks: one request per block; CAR: the whole DAG in
one request), every block hashed and Kubo's layout checked, and with `fetch_to_file` through a `GatewayStore`
(CAR, written to a file and fsynced). Two references in the same run: sha-256 over the same bytes in memory (the
goal's baseline), and the floor any fetch over a socket pays here: the same bytes sent by another process over
plain TCP on 127.0.0.1, received into a reused 2 MiB buffer and hashed, with no HTTP, CAR or DAG at all.
Two more sha-256 references: a file of the same bytes in the page cache (`hashlib.file_digest`) and the hash
alone (a 2 MiB buffer hashed until as many bytes passed, never leaving the cache), since on some CPUs the pass
over bytes in memory runs well below the hash's own speed.
Reports the client's CPU seconds (user + system, this process only) and wall time, best of --repeat.

Then the goal's own measure, a speed: bytes fetched and verified per wall-clock second against sha-256's speed on
one core (the same bytes in memory, pinned to one core, best of --repeat by wall time). For it the fetching
process is not pinned (the CAR fetch hashes in a second thread while it receives), best of --repeat by wall time,
with `gateway_get` (read-ahead on, and off: `verify_ahead=0`) and `fetch_to_file`, from the loopback server and,
"from a peer host", from a server in another network namespace over a veth pair and bridge (made and removed by
`lab.netns.create_network`, on a 10.231.x.0/24 it picks, as root only; `--peer loopback` skips it), and from a
sender that has the whole CAR in memory (a server that costs nearly nothing: the client's own speed). The client
CPU column there is both of its threads. Two threads hashing at once against one tell how many cores' worth the
process gets at the time (overlapping receiving and hashing needs close to two).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

FLOOR_SEGMENT = 2 * 1024 * 1024
MIB = 1 << 20
NAMES = (
    "sha256",
    "sha256_in_cache",
    "sha256_file",
    "socket_recv_only",
    "socket_floor",
    "socket_floor_waitall",
    "socket_pipeline_2threads",
    "gateway_raw",
    "gateway_car",
    "gateway_car_to_file",
)


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


def _recv_only(sock: socket.socket, size: int) -> None:
    """The kernel's copy alone: the same bytes received into a reused buffer, not hashed."""
    view = memoryview(bytearray(FLOOR_SEGMENT))
    got = 0
    while got < size:
        n = sock.recv_into(view, min(len(view), size - got))
        if not n:
            raise RuntimeError("floor sender stopped early")
        got += n


def _floor_waitall(sock: socket.socket, size: int) -> None:
    """The floor with whole 2 MiB segments: ``MSG_WAITALL`` (one wake-up per segment) and one hash call each."""
    view = memoryview(bytearray(FLOOR_SEGMENT))
    got = 0
    while got < size:
        want = min(len(view), size - got)
        n = sock.recv_into(view, want, socket.MSG_WAITALL)
        if n != want:
            raise RuntimeError("floor sender stopped early")
        hashlib.sha256(view[:n])
        got += n


def _floor_pipeline(sock: socket.socket, size: int) -> None:
    """Two threads: this one receives into a ring of 2 MiB buffers, the other hashes them (hashlib releases the
    GIL), so receiving and hashing overlap when the threads have two cores."""
    import queue
    import threading

    ring = [memoryview(bytearray(FLOOR_SEGMENT)) for _ in range(4)]
    free: queue.Queue[int] = queue.Queue()
    full: queue.Queue[tuple[int, int]] = queue.Queue()
    for i in range(len(ring)):
        free.put(i)

    def hasher() -> None:
        h = hashlib.sha256()
        while (item := full.get())[1]:
            h.update(ring[item[0]][: item[1]])
            free.put(item[0])

    worker = threading.Thread(target=hasher)
    worker.start()
    got = 0
    try:
        while got < size:
            i = free.get()
            want = min(FLOOR_SEGMENT, size - got)
            n = sock.recv_into(ring[i], want, socket.MSG_WAITALL)
            if n != want:
                raise RuntimeError("floor sender stopped early")
            full.put((i, n))
            got += n
    finally:
        full.put((0, 0))
        worker.join()


def _best(fn: Callable[[], None], repeat: int, by: str = "cpu_seconds") -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        took = {"cpu_seconds": time.process_time() - cpu, "seconds": time.perf_counter() - wall}
        if not best or took[by] < best[by]:
            best = took
    return best


WALL_NAMES = ("car_read_ahead", "car_one_thread", "car_to_file", "car_memory_sender", "car_memory_one_thread")


def _memory_sender(store_dir: Path, cid: str) -> tuple[int, int]:
    """A child process answering every request with the CAR of ``cid`` from memory (one ``sendall``): a server that
    costs nearly nothing, to see the client's own speed. (pid, port); killed by the caller."""
    from ledger.content.car import CAR, dag_blocks, write_car
    from ledger.content.local_store import LocalStore
    from ledger.content.multiformats import CID

    store, root = LocalStore(store_dir), CID.parse(cid).digest

    def read(digest: bytes) -> bytes:
        return store._read_block(digest, root)

    car = b"".join(
        bytes(p) for p in write_car(CID(root).multihash, dag_blocks(root, read(root), read, dups=True))
    )
    answer = (
        f"HTTP/1.1 200 OK\r\nContent-Type: {CAR}; version=1; order=dfs; dups=y\r\nConnection: close\r\n\r\n".encode()
        + car
    )
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            while True:
                conn, _ = listener.accept()
                request = b""
                while b"\r\n\r\n" not in request and (more := conn.recv(4096)):
                    request += more
                with contextlib.suppress(OSError):
                    conn.sendall(answer)
                conn.close()
        finally:
            os._exit(0)
    listener.close()
    return pid, port


def _wall_rows(
    url: str, cid: str, size: int, repeat: int, *, files: bool = True
) -> dict[str, dict[str, float]]:
    """The goal's measure: fetches of ``cid`` from ``url`` in this process (not pinned), best of ``repeat`` by
    wall time; each row's ``cpu_seconds`` is this process's (all its threads)."""
    from ledger.content.gateway import VERIFY_AHEAD, GatewayStore, gateway_get
    from ledger.content.local_store import LocalStore
    from ledger.content.store import fetch_to_file

    def fetch(verify_ahead: int) -> Callable[[], None]:
        def run() -> None:
            assert sum(len(chunk) for chunk in gateway_get([url], cid, verify_ahead=verify_ahead)) == size

        return run

    with tempfile.TemporaryDirectory(prefix="meshprov-gateway-bench-client-") as tmp:
        store = GatewayStore(LocalStore(Path(tmp) / "mine"), [url])
        dest = Path(tmp) / "update.bin"

        def to_file() -> None:
            assert fetch_to_file(store, cid, dest, max_bytes=size) == size

        rows = {
            "car_read_ahead": _best(fetch(VERIFY_AHEAD), repeat, by="seconds"),
            "car_one_thread": _best(fetch(0), repeat, by="seconds"),
        }
        if files:
            rows["car_to_file"] = _best(to_file, repeat, by="seconds")
        return rows


@contextlib.contextmanager
def _peer_server(blocks: str, peer: str) -> Iterator[tuple[str, list[str], str]]:
    """A `meshprov store serve` of ``blocks`` in a network namespace of its own, and the argv prefix running a
    command in a second namespace that reaches it over a veth pair and a bridge: (url, prefix, how)."""
    from lab.netns import create_network, unavailable_reason

    reason = unavailable_reason()
    if peer == "loopback" or reason is not None:
        yield "", [], f"none ({reason or '--peer loopback'})"
        return
    with tempfile.TemporaryDirectory(prefix="meshprov-gateway-bench-netns-") as tmp:
        net = create_network(["server", "client"], registry=Path(tmp) / "netns.json")
        try:
            address = net.host("server").address
            server = _serve(blocks, address, net.exec_prefix("server"))
            try:
                how = f"server {address} and client {net.host('client').address} in two namespaces ({net.subnet})"
                yield f"http://{address}:{server[1]}", net.exec_prefix("client"), how
            finally:
                _stop(server[0])
        finally:
            net.remove()


def _serve(blocks: str, host: str, prefix: list[str]) -> tuple[subprocess.Popen[str], int]:
    meshprov = str(Path(sys.executable).parent / "meshprov")
    cmd = [*prefix, meshprov, "store", "serve", "--store-dir", blocks, "--host", host, "--port", "0"]
    server = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    port = re.search(r":(\d+)/ipfs", server.stderr.readline())
    if not port:
        _stop(server)
        raise RuntimeError("the server did not start")
    return server, int(port.group(1))


def _stop(server: subprocess.Popen[str]) -> None:
    """Ctrl-C for the server; SIGKILL if it does not stop (SIGINT is ignored in a shell's background job)."""
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=30)
    if server.stderr is not None:
        server.stderr.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=95)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--peer", choices=("auto", "loopback"), default="auto", help="auto: a namespace peer if root"
    )
    parser.add_argument(
        "--fetch-from", help=argparse.SUPPRESS
    )  # the client half, run in the peer's namespace
    parser.add_argument("--cid", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fetch_from:
        print(json.dumps(_wall_rows(args.fetch_from, args.cid, args.mib * MIB, args.repeat)))
        return
    from ledger.content.gateway import GatewayStore, gateway_get
    from ledger.content.local_store import LocalStore
    from ledger.content.store import fetch_to_file

    cores = sorted(os.sched_getaffinity(0))
    other = cores[1] if len(cores) > 1 else None
    with tempfile.TemporaryDirectory(prefix="meshprov-gateway-bench-") as tmp:
        data = os.urandom(args.mib << 20)
        cid = LocalStore(Path(tmp) / "blocks").put_bytes(data)
        floor_pid, floor_port = _floor_server(data, 4 * args.repeat, other)
        server, port = _serve(f"{tmp}/blocks", "127.0.0.1", [])
        try:
            url = f"http://127.0.0.1:{port}"
            if other is not None:  # the server on the other core: the goal is the fetching host's one core
                os.sched_setaffinity(server.pid, {other})
            os.sched_setaffinity(0, {cores[0]})
            results: dict[str, Any] = {"bytes": len(data), "cid": cid, "mib": args.mib}
            view = memoryview(data)

            def sha256() -> None:
                h = hashlib.sha256()
                for i in range(0, len(data), 1 << 20):
                    h.update(view[i : i + (1 << 20)])

            piece = memoryview(os.urandom(FLOOR_SEGMENT))

            # The hash alone: as many bytes as the update, in 256 KiB pieces of one 2 MiB buffer that stays in cache.
            def sha256_in_cache() -> None:
                for i in range(0, len(data), 262144):
                    start = i % FLOOR_SEGMENT
                    hashlib.sha256(piece[start : start + min(262144, len(data) - i)])

            update_file = Path(tmp) / "update-in-page-cache.bin"
            update_file.write_bytes(data)

            def sha256_file() -> (
                None
            ):  # as a user hashes a file: `hashlib.file_digest` of it, in the page cache
                with update_file.open("rb") as f:
                    hashlib.file_digest(f, "sha256")

            floor_sock = socket.socket()
            floor_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)  # before connect: the window
            floor_sock.connect(("127.0.0.1", floor_port))

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
            results["sha256_in_cache"] = _best(sha256_in_cache, args.repeat)
            results["sha256_file"] = _best(sha256_file, args.repeat)
            results["socket_floor"] = _best(floor, args.repeat)
            results["socket_recv_only"] = _best(lambda: _recv_only(floor_sock, len(data)), args.repeat)
            results["socket_floor_waitall"] = _best(
                lambda: _floor_waitall(floor_sock, len(data)), args.repeat
            )
            # Not the goal's measure (that is one core): the client's threads may use both cores here.
            os.sched_setaffinity(0, set(cores))
            results["socket_pipeline_2threads"] = _best(
                lambda: _floor_pipeline(floor_sock, len(data)), args.repeat
            )
            os.sched_setaffinity(0, {cores[0]})
            floor_sock.close()
            results["gateway_raw"] = _best(fetch(False), args.repeat)
            results["gateway_car"] = _best(fetch(True), args.repeat)
            results["gateway_car_to_file"] = _best(to_file, args.repeat)
            # The goal's measure: speeds, the client not pinned.
            results["sha256_one_core"] = _best(sha256, args.repeat, by="seconds")
            results["sha256_in_cache_one_core"] = _best(sha256_in_cache, args.repeat, by="seconds")
            results["sha256_file_one_core"] = _best(sha256_file, args.repeat, by="seconds")
            os.sched_setaffinity(0, set(cores))

            def sha256_twice() -> None:  # two threads at once: how many cores this process gets right now
                threads = [threading.Thread(target=sha256) for _ in range(2)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()

            results["sha256_two_threads"] = _best(sha256_twice, args.repeat, by="seconds")
            os.sched_setaffinity(server.pid, set(cores))
            results["loopback"] = _wall_rows(url, cid, len(data), args.repeat)
            sender, sender_port = _memory_sender(Path(tmp) / "blocks", cid)
            try:
                canned = _wall_rows(
                    f"http://127.0.0.1:{sender_port}", cid, len(data), args.repeat, files=False
                )
            finally:
                os.kill(sender, signal.SIGKILL)
                os.waitpid(sender, 0)
            results["loopback"]["car_memory_sender"] = canned["car_read_ahead"]
            results["loopback"]["car_memory_one_thread"] = canned["car_one_thread"]
            with _peer_server(f"{tmp}/blocks", args.peer) as (peer_url, prefix, how):
                results["peer"] = {"how": how}
                if peer_url:
                    sizes = ["--mib", str(args.mib), "--repeat", str(args.repeat)]
                    client = subprocess.run(
                        [*prefix, sys.executable, __file__, "--fetch-from", peer_url, "--cid", cid, *sizes],
                        capture_output=True,
                        text=True,
                        check=True,
                        timeout=600,
                    )
                    results["peer"].update(json.loads(client.stdout.splitlines()[-1]))
        finally:
            _stop(server)
            os.waitpid(floor_pid, 0)
    sha = results["sha256"]["cpu_seconds"]
    for name in NAMES:
        results[name]["vs_sha256"] = round(sha / results[name]["cpu_seconds"], 3)
    sha_speed = results["bytes"] / MIB / results["sha256_one_core"]["seconds"]
    results["sha256_one_core"]["mib_per_s"] = round(sha_speed, 1)
    cached_speed = results["bytes"] / MIB / results["sha256_in_cache_one_core"]["seconds"]
    results["sha256_in_cache_one_core"]["mib_per_s"] = round(cached_speed, 1)
    file_speed = results["bytes"] / MIB / results["sha256_file_one_core"]["seconds"]
    results["sha256_file_one_core"]["mib_per_s"] = round(file_speed, 1)
    two = results["sha256_two_threads"]["seconds"]
    results["cores_free"] = round(2 * results["sha256_one_core"]["seconds"] / two, 2)
    for where in ("loopback", "peer"):
        for name in WALL_NAMES:
            if name in results[where]:
                row = results[where][name]
                row["mib_per_s"] = round(results["bytes"] / MIB / row["seconds"], 1)
                row["vs_sha256_speed"] = round(row["mib_per_s"] / sha_speed, 3)
                row["vs_sha256_in_cache_speed"] = round(row["mib_per_s"] / cached_speed, 3)
                row["vs_sha256_file_speed"] = round(row["mib_per_s"] / file_speed, 3)
                row["vs_sha256"] = round(sha / row["cpu_seconds"], 3)
    if args.json:
        print(json.dumps(results))
        return
    print(f"{args.mib} MiB, client on one core, best of {args.repeat} by CPU")
    print(f"{'':24s} {'CPU s':>7s} {'GB/s CPU':>9s} {'vs sha-256':>10s} {'wall s':>7s}")
    for name in NAMES:
        r = results[name]
        rate = results["bytes"] / r["cpu_seconds"] / 1e9
        print(f"{name:24s} {r['cpu_seconds']:7.3f} {rate:9.2f} {r['vs_sha256']:9.2f}x {r['seconds']:7.3f}")
    print()
    print(
        f"The goal's measure: fetched-and-verified MiB per wall second, client not pinned, best of {args.repeat}"
    )
    print(
        f"by wall; sha-256 on one core: {results['sha256_one_core']['seconds']:.3f} s = {sha_speed:.0f} MiB/s"
        f" (in memory); {results['sha256_in_cache_one_core']['seconds']:.3f} s = {cached_speed:.0f} MiB/s"
        " (the hash alone: a 2 MiB buffer in cache);"
        f" {results['sha256_file_one_core']['seconds']:.3f} s = {file_speed:.0f} MiB/s (a file in the page cache)"
    )
    print(
        f"two sha-256 threads at once: {two:.3f} s, so this process gets {results['cores_free']:.2f} cores' worth "
        "(overlapping receive and hash needs close to 2)"
    )
    print(
        f"{'':24s} {'wall s':>7s} {'MiB/s':>7s} {'vs sha-256 speed':>16s} {'vs file':>8s} {'vs in-cache':>11s} "
        f"{'client CPU s':>12s} {'vs sha-256 CPU':>14s}"
    )
    for where in ("loopback", "peer"):
        if where == "peer":
            print(f"peer host: {results['peer']['how']}")
        for name in WALL_NAMES:
            if name in results[where]:
                r = results[where][name]
                print(
                    f"{where + ' ' + name:24s} {r['seconds']:7.3f} {r['mib_per_s']:7.0f} {r['vs_sha256_speed']:15.2f}x "
                    f"{r['vs_sha256_file_speed']:7.2f}x {r['vs_sha256_in_cache_speed']:10.2f}x {r['cpu_seconds']:12.3f} {r['vs_sha256']:13.2f}x"
                )


if __name__ == "__main__":
    main()
