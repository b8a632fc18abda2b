"""From a trained delta to a submission on chain: the update file, the store, the transaction.

    written = write_update_file(path, delta, task=1, round=3, base=cid, contributor=addr, num_samples=150,
                                privacy=record)                         # safetensors + canonical metadata
    cid = put_update(store, written, progress=bar)                     # the store's CID must be the file's
    stored = store_update(store, delta, task=1, round=3, ...)          # or: no file, one pass into the store
    outcome = submit_direct(client, task=1, round=3, cid=cid, num_samples=150)

Also the genesis file of a task (:func:`write_genesis`): full weights of a registered model with the metadata
that rebuilds it, so that round 1's base is a model file like any aggregate.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ledger.chain.errors import AlreadySubmitted, RoundNotLive, SubmissionsClosed, WrongRound
from ledger.content import ContentStore, cid_to_digest
from ledger.errors import Mismatch

if TYPE_CHECKING:
    from ledger.chain.client import LedgerClient
    from ledger.updatefile import UpdateMeta, WrittenFile
    from ledger.updatefile.metadata import Metadata
    from node.recipe import Recipe


class StoreMismatch(Mismatch):
    def __init__(self, path: Path, expected: str, got: str) -> None:
        self.path = path
        self.expected = expected
        self.got = got
        super().__init__(
            f"the store named {path} {got}, but the file's CID is {expected}",
            hint="the content store does not compute Kubo's default CIDs (check MESHPROV_KUBO_API_URL)",
        )


def update_file_name(task: int, round_: int) -> str:
    return f"task-{task}-round-{round_}.safetensors"


def _update_meta(
    *,
    task: int,
    round_: int,
    base: str,
    contributor: str,
    num_samples: int,
    privacy: Mapping[str, Any] | None,
    dataset: str | None,
    frameworks: Mapping[str, str] | None,
) -> UpdateMeta:
    from ledger.updatefile import UpdateMeta

    return UpdateMeta(
        task=task,
        round=round_,
        base=base,
        contributor=contributor,
        num_samples=num_samples,
        privacy=dict(privacy) if privacy is not None else None,
        dataset=dataset,
        frameworks=dict(frameworks) if frameworks is not None else None,
    )


def update_bytes(delta: Mapping[str, np.ndarray], meta: Metadata) -> Iterator[memoryview]:
    """The update file's bytes in order, without a copy (:func:`ledger.updatefile.format.serialize`): exactly the
    bytes :func:`ledger.updatefile.write_update` writes."""
    from ledger.updatefile import file_tensors
    from ledger.updatefile.format import serialize

    return serialize(file_tensors(delta), meta)


def write_update_file(
    path: Path,
    delta: Mapping[str, np.ndarray],
    *,
    task: int,
    round_: int,
    base: str,
    contributor: str,
    num_samples: int,
    privacy: Mapping[str, Any] | None = None,
    dataset: str | None = None,
    frameworks: Mapping[str, str] | None = None,
) -> WrittenFile:
    """Write the update (delta against ``base``, in the base's dtypes) atomically; returns its size and CID.

    The CID is computed from the bytes as they are written (one pass; the file is never read back). The file
    appears at ``path`` only complete and fsynced (a temporary file beside it is renamed), else not at all.
    ``dataset`` is the member's dataset commitment and ``frameworks`` the software versions
    (:mod:`node.provenance`), both recorded in the metadata when given."""
    from ledger.content.store_writer import StreamingPut
    from ledger.updatefile import WrittenFile

    meta = _update_meta(
        task=task,
        round_=round_,
        base=base,
        contributor=contributor,
        num_samples=num_samples,
        privacy=privacy,
        dataset=dataset,
        frameworks=frameworks,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f, StreamingPut(None, tee=f) as put:
            for view in update_bytes(delta, meta):
                put.write(view)
            result = put.finish()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return WrittenFile(path, result.size, result.cid)


@dataclass(frozen=True)
class StoredUpdate:
    """An update put straight into the store: its CID and size (no file was written)."""

    cid: str
    size: int


def store_update(
    store: ContentStore,
    delta: Mapping[str, np.ndarray],
    *,
    task: int,
    round_: int,
    base: str,
    contributor: str,
    num_samples: int,
    privacy: Mapping[str, Any] | None = None,
    dataset: str | None = None,
    frameworks: Mapping[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
    spill_dir: Path | None = None,
) -> StoredUpdate:
    """Serialize the update straight into the store (pinned): one pass, each byte hashed once and written once,
    as a block; no update file. The CID is the one :func:`write_update_file` + :func:`put_update` give.

    A local block store takes the bytes as they are serialized (:mod:`ledger.content.store_writer`); any other
    store (Kubo, a gateway) takes files, so the update is written to a temporary file in ``spill_dir`` (default:
    the system's), put, checked and removed. Atomic: on any failure no root is in the store (see
    :mod:`ledger.content.store_writer`: blocks already written are content-addressed and unreferenced)."""
    from ledger.content.store_writer import StreamingPut, supports_streaming

    meta = _update_meta(
        task=task,
        round_=round_,
        base=base,
        contributor=contributor,
        num_samples=num_samples,
        privacy=privacy,
        dataset=dataset,
        frameworks=frameworks,
    )
    if supports_streaming(store):
        with StreamingPut(store, progress=progress) as put:  # type: ignore[arg-type]
            for view in update_bytes(delta, meta):
                put.write(view)
            result = put.finish()
        return StoredUpdate(result.cid, result.size)
    with tempfile.TemporaryDirectory(prefix="meshprov-update-", dir=spill_dir) as tmp:
        written = write_update_file(
            Path(tmp) / update_file_name(task, round_),
            delta,
            task=task,
            round_=round_,
            base=base,
            contributor=contributor,
            num_samples=num_samples,
            privacy=privacy,
            dataset=dataset,
            frameworks=frameworks,
        )
        cid = put_update(store, written, progress=progress)
        return StoredUpdate(cid, written.size)


def write_genesis(path: Path, model: str, seed: int = 0) -> WrittenFile:
    """The genesis model of a task: ``genesis_state(model, seed)`` with metadata naming how to rebuild it."""
    from ledger.updatefile import GenesisMeta, write_aggregate
    from node.models import genesis_state

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_aggregate(path, genesis_state(model, seed), GenesisMeta(model=model, params={"seed": seed}))


def write_recipe_genesis(path: Path, recipe: Recipe, seed: int = 0) -> WrittenFile:
    """The genesis model of a recipe's task: ``recipe.build_model(seed)``'s state, every dtype kept.

    The builtin ``digits`` and ``digits_cnn`` are written exactly as :func:`write_genesis` writes ``mlp`` and
    ``cnn`` (same bytes, same CID as before recipes); any other recipe's metadata names it:
    ``{"kind": "genesis", "model": NAME, "params": {"seed": S, "recipe": {"name", "version", "cid"}}}``."""
    from ledger.updatefile import GenesisMeta, file_tensors, write_aggregate
    from node.statedict import state_to_numpy

    legacy = {"digits": "mlp", "digits_cnn": "cnn"}.get(recipe.name)
    if legacy is not None and recipe.module.__name__.startswith("node.recipes."):
        return write_genesis(path, legacy, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = state_to_numpy(recipe.build_model(seed))
    meta = GenesisMeta(model=recipe.name, params={"seed": seed, "recipe": recipe.ref.to_dict()})
    return write_aggregate(path, file_tensors(state), meta)


def put_update(
    store: ContentStore, written: WrittenFile, *, progress: Callable[[int], None] | None = None
) -> str:
    """Put the file in the store (pinned) and check the store's CID is the one computed when writing."""
    cid = store.put_file(written.path, progress=progress)
    if cid != written.cid:
        raise StoreMismatch(written.path, written.cid, cid)
    return cid


@dataclass(frozen=True)
class Submitted:
    """What became of a submission: ``submitted`` (index and transaction), ``already`` (the chain already has
    this member's update for the round) or ``closed`` (the round no longer takes submissions)."""

    status: str
    index: int | None = None
    tx_hash: str | None = None
    block: int | None = None
    detail: str = ""


# Reverts meaning the round moved on (or its submission window ended) while the update was being made.
CLOSED_REVERTS = (SubmissionsClosed, WrongRound, RoundNotLive)


def submit_direct(client: LedgerClient, *, task: int, round_: int, cid: str, num_samples: int) -> Submitted:
    """``submitUpdate`` from the member's own key (it pays the gas)."""
    try:
        result = client.submit_update(task, round_, cid_to_digest(cid), num_samples)
    except CLOSED_REVERTS as exc:
        return Submitted("closed", detail=exc.message)
    except AlreadySubmitted as exc:
        me = client.sender_address or ""
        status = client.submission_of(task, round_, me)
        return Submitted("already", index=status.index, detail=exc.message)
    return Submitted("submitted", index=result.value, tx_hash=result.tx_hash, block=result.block_number)
