"""A fake Kubo RPC API for the store tests, built from recorded replies of a real Kubo.

The fake Kubo answers over `httpx.MockTransport` with the headers and body shapes of the recordings in
tests/data/kubo/ and computes CIDs with the reference importer (tests/support/unixfs_reference.py), never with the
code under test.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

from ledger.content import (
    InvalidCID,
)
from ledger.content.kubo_store import KuboStore, RetryPolicy
from ledger.content.multiformats import CID
from tests.support.unixfs_reference import reference_import

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "kubo"
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
