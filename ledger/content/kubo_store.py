"""A content store backed by a Kubo node, over its RPC API (``/api/v0``) with httpx.

Endpoints used: ``add`` (``cid-version=0``, ``raw-leaves=false``, ``chunker=size-262144``, ``pin=true``, and
``only-hash`` for :meth:`KuboStore.kubo_cid`), ``cat``, ``pin/add``, ``block/stat`` (``offline``, for ``has``),
``block/get`` (the root node, for ``stat``) and ``version``.

The CID is always computed locally first; if Kubo's answer differs (a node configured with other import
settings), :class:`CidMismatch` is raised and nothing is returned to record. Replies are read with a bound (JSON
replies up to ``max_reply_bytes``; ``cat`` up to the caller's ``max_bytes``, asked of Kubo with ``length``), and
the bytes from ``cat`` are re-hashed as they stream. Transient failures (connection errors, timeouts, 502/503/504,
a 500 that is not a Kubo command error) are retried a bounded number of times with exponential backoff and
jitter; a Kubo command error (a 500 whose body is Kubo's ``{"Message", "Code", "Type": "error"}``) is not retried.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from ledger.content.dag import MAX_BLOCK_SIZE, decode_file_node
from ledger.content.errors import (
    CidMismatch,
    ContentNotFound,
    ContentTooLarge,
    CorruptBlock,
    InvalidCID,
    StoreError,
    StoreUnavailable,
)
from ledger.content.multiformats import CID
from ledger.content.store import ContentStat
from ledger.content.unixfs import Buffer, Progress, UnixfsHasher, import_bytes, import_file

# Exactly Kubo's defaults, stated explicitly so a node configured otherwise (Import.CidVersion = 1,
# Import.UnixFSRawLeaves = true, another chunker) still builds the DAG meshprov anchors.
ADD_PARAMS: dict[str, str] = {
    "cid-version": "0",
    "raw-leaves": "false",
    "chunker": "size-262144",
    "hash": "sha2-256",
    "trickle": "false",
    "inline": "false",
    "wrap-with-directory": "false",
    "progress": "false",
    "pin": "true",
}
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=120.0, write=120.0, pool=10.0)
_TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
_ERROR_BODY_LIMIT = 64 * 1024
_STREAM_CHUNK = 256 * 1024

Body = Callable[[], tuple[dict[str, Any], IO[bytes] | None]]


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter: attempt ``n`` waits about ``base * 2**n`` seconds."""

    attempts: int = 4
    base_delay_s: float = 0.25
    max_delay_s: float = 5.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    jitter: Callable[[], float] = field(default=random.random, repr=False)
    """Uniform draws in [0, 1) spreading the waits (injectable for tests)."""

    def delay(self, attempt: int) -> float:
        ceiling = min(self.max_delay_s, self.base_delay_s * (1 << attempt))
        # "Equal jitter": at least half the backoff, so retries never collapse to zero, spread over the rest.
        return ceiling / 2 + self.jitter() * ceiling / 2


class _KuboFailure(Exception):
    """Internal: a failed attempt and whether another attempt may succeed (``transient``).

    ``reachable`` is False when Kubo could not be asked at all (or did not answer in time): that is reported as
    :class:`StoreUnavailable`, while an answer we will not retry becomes a :class:`StoreError` or a more
    specific error.
    """

    def __init__(
        self, message: str, *, transient: bool, reachable: bool = True, kubo_message: str | None = None
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.reachable = reachable
        self.kubo_message = kubo_message


class _ProgressReader:
    """A file wrapper that reports bytes read, for upload progress (httpx reads the file part in chunks)."""

    def __init__(self, f: IO[bytes], progress: Progress | None) -> None:
        self._f = f
        self._progress = progress

    def fileno(self) -> int:
        return self._f.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        if self._progress is not None and data:
            self._progress(len(data))
        return data


class KuboStore:
    """A :class:`~ledger.content.store.ContentStore` talking to Kubo's RPC API (see the module docstring)."""

    name = "kubo"

    def __init__(
        self,
        api_url: str = "http://127.0.0.1:5001",
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_reply_bytes: int = 1024 * 1024,
        workers: int | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.max_reply_bytes = max_reply_bytes
        self.workers = workers
        self._client = httpx.Client(
            base_url=self.api_url + "/api/v0/", transport=transport, timeout=timeout, follow_redirects=False
        )

    def __repr__(self) -> str:
        return f"KuboStore({self.api_url!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> KuboStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- ContentStore --------------------------------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        """Kubo's ``version`` reply (``Version``, ``Commit``, ``Repo``, ``System``, ``Golang``)."""
        return self._json("version", {})

    def put_file(self, path: str | os.PathLike[str], *, progress: Progress | None = None) -> str:
        local = import_file(path, workers=self.workers).cid
        name = Path(path).name

        def body() -> tuple[dict[str, Any], IO[bytes] | None]:
            f = open(path, "rb")  # noqa: SIM115 - closed by _send after the request
            return {"files": {"file": (name, _ProgressReader(f, progress), "application/octet-stream")}}, f

        self._add(local, body, ADD_PARAMS)
        return local

    def put_bytes(self, data: Buffer) -> str:
        local = import_bytes(data).cid
        payload = bytes(data)
        self._add(
            local,
            lambda: ({"files": {"file": ("data", payload, "application/octet-stream")}}, None),
            ADD_PARAMS,
        )
        return local

    def kubo_cid(self, path: str | os.PathLike[str]) -> str:
        """The CID Kubo computes for a file with meshprov's import settings, storing nothing (``only-hash``)."""
        name = Path(path).name

        def body() -> tuple[dict[str, Any], IO[bytes] | None]:
            f = open(path, "rb")  # noqa: SIM115 - closed by _send after the request
            return {"files": {"file": (name, f, "application/octet-stream")}}, f

        return self._add_raw(body, {**ADD_PARAMS, "only-hash": "true", "pin": "false"})

    def get(self, cid: str, *, max_bytes: int | None = None) -> Iterator[memoryview]:
        parsed = CID.parse(cid)
        params = {"arg": parsed.v0, "progress": "false"}
        if max_bytes is not None:
            # One byte more than allowed, so an oversized file is told from one of exactly max_bytes.
            params["length"] = str(max_bytes + 1)
        response = self._send("cat", params)
        return self._stream_verified(response, parsed, max_bytes)

    def has(self, cid: str) -> bool:
        parsed = CID.parse(cid)
        try:
            self._json("block/stat", {"arg": parsed.v0, "offline": "true"})
        except ContentNotFound:
            return False
        return True

    def pin(self, cid: str) -> None:
        parsed = CID.parse(cid)
        reply = self._json("pin/add", {"arg": parsed.v0, "recursive": "true", "progress": "false"})
        pins = reply.get("Pins")
        if not isinstance(pins, list) or not any(_digest_or_none(p) == parsed.digest for p in pins):
            raise StoreError(self.api_url, f"pin/add did not confirm {parsed.v0}: {_short_json(reply)}")

    def stat(self, cid: str) -> ContentStat:
        parsed = CID.parse(cid)
        response = self._send("block/get", {"arg": parsed.v0})
        try:
            block = self._read_bounded(response, MAX_BLOCK_SIZE, what="block/get")
        finally:
            response.close()
        actual = hashlib.sha256(block).digest()
        if actual != parsed.digest:
            raise CorruptBlock(parsed.v0, actual, where=f"Kubo at {self.api_url}")
        node = decode_file_node(block, parsed.v0)
        return ContentStat(cid=parsed.v0, size=node.filesize, block_size=len(block), pinned=None)

    # --- add -----------------------------------------------------------------------------------------------
    def _add(self, local: str, body: Body, params: dict[str, str]) -> None:
        returned = self._add_raw(body, params)
        if _digest_or_none(returned) != CID.parse(local).digest:
            raise CidMismatch(
                local,
                returned,
                context=f"Kubo at {self.api_url} returned another CID for the file than meshprov computed",
                hint="the node imports with other settings; meshprov asks for cid-version=0, raw-leaves=false, "
                "chunker=size-262144: check the node's Import.* config and version (`ipfs config Import`)",
            )

    def _add_raw(self, body: Body, params: dict[str, str]) -> str:
        response = self._send("add", params, body=body)
        try:
            raw = self._read_bounded(response, self.max_reply_bytes, what="add")
        finally:
            response.close()
        returned: str | None = None
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                raise StoreError(
                    self.api_url, f"add replied with a line that is not JSON: {line[:200]!r}"
                ) from None
            if isinstance(event, dict) and isinstance(event.get("Hash"), str):
                returned = event["Hash"]
            elif isinstance(event, dict) and event.get("Type") == "error":
                raise StoreError(self.api_url, f"add failed: {event.get('Message')}")
        if returned is None:
            raise StoreError(self.api_url, "add replied without a CID (the upload may have been cut short)")
        return returned

    # --- cat -----------------------------------------------------------------------------------------------
    def _stream_verified(
        self, response: httpx.Response, cid: CID, max_bytes: int | None
    ) -> Iterator[memoryview]:
        hasher = UnixfsHasher()
        try:
            try:
                for chunk in response.iter_bytes(_STREAM_CHUNK):
                    if max_bytes is not None and hasher.size + len(chunk) > max_bytes:
                        raise ContentTooLarge(cid.v0, max_bytes)
                    hasher.update(chunk)
                    yield memoryview(chunk)
            except (httpx.TransportError, httpx.StreamError) as exc:
                raise StoreUnavailable(self.api_url, f"cat of {cid.v0} broke off: {exc!r}") from None
        finally:
            response.close()
        got = hasher.finish()
        if got.digest != cid.digest:
            raise CidMismatch(
                cid.v0,
                got.cid,
                context=f"the {got.size} bytes Kubo at {self.api_url} returned for cat",
                hint="the node returned other content (or a stream cut short); do not use these bytes",
            )

    # --- transport -----------------------------------------------------------------------------------------
    def _json(self, command: str, params: dict[str, str]) -> dict[str, Any]:
        response = self._send(command, params)
        try:
            raw = self._read_bounded(response, self.max_reply_bytes, what=command)
        finally:
            response.close()
        try:
            value = json.loads(raw)
        except ValueError:
            raise StoreError(self.api_url, f"{command} replied with something that is not JSON") from None
        if not isinstance(value, dict):
            raise StoreError(self.api_url, f"{command} replied with JSON that is not an object")
        return value

    def _read_bounded(self, response: httpx.Response, limit: int, *, what: str) -> bytes:
        out = bytearray()
        try:
            for chunk in response.iter_bytes():
                out += chunk
                if len(out) > limit:
                    raise StoreError(
                        self.api_url, f"{what} reply is larger than {limit} bytes; refusing to read on"
                    )
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise StoreUnavailable(self.api_url, f"{what} reply broke off: {exc!r}") from None
        return bytes(out)

    def _send(
        self,
        command: str,
        params: dict[str, str],
        *,
        body: Body | None = None,
    ) -> httpx.Response:
        """POST a command, retrying transient failures; returns an open 200 response (the caller closes it).

        ``body`` makes the request body afresh for each attempt: keyword arguments for httpx and a file to close
        once the request is sent.
        """
        last: _KuboFailure | None = None
        for attempt in range(self.retry.attempts):
            if attempt:
                self.retry.sleep(self.retry.delay(attempt - 1))
            extra, opened = body() if body is not None else ({}, None)
            try:
                return self._attempt(command, params, extra)
            except _KuboFailure as failure:
                if not failure.reachable and not failure.transient:
                    raise StoreUnavailable(self.api_url, f"{command}: {failure}") from None
                if not failure.transient:
                    raise self._command_error(command, params, failure) from None
                last = failure
            finally:
                if opened is not None:
                    opened.close()
        assert last is not None
        raise StoreUnavailable(
            self.api_url, f"{command} failed {self.retry.attempts} times; last: {last}"
        ) from None

    def _attempt(self, command: str, params: dict[str, str], extra: dict[str, Any]) -> httpx.Response:
        try:
            request = self._client.build_request("POST", command, params=params, **extra)
            response = self._client.send(request, stream=True)
        except (
            httpx.ConnectTimeout,
            httpx.PoolTimeout,
            httpx.NetworkError,
            httpx.RemoteProtocolError,
        ) as exc:
            raise _KuboFailure(f"{type(exc).__name__}: {exc}", transient=True, reachable=False) from None
        except httpx.TimeoutException as exc:
            # Kubo took the request but did not answer in time (a CID nobody provides, an overloaded node):
            # asking again would only multiply the wait.
            raise _KuboFailure(f"{type(exc).__name__}: {exc}", transient=False, reachable=False) from None
        except httpx.HTTPError as exc:
            raise _KuboFailure(f"{type(exc).__name__}: {exc}", transient=False, reachable=False) from None
        if response.status_code == 200:
            return response
        try:
            raw = self._read_bounded(response, _ERROR_BODY_LIMIT, what=command)
        except StoreError:
            raw = b""
        except StoreUnavailable as exc:
            raise _KuboFailure(str(exc), transient=True, reachable=False) from None
        finally:
            response.close()
        kubo_message = _kubo_error_message(raw)
        status = response.status_code
        transient = status in _TRANSIENT_STATUS or (status == 500 and kubo_message is None)
        detail = kubo_message if kubo_message is not None else raw[:200].decode("utf-8", "replace").strip()
        raise _KuboFailure(f"HTTP {status}: {detail}", transient=transient, kubo_message=kubo_message)

    def _command_error(self, command: str, params: dict[str, str], failure: _KuboFailure) -> Exception:
        message = (failure.kubo_message or str(failure)).lower()
        arg = params.get("arg", "")
        if arg and any(s in message for s in ("not found", "could not find", "no link named", "not pinned")):
            return ContentNotFound(arg, self.name, detail=failure.kubo_message)
        if arg and ("invalid cid" in message or "invalid path" in message):
            return InvalidCID(arg, f"Kubo rejected it: {failure.kubo_message}")
        return StoreError(self.api_url, f"{command}: {failure}")


def _kubo_error_message(raw: bytes) -> str | None:
    """The ``Message`` of Kubo's command-error body ``{"Message": …, "Code": …, "Type": "error"}``, else None."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if isinstance(value, dict) and value.get("Type") == "error" and isinstance(value.get("Message"), str):
        return str(value["Message"])
    return None


def _digest_or_none(text: object) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return CID.parse(text).digest
    except InvalidCID:
        return None


def _short_json(value: object) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 200 else text[:200] + "…"
