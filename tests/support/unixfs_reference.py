"""A deliberately simple reference UnixFS importer, and the proof that it matches real Kubo.

It follows Kubo's code path literally (boxo's ``balanced.Layout`` and ``fillNodeRec``: grow the root one depth at
a time, filling each new root top-down) with a generic protobuf encoder and everything in memory, so it shares
no code and no shape with ``ledger.content.unixfs``, which streams bottom-up. The streaming importer is tested
against it (tests/ledger/content/test_cid.py) and the fake Kubo in tests/support/kubo.py uses it to answer ``add`` and ``block/get``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

VECTORS_PATH = Path(__file__).resolve().parents[1] / "data" / "vectors" / "kubo-unixfs-cids.json"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


# --- a minimal, generic protobuf encoder ---------------------------------------------------------------------
def pb_varint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        out += bytes([low | (0x80 if n else 0)])
        if not n:
            return out


def pb_uint(number: int, value: int) -> bytes:
    return pb_varint(number << 3) + pb_varint(value)


def pb_bytes(number: int, value: bytes) -> bytes:
    return pb_varint(number << 3 | 2) + pb_varint(len(value)) + value


def unixfs_file(data: bytes | None, blocksizes: list[int]) -> bytes:
    filesize = (len(data) if data else 0) + sum(blocksizes)
    out = pb_uint(1, 2)  # Type = File
    if data is not None:
        out += pb_bytes(2, data)
    out += pb_uint(3, filesize)
    for size in blocksizes:
        out += pb_uint(4, size)
    return out


def b58(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    text = ""
    while n:
        n, r = divmod(n, 58)
        text = B58[r] + text
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + text


# --- the reference importer ----------------------------------------------------------------------------------
@dataclass
class Node:
    digest: bytes
    tsize: int
    filesize: int


@dataclass
class ReferenceDag:
    root: Node
    blocks: dict[bytes, bytes] = field(default_factory=dict)

    @property
    def cid(self) -> str:
        return b58(b"\x12\x20" + self.root.digest)


def reference_import(data: bytes, chunk_size: int = 262144, max_links: int = 174) -> ReferenceDag:
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    blocks: dict[bytes, bytes] = {}
    position = 0

    def put(block: bytes, children: list[Node], filesize: int) -> Node:
        digest = hashlib.sha256(block).digest()
        blocks[digest] = block
        return Node(digest, len(block) + sum(c.tsize for c in children), filesize)

    def leaf(chunk: bytes | None) -> Node:
        return put(pb_bytes(1, unixfs_file(chunk, [])), [], len(chunk or b""))

    def next_leaf() -> Node:
        nonlocal position
        position += 1
        return leaf(chunks[position - 1])

    def branch(children: list[Node]) -> Node:
        links = b"".join(
            pb_bytes(2, pb_bytes(1, b"\x12\x20" + c.digest) + pb_bytes(2, b"") + pb_uint(3, c.tsize))
            for c in children
        )
        sizes = [c.filesize for c in children]
        return put(links + pb_bytes(1, unixfs_file(None, sizes)), children, sum(sizes))

    def fill(children: list[Node], depth: int) -> Node:
        while len(children) < max_links and position < len(chunks):
            children.append(next_leaf() if depth == 1 else fill([], depth - 1))
        return branch(children)

    if not chunks:
        return ReferenceDag(leaf(None), blocks)
    root = next_leaf()
    depth = 1
    while position < len(chunks):
        root = fill([root], depth)
        depth += 1
    return ReferenceDag(root, blocks)


# --- the vectors ---------------------------------------------------------------------------------------------
def load_vectors() -> list[dict[str, Any]]:
    doc = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
    return list(doc["vectors"])


@cache
def vector_bytes(name: str) -> bytes:
    """The content of a vector, regenerated as the vectors file describes."""
    vector = next(v for v in load_vectors() if v["name"] == name)
    if "literal" in vector:
        return str(vector["literal"]).encode("utf-8")
    size, seed = int(vector["size"]), str(vector["seed"])
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(seed.encode() + i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:size])


VECTOR_NAMES = [str(v["name"]) for v in load_vectors()]
