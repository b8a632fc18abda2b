"""One suite for every content store: the local block directory and the Kubo client (against a fake Kubo).

The fake Kubo answers over `httpx.MockTransport` with the headers and body shapes of the recordings in
tests/fixtures/kubo/ and computes CIDs with the reference importer (tests/test_cid_reference.py), never with the
code under test.
"""

from __future__ import annotations

import base64
import json
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from ledger.content import (
    ContentNotFound,
    ContentStore,
    ContentTooLarge,
    InvalidCID,
    fetch_to_file,
    open_stream,
    read_bytes,
)
from ledger.content.kubo_store import KuboStore, RetryPolicy
from ledger.content.local_store import LocalStore
from ledger.content.multiformats import CID
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason
from tests.test_cid_reference import reference_import, vector_bytes

FIXTURES = Path(__file__).parent / "fixtures" / "kubo"
HELLO = b"hello world\n"
HELLO_V0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
EMPTY_V0 = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
MISSING_V0 = CID(bytes(range(32))).v0


# --- recordings ----------------------------------------------------------------------------------------------
def recording(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text(encoding="utf-8")))


def replay(name: str, **body_override: Any) -> httpx.Response:
    """The recorded response as httpx would hand it over (hop-by-hop framing headers dropped)."""
    rec = recording(name)["response"]
    headers = {k: v for k, v in rec["headers"].items() if k.lower() != "transfer-encoding"}
    if "content" in body_override:
        content = body_override["content"]
    elif "body_base64" in rec:
        content = base64.b64decode(rec["body_base64"])
    else:
        content = rec["body"].encode("utf-8")
    return httpx.Response(rec["status"], headers=headers, content=content)


def headers_of(name: str) -> dict[str, str]:
    return {
        k: v for k, v in recording(name)["response"]["headers"].items() if k.lower() != "transfer-encoding"
    }


def kubo_error(message: str) -> httpx.Response:
    body = json.dumps({"Message": message, "Code": 0, "Type": "error"}, separators=(",", ":")) + "\n"
    return httpx.Response(500, headers=headers_of("block-stat-not-found-offline.json"), content=body.encode())


def multipart_file(request: httpx.Request) -> tuple[str, bytes]:
    """The (filename, content) of the single file part of an `add` request."""
    ctype = request.headers["content-type"]
    assert ctype.startswith("multipart/form-data; boundary=")
    boundary = ctype.split("boundary=", 1)[1].encode()
    body = request.read()
    parts = body.split(b"--" + boundary)
    assert parts[-1].strip() == b"--"
    files = [p for p in parts[1:-1] if b'name="file"' in p.split(b"\r\n\r\n", 1)[0]]
    assert len(files) == 1
    head, content = files[0].split(b"\r\n\r\n", 1)
    filename = head.split(b'filename="', 1)[1].split(b'"', 1)[0].decode()
    assert content.endswith(b"\r\n")
    return filename, content[:-2]


# --- the fake Kubo -------------------------------------------------------------------------------------------
@dataclass
class FakeKubo:
    """Enough of Kubo's RPC API for the store suite; ``faults`` are served (or raised) before real answers."""

    blocks: dict[bytes, bytes] = field(default_factory=dict)
    files: dict[bytes, bytes] = field(default_factory=dict)
    pins: set[bytes] = field(default_factory=set)
    requests: list[httpx.Request] = field(default_factory=list)
    faults: list[httpx.Response | Exception] = field(default_factory=list)
    tamper: Callable[[bytes], bytes] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.faults:
            fault = self.faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault
        if request.method != "POST":
            return replay("method-not-allowed.json")
        query = dict(parse_qsl(request.url.query.decode()))
        command = request.url.path.removeprefix("/api/v0/")
        handler = getattr(self, "_" + command.replace("/", "_"), None)
        if handler is None:
            return httpx.Response(404, text="404 page not found")
        response: httpx.Response = handler(request, query)
        return response

    def commands(self) -> list[str]:
        return [r.url.path.removeprefix("/api/v0/") for r in self.requests]

    def _digest(self, query: dict[str, str]) -> bytes | None:
        try:
            return CID.parse(query.get("arg", "")).digest
        except InvalidCID:
            return None

    def _version(self, request: httpx.Request, query: dict[str, str]) -> httpx.Response:
        return replay("version.json")

    def _add(self, request: httpx.Request, query: dict[str, str]) -> httpx.Response:
        assert query["cid-version"] == "0"
        assert query["raw-leaves"] == "false"
        assert query["chunker"] == "size-262144"
        name, content = multipart_file(request)
        dag = reference_import(content)
        if query.get("only-hash") != "true":
            self.blocks.update(dag.blocks)
            self.files[dag.root.digest] = content
            if query.get("pin") == "true":
                self.pins.add(dag.root.digest)
        line = json.dumps({"Name": name, "Hash": dag.cid, "Size": str(dag.root.tsize)}, separators=(",", ":"))
        return httpx.Response(200, headers=headers_of("add-hello-world.json"), content=(line + "\n").encode())

    def _cat(self, request: httpx.Request, query: dict[str, str]) -> httpx.Response:
        digest = self._digest(query)
        if digest is None:
            return kubo_error(f'invalid path "{query.get("arg")}": invalid cid')
        if digest not in self.files:
            return kubo_error(f"block was not found locally (offline): ipld: could not find {query['arg']}")
        content = self.files[digest]
        if self.tamper is not None:
            content = self.tamper(content)
        offset = int(query.get("offset", 0))
        end = offset + int(query["length"]) if "length" in query else None
        body = content[offset:end]
        headers = {**headers_of("cat-hello-world.json"), "X-Content-Length": str(len(body))}
        return httpx.Response(200, headers=headers, content=body)

    def _block_stat(self, request: httpx.Request, query: dict[str, str]) -> httpx.Response:
        digest = self._digest(query)
        if digest not in self.blocks:
            return kubo_error(f"block was not found locally (offline): ipld: could not find {query['arg']}")
        body = json.dumps({"Key": query["arg"], "Size": len(self.blocks[digest])}, separators=(",", ":"))
        return httpx.Response(
            200, headers=headers_of("block-stat-hello-world.json"), content=(body + "\n").encode()
        )

    def _block_get(self, request: httpx.Request, query: dict[str, str]) -> httpx.Response:
        digest = self._digest(query)
        if digest not in self.blocks:
            return kubo_error(f"block was not found locally (offline): ipld: could not find {query['arg']}")
        return httpx.Response(
            200, headers=headers_of("block-get-hello-world.json"), content=self.blocks[digest]
        )

    def _pin_add(self, request: httpx.Request, query: dict[str, str]) -> httpx.Response:
        digest = self._digest(query)
        if digest not in self.files:
            return kubo_error(
                f"pin: block was not found locally (offline): ipld: could not find {query['arg']}"
            )
        self.pins.add(digest)
        body = json.dumps({"Pins": [query["arg"]]}, separators=(",", ":"))
        return httpx.Response(
            200, headers=headers_of("pin-add-hello-world.json"), content=(body + "\n").encode()
        )


class NoSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def kubo_store(fake: FakeKubo, **kwargs: Any) -> KuboStore:
    retry = kwargs.pop("retry", None) or RetryPolicy(sleep=NoSleep(), jitter=lambda: 0.5)
    return KuboStore("http://127.0.0.1:5001", transport=httpx.MockTransport(fake), retry=retry, **kwargs)


# --- the shared suite ----------------------------------------------------------------------------------------
@dataclass
class StoreUnderTest:
    store: ContentStore
    fake: FakeKubo | None


@pytest.fixture(params=["local", "kubo"])
def sut(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreUnderTest]:
    if request.param == "local":
        store: ContentStore = LocalStore(tmp_path / "blocks")
        fake = None
    else:
        fake = FakeKubo()
        store = kubo_store(fake)
    yield StoreUnderTest(store, fake)
    store.close()


def test_store_satisfies_the_protocol(sut: StoreUnderTest) -> None:
    assert isinstance(sut.store, ContentStore)
    assert sut.store.name in ("local", "kubo")


def test_put_bytes_returns_kubos_cid_and_the_content_comes_back(sut: StoreUnderTest) -> None:
    cid = sut.store.put_bytes(HELLO)
    assert cid == HELLO_V0
    assert sut.store.has(cid)
    assert read_bytes(sut.store, cid, max_bytes=100) == HELLO
    stat = sut.store.stat(cid)
    assert (stat.cid, stat.size, stat.block_size) == (HELLO_V0, 12, 20)


def test_put_file_streams_a_multi_chunk_file(sut: StoreUnderTest, tmp_path: Path) -> None:
    data = vector_bytes("one-mib-plus-7")
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    seen: list[int] = []
    cid = sut.store.put_file(path, progress=seen.append)
    assert cid == "QmTycvXn5bcvXoYegXvRUYMG14qPJZLKXGRgtSH8723ozx"
    assert sum(seen) == len(data)
    chunks = list(sut.store.get(cid, max_bytes=len(data)))
    assert all(isinstance(c, memoryview) for c in chunks)
    assert b"".join(chunks) == data
    assert sut.store.stat(cid).size == len(data)


def test_the_same_content_gets_the_same_cid_twice(sut: StoreUnderTest, tmp_path: Path) -> None:
    data = random.Random(1).randbytes(600_000)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert sut.store.put_bytes(data) == sut.store.put_file(path) == reference_import(data).cid


def test_empty_content(sut: StoreUnderTest) -> None:
    assert sut.store.put_bytes(b"") == EMPTY_V0
    assert read_bytes(sut.store, EMPTY_V0, max_bytes=0) == b""
    assert sut.store.stat(EMPTY_V0).size == 0


def test_get_accepts_cidv1(sut: StoreUnderTest) -> None:
    cid = sut.store.put_bytes(HELLO)
    assert read_bytes(sut.store, CID.parse(cid).v1, max_bytes=100) == HELLO


def test_get_refuses_content_over_max_bytes(sut: StoreUnderTest) -> None:
    data = random.Random(2).randbytes(300_000)
    cid = sut.store.put_bytes(data)
    assert read_bytes(sut.store, cid, max_bytes=len(data)) == data
    with pytest.raises(ContentTooLarge) as caught:
        read_bytes(sut.store, cid, max_bytes=len(data) - 1)
    assert caught.value.reason == Reason.TOO_LARGE
    assert caught.value.limit == len(data) - 1


def test_missing_content(sut: StoreUnderTest) -> None:
    assert not sut.store.has(MISSING_V0)
    for call in (lambda: sut.store.get(MISSING_V0), lambda: sut.store.stat(MISSING_V0)):
        with pytest.raises(ContentNotFound) as caught:
            call()
        assert caught.value.exit_code == ExitCode.NOT_FOUND
        assert MISSING_V0 in caught.value.message
    with pytest.raises(ContentNotFound):
        sut.store.pin(MISSING_V0)


def test_pin_after_put(sut: StoreUnderTest) -> None:
    cid = sut.store.put_bytes(HELLO)
    sut.store.pin(cid)
    pinned = sut.store.stat(cid).pinned
    assert pinned is True or (pinned is None and sut.fake is not None)
    if sut.fake is not None:
        assert CID.parse(cid).digest in sut.fake.pins


@pytest.mark.parametrize("bad", ["", "Qm123", "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"])
def test_bad_cids_are_refused_before_the_store_is_asked(sut: StoreUnderTest, bad: str) -> None:
    for call in (sut.store.get, sut.store.has, sut.store.pin, sut.store.stat):
        with pytest.raises(InvalidCID):
            call(bad)
    if sut.fake is not None:
        assert sut.fake.requests == []


def test_fetch_to_file_is_atomic(sut: StoreUnderTest, tmp_path: Path) -> None:
    data = random.Random(3).randbytes(700_000)
    cid = sut.store.put_bytes(data)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dest = out_dir / "update.safetensors"
    dest.write_bytes(b"previous")
    with pytest.raises(ContentTooLarge):
        fetch_to_file(sut.store, cid, dest, max_bytes=1000)
    assert dest.read_bytes() == b"previous"
    assert os.listdir(out_dir) == ["update.safetensors"]
    progress: list[int] = []
    assert fetch_to_file(sut.store, cid, dest, max_bytes=len(data), progress=progress.append) == len(data)
    assert dest.read_bytes() == data
    assert sum(progress) == len(data)
    assert os.listdir(out_dir) == ["update.safetensors"]


def test_open_stream_reads_in_any_pieces(sut: StoreUnderTest) -> None:
    data = random.Random(4).randbytes(555_555)
    cid = sut.store.put_bytes(data)
    with open_stream(sut.store, cid, max_bytes=len(data)) as stream:
        pieces = [stream.read(size) for size in (1, 1000, 262_143, 300_000, 10)]
        assert stream.read() == b""
    assert b"".join(pieces) == data
