"""Getting content from the store to local files, with the size bound, and sorting failures into two kinds.

* The member's fault (a verdict): the content is larger than the limit (``TOO_LARGE``, found before the download
  completes), or its DAG is not one meshprov can read (``CID_MISMATCH``: it was not added with Kubo's defaults).
* Our fault (:class:`~worker.errors.StoreFault`, retried, never a verdict): the store is down or slow, does not
  hold the content (yet), or hands back bytes that do not match the CID (a corrupt or lying store).

Downloads are :func:`ledger.content.fetch_to_file`: a temporary file renamed into place only once the bytes are
proven to have the Kubo-default CID asked for, so the checks need not hash the file again.
"""

from __future__ import annotations

import contextlib
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
    fetch_to_file,
)
from ledger.reasons import Reason
from worker.errors import ContentMissing, StoreFault

if TYPE_CHECKING:
    from collections.abc import Callable

    from ledger.checks.update_checks import StreamChecks
    from ledger.content import ContentStore


@dataclass(frozen=True)
class Fetched:
    """A download: a reject verdict (the member's fault), or the file and the Kubo digest of its bytes."""

    rejected: Verdict | None
    digest: bytes | None = None
    """sha-256 inside the Kubo-default CID of the downloaded bytes: the digest asked for, which the download
    proved (the checks then need not hash the file)."""
    verdict: Verdict | None = None
    """:func:`fetch_checked`: the per-update checks' verdict of the streamed bytes."""
    checks: StreamChecks | None = None
    """:func:`fetch_checked`: the checks that judged the stream (their ``kept`` tensors)."""


def fetch(store: ContentStore, digest: bytes, dest: Path, *, max_bytes: int) -> Fetched:
    """Download ``digest`` to ``dest`` (atomically, at most ``max_bytes``) and sort any failure."""
    cid = digest_to_cid(digest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        fetch_to_file(store, cid, dest, max_bytes=max_bytes)
    except _FAILURES as exc:
        return _sorted(exc, store, digest, max_bytes)
    return Fetched(None, digest)


def fetch_checked(
    store: ContentStore, digest: bytes, *, max_bytes: int, checks: Callable[[int], StreamChecks]
) -> Fetched:
    """Judge the update ``digest`` from the store's verified stream, in one pass and without writing it.

    ``checks(size)`` makes the :class:`~ledger.checks.update_checks.StreamChecks` for content of ``size`` bytes
    (the DAG's root announces it; more than ``max_bytes`` is ``TOO_LARGE`` before any content is read). Every
    piece the store hands over is hashed once, by the store as it reads the block (a store that does not prove
    Kubo CIDs itself is re-hashed here with the UnixFS importer), then fed to the checks; the verdict counts
    only once the whole DAG is proven. Failures sort as in :func:`fetch`; the returned ``rejected`` is the
    member's fault found while downloading (size, DAG), ``verdict`` the checks' verdict otherwise."""
    from ledger.content import UnixfsHasher
    from ledger.content.store import PROVES_KUBO_CID

    cid = digest_to_cid(digest)
    try:
        try:
            size = store.stat(cid).size
        except ContentNotFound:
            # A store that finds content elsewhere (GatewayStore: its gateways) may not know the size before
            # fetching: download it (verified) to a temporary file and judge that, the same way, from its bytes.
            return _checked_via_file(store, digest, max_bytes=max_bytes, checks=checks)
        if size > max_bytes:
            raise ContentTooLarge(cid, max_bytes, size)
        judge = checks(size)
        hasher = None if store.name in PROVES_KUBO_CID else UnixfsHasher()
        got = 0
        for chunk in store.get(cid, max_bytes=max_bytes):
            got += len(chunk)
            if got > size:  # the root announced less: the store is lying (a Kubo-layout walk never does this)
                raise StoreError(store.name, f"{cid}: more than the {size} bytes announced")
            if hasher is not None:
                hasher.update(chunk)
            judge.feed(chunk)
        if got != size:
            raise StoreError(store.name, f"{cid}: {got} bytes of the {size} announced")
        if hasher is not None and (proven := hasher.finish()).digest != digest:
            raise CidMismatch(cid, proven.cid, context=f"the {size} bytes the {store.name} store returned")
    except _FAILURES as exc:
        return _sorted(exc, store, digest, max_bytes)
    return Fetched(None, digest, judge.finish(digest), judge)


def _checked_via_file(
    store: ContentStore, digest: bytes, *, max_bytes: int, checks: Callable[[int], StreamChecks]
) -> Fetched:
    """:func:`fetch_checked` for a store that cannot say the size up front: one verified download to a temporary
    file (removed after), then the same checks over its bytes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="meshprov-fetch-") as tmp:
        path = Path(tmp) / "update"
        got = fetch(store, digest, path, max_bytes=max_bytes)
        if got.rejected is not None:
            return got
        size = path.stat().st_size
        judge = checks(size)
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                judge.feed(chunk)
    return Fetched(None, digest, judge.finish(digest), judge)


def ensure_base(store: ContentStore, digest: bytes, cache: Path, *, max_bytes: int) -> Path:
    """The round's base model on local disk (downloaded once per process tree, then reused)."""
    path = cache / "bases" / f"{digest_to_cid(digest)}.safetensors"
    if path.is_file():
        return path
    got = fetch(store, digest, path, max_bytes=max_bytes)
    if got.rejected is not None:
        # The base is anchored on chain (genesis or a finalized aggregate): if we cannot read it, no update of
        # the round can be judged. That is an operator problem, reported and retried, never a verdict.
        remove(path)
        raise StoreFault(f"the base model {digest_to_cid(digest)} cannot be used: {got.rejected.detail}")
    return path


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


_FAILURES = (ContentTooLarge, MalformedDag, ContentNotFound, CorruptBlock, CidMismatch, StoreUnavailable, StoreError,
             InvalidCID, OSError)  # fmt: skip


def _sorted(exc: BaseException, store: ContentStore, digest: bytes, max_bytes: int) -> Fetched:
    """One download failure sorted (both download paths share it): a verdict on the member's content (too large,
    not a Kubo-layout file), content not there yet (ContentMissing), or our store's fault (StoreFault, retried)."""
    cid = digest_to_cid(digest)
    if isinstance(exc, ContentTooLarge):
        got = f"{exc.size} bytes" if exc.size is not None else "more bytes"
        return Fetched(Verdict(Reason.TOO_LARGE, f"{got} than the limit of {max_bytes}", digest=digest))
    if isinstance(exc, MalformedDag):
        return Fetched(
            Verdict(Reason.CID_MISMATCH, f"not a Kubo-default UnixFS file: {exc.problem}", digest=digest)
        )
    if isinstance(exc, ContentNotFound):
        raise ContentMissing(f"{cid} is not available in the {exc.store} store (yet)") from None
    if isinstance(exc, CorruptBlock | CidMismatch):
        raise StoreFault(f"the store returned bytes that do not match {cid}: {exc.message}") from None
    if isinstance(exc, StoreUnavailable) and _from_gateways(store):
        raise ContentMissing(f"{cid}: no gateway gave it ({exc.message})") from None
    if isinstance(exc, StoreUnavailable | StoreError):
        raise StoreFault(f"fetching {cid}: {exc.message}") from None
    if isinstance(exc, InvalidCID):  # pragma: no cover - a digest from the chain always makes a valid CID
        raise StoreFault(f"cannot name {digest.hex()} as a CID: {exc.problem}") from None
    raise StoreFault(f"fetching {cid}: {exc}") from None


def _from_gateways(store: ContentStore) -> bool:
    """Content that only other hosts' gateways can give: when none of them answers (down, unreachable), the
    update is missing from here, like one never published, and scores 0 at the content deadline on its own; the
    round's other updates are judged as usual (it is not this validator's store that failed)."""
    from ledger.content.gateway import GatewayStore

    return isinstance(store, GatewayStore)
