"""Getting content from the store to local files, with the size bound, and sorting failures into two kinds.

* The member's fault (a verdict): the content is larger than the limit (``TOO_LARGE``, found before the download
  completes), or its DAG is not one meshprov can read (``CID_MISMATCH``: it was not added with Kubo's defaults).
* Our fault (:class:`~worker.errors.StoreFault`, retried, never a verdict): the store is down or slow, does not
  hold the content (yet), or hands back bytes that do not match the CID (a corrupt or lying store).

Downloads go to a temporary file renamed into place only once the store has verified the whole content; the
Kubo CID of the bytes is computed as they stream in (the checks then need not hash the file again).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.checks import Verdict
from ledger.content import (
    CidMismatch,
    ContentNotFound,
    ContentTooLarge,
    CorruptBlock,
    InvalidCID,
    MalformedDag,
    StoreError,
    StoreUnavailable,
    digest_to_cid,
)
from ledger.content.unixfs import UnixfsHasher
from ledger.reasons import Reason
from worker.errors import StoreFault

if TYPE_CHECKING:
    from ledger.content import ContentStore


@dataclass(frozen=True)
class Fetched:
    """A download: a reject verdict (the member's fault), or the file and the Kubo digest of its bytes."""

    rejected: Verdict | None
    digest: bytes | None = None
    """sha-256 inside the Kubo-default CID of the downloaded bytes, computed while they streamed in."""


# Stores whose ``get`` already proves the bytes have the Kubo-default CID asked for (Kubo's client re-imports the
# stream with the default importer); other stores verify blocks, not the layout, so we hash the bytes ourselves.
_KUBO_CID_VERIFIED = frozenset({"kubo"})


def fetch(store: ContentStore, digest: bytes, dest: Path, *, max_bytes: int) -> Fetched:
    """Download ``digest`` to ``dest`` (atomically, at most ``max_bytes``), hashing the bytes on the way."""
    cid = digest_to_cid(digest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        kubo_digest = _download(store, cid, dest, max_bytes)
    except ContentTooLarge as exc:
        got = f"{exc.size} bytes" if exc.size is not None else "more bytes"
        return Fetched(Verdict(Reason.TOO_LARGE, f"{got} than the limit of {max_bytes}", digest=digest))
    except MalformedDag as exc:
        return Fetched(
            Verdict(Reason.CID_MISMATCH, f"not a Kubo-default UnixFS file: {exc.problem}", digest=digest)
        )
    except ContentNotFound as exc:
        raise StoreFault(f"{cid} is not available in the {exc.store} store (yet)") from None
    except (CorruptBlock, CidMismatch) as exc:
        raise StoreFault(f"the store returned bytes that do not match {cid}: {exc.message}") from None
    except (StoreUnavailable, StoreError) as exc:
        raise StoreFault(f"fetching {cid}: {exc.message}") from None
    except InvalidCID as exc:  # pragma: no cover - a digest from the chain always makes a valid CID
        raise StoreFault(f"cannot name {digest.hex()} as a CID: {exc.problem}") from None
    except OSError as exc:
        raise StoreFault(f"fetching {cid} to {dest}: {exc}") from None
    return Fetched(None, digest if store.name in _KUBO_CID_VERIFIED else kubo_digest)


def _download(store: ContentStore, cid: str, dest: Path, max_bytes: int) -> bytes:
    """``fetch_to_file`` that also feeds the Kubo importer, so the file is never read back just to hash it."""
    hasher = UnixfsHasher()
    hash_it = store.name not in _KUBO_CID_VERIFIED

    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in store.get(cid, max_bytes=max_bytes):
                if hash_it:
                    hasher.update(chunk)
                out.write(chunk)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return hasher.finish().digest if hash_it else b""


def ensure_base(store: ContentStore, digest: bytes, cache: Path, *, max_bytes: int) -> Path:
    """The round's base model on local disk (downloaded once per process tree, then reused)."""
    path = cache / "bases" / f"{digest_to_cid(digest)}.safetensors"
    if path.is_file():
        return path
    got = fetch(store, digest, path, max_bytes=max_bytes)
    if got.rejected is not None or got.digest != digest:
        # The base is anchored on chain (genesis or a finalized aggregate): if we cannot read it, no update of
        # the round can be judged. That is an operator problem, reported and retried, never a verdict.
        remove(path)
        detail = got.rejected.detail if got.rejected is not None else "its bytes have another Kubo CID"
        raise StoreFault(f"the base model {digest_to_cid(digest)} cannot be used: {detail}")
    return path


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
