"""A generator of malformed and malicious updates for the worker's tests (code, not checked-in blobs).

The model is a tiny linear regression (``linear.weight`` 4x12 and ``linear.bias`` float32, plus an int64 step
counter as a buffer) so that an honest update means something: it is one gradient step on the member's own data,
and it lowers the loss on held-out data. :func:`heldout_loss` is a validator's held-out evaluation
(``--evaluator tests.support.malicious:heldout_loss``), which is what catches a sign-flipped update: its norm is
as honest as any, only its direction is wrong.

Every :class:`Case` builds the bytes of one submitted file from a :class:`Context` (what the chain records for
the submission) and names the reason code a validator must reject it with. ``level`` says which stage decides:

    update  the per-update checks (size, CID, header, metadata, layout, values, absolute norms)
    round   the round-level checks (z-score, duplicates): needs the honest updates of the round beside it
    loss    the held-out loss check: needs the evaluator and ``loss_delta``

``CASES`` holds 28 cases; ``SUBSET`` names those the end-to-end test sends through real worker processes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ledger.reasons import Reason
from ledger.updatefile import GenesisMeta, UpdateMeta, encode

Tensors = dict[str, NDArray[Any]]

IN_FEATURES, OUT_FEATURES = 12, 4
LEARNING_RATE = 0.05
HONEST_MEMBERS = 4
"""Honest updates a round needs so that the z-score has enough peers (ledger's default minimum is 3 others)."""

MAX_NORM_FACTOR = 100.0
"""The absolute norm bound, as a multiple of an honest update's norm: far above x10, far below x1000.

An honest update is about 0.35x the base's norm, so the default scale bound (5x the base) lies between x10 (the
in-round z-score's case) and x30 (a per-update reject, below this absolute bound)."""

OVERSIZE_LIMIT = 64 * 1024
"""``max_update_bytes`` for the oversized case: honest files are about 1 KiB, the oversized one 256 KiB."""


# --- the model, the data, the held-out loss -------------------------------------------------------------------


def _truth() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    rng = np.random.default_rng(1234)
    return rng.standard_normal((OUT_FEATURES, IN_FEATURES)), rng.standard_normal(OUT_FEATURES)


def member_data(seed: int, n: int = 64) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    w, b = _truth()
    rng = np.random.default_rng(10_000 + seed)
    x = rng.standard_normal((n, IN_FEATURES))
    return x, x @ w.T + b + 0.1 * rng.standard_normal((n, OUT_FEATURES))


HELDOUT = member_data(999, 256)


def base_model() -> Tensors:
    rng = np.random.default_rng(7)
    return {
        "linear.weight": (0.1 * rng.standard_normal((OUT_FEATURES, IN_FEATURES))).astype(np.float32),
        "linear.bias": np.zeros(OUT_FEATURES, np.float32),
        "steps": np.array(0, np.int64),
    }


def base_file() -> bytes:
    return encode(base_model(), GenesisMeta(model="linear-4x12", params={"seed": 7}))


def heldout_loss(weights: Mapping[str, NDArray[Any]]) -> float:
    """Mean squared error of full weights on the held-out data (a validator's evaluator)."""
    x, y = HELDOUT
    w = np.asarray(weights["linear.weight"], np.float64)
    b = np.asarray(weights["linear.bias"], np.float64)
    return float(np.mean((x @ w.T + b - y) ** 2))


def honest_delta(member: int, base: Mapping[str, NDArray[Any]] | None = None) -> Tensors:
    """One gradient step of the MSE on the member's own data: the delta of an honest update."""
    base = base if base is not None else base_model()
    x, y = member_data(member)
    w = np.asarray(base["linear.weight"], np.float64)
    b = np.asarray(base["linear.bias"], np.float64)
    err = x @ w.T + b - y
    grad_w = 2 * err.T @ x / err.size
    grad_b = 2 * err.sum(axis=0) / err.size
    return {
        "linear.weight": (-LEARNING_RATE * grad_w).astype(np.float32),
        "linear.bias": (-LEARNING_RATE * grad_b).astype(np.float32),
        "steps": np.array(1, np.int64),
    }


def norm(delta: Mapping[str, NDArray[Any]]) -> float:
    return float(
        np.sqrt(
            sum(float(np.sum(np.square(v, dtype=np.float64))) for v in delta.values() if v.dtype.kind == "f")
        )
    )


def max_norm() -> float:
    """The absolute norm bound the tests configure (see :data:`MAX_NORM_FACTOR`)."""
    return MAX_NORM_FACTOR * norm(honest_delta(0))


# --- what the chain records for a submission ------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    task: int
    round: int
    base_cid: str
    contributor: str
    num_samples: int
    member: int
    """Seed of this member's data (its honest delta)."""
    other_contributor: str
    """Another member's address (for metadata naming someone else)."""
    peer_delta: Tensors | None = field(default=None, compare=False)
    """An earlier honest member's delta (copied by the duplicate case)."""

    def meta(self, **changes: Any) -> UpdateMeta:
        fields: dict[str, Any] = {
            "task": self.task,
            "round": self.round,
            "base": self.base_cid,
            "contributor": self.contributor,
            "num_samples": self.num_samples,
        }
        fields.update(changes)
        return UpdateMeta(**fields)

    def honest(self) -> Tensors:
        return honest_delta(self.member)


def honest_update(ctx: Context) -> bytes:
    return encode(ctx.honest(), ctx.meta())


# --- byte-level surgery ---------------------------------------------------------------------------------------


def split(raw: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def join(header: dict[str, Any], data: bytes) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def _edit_header(edit: Callable[[dict[str, Any]], None]) -> Callable[[Context], bytes]:
    def build(ctx: Context) -> bytes:
        header, data = split(honest_update(ctx))
        edit(header)
        return join(header, data)

    return build


def _overlap(h: dict[str, Any]) -> None:
    first, second = sorted((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][0])[:2]
    begin, end = h[second]["data_offsets"]
    h[second]["data_offsets"] = [begin - 4, end - 4]
    del first


def _extra_metadata_field(h: dict[str, Any]) -> None:
    inner = json.loads(h["__metadata__"]["meshprov"])
    inner["bonus"] = 1
    h["__metadata__"]["meshprov"] = json.dumps(inner, separators=(",", ":"), sort_keys=True)


def _tensors(make: Callable[[Tensors], Tensors]) -> Callable[[Context], bytes]:
    def build(ctx: Context) -> bytes:
        return encode(make(ctx.honest()), ctx.meta())

    return build


def _meta(**changes: Any) -> Callable[[Context], bytes]:
    def build(ctx: Context) -> bytes:
        return encode(ctx.honest(), ctx.meta(**changes))

    return build


def _with(key: str, value: NDArray[Any] | None) -> Callable[[Tensors], Tensors]:
    def make(t: Tensors) -> Tensors:
        t = dict(t)
        if value is None:
            del t[key]
        else:
            t[key] = value
        return t

    return make


def _poison(value: float) -> Callable[[Tensors], Tensors]:
    def make(t: Tensors) -> Tensors:
        t = {k: v.copy() for k, v in t.items()}
        t["linear.weight"][1, 3] = value
        return t

    return make


def _scaled(factor: float) -> Callable[[Tensors], Tensors]:
    def make(t: Tensors) -> Tensors:
        return {
            k: (v * v.dtype.type(factor)).astype(v.dtype) if v.dtype.kind == "f" else v for k, v in t.items()
        }

    return make


def _zero(t: Tensors) -> Tensors:
    return {k: np.zeros_like(v) if v.dtype.kind == "f" else v for k, v in t.items()}


def _copy_of_peer(ctx: Context) -> bytes:
    assert ctx.peer_delta is not None, "the duplicate case needs an earlier member's delta"
    return encode(ctx.peer_delta, ctx.meta())


def _other_cid() -> str:
    from ledger.content import digest_to_cid

    return digest_to_cid(b"\x22" * 32)


def _oversized(ctx: Context) -> bytes:
    # A real, well-formed file, just far too big: the fetcher must stop reading before it is all downloaded.
    t = dict(ctx.honest())
    t["padding"] = np.zeros(64 * 1024, np.float32)
    return encode(t, ctx.meta())


# --- the corpus ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    reason: Reason
    build: Callable[[Context], bytes]
    level: str = "update"
    odd_dag: bool = False
    """Stored as a UnixFS DAG Kubo's defaults would not produce (256-byte chunks): its CID is not the Kubo CID of
    its bytes. Through the pure functions the same case is a chain digest that is not the file's."""


F32 = np.float32
CASES: list[Case] = [
    Case("truncated in the data", Reason.TRUNCATED, lambda ctx: honest_update(ctx)[:-9]),
    Case("truncated in the length", Reason.TRUNCATED, lambda ctx: honest_update(ctx)[:5]),
    Case("header bomb", Reason.HEADER_TOO_LARGE, lambda ctx: struct.pack("<Q", 1 << 40) + b"{}" + b" " * 6),
    Case(
        "header longer than the file",
        Reason.TRUNCATED,
        lambda ctx: struct.pack("<Q", 4096) + b"{}" + b" " * 6,
    ),
    Case("header not json", Reason.HEADER_NOT_JSON, lambda ctx: struct.pack("<Q", 8) + b"{nope!!}"),
    Case("unknown dtype", Reason.UNKNOWN_DTYPE, _edit_header(lambda h: h["linear.bias"].update(dtype="C64"))),
    Case("overlapping offsets", Reason.BAD_OFFSETS, _edit_header(_overlap)),
    Case(
        "shape lies about size",
        Reason.BAD_SHAPE,
        _edit_header(lambda h: h["linear.weight"].update(shape=[4, 13])),
    ),
    Case("no metadata", Reason.BAD_METADATA, _edit_header(lambda h: h.pop("__metadata__"))),
    Case("extra metadata field", Reason.BAD_METADATA, _edit_header(_extra_metadata_field)),
    Case(
        "metadata names another round", Reason.METADATA_MISMATCH, lambda ctx: _meta(round=ctx.round + 1)(ctx)
    ),
    Case(
        "metadata names another contributor",
        Reason.METADATA_MISMATCH,
        lambda ctx: _meta(contributor=ctx.other_contributor)(ctx),
    ),
    Case("metadata names another base", Reason.METADATA_MISMATCH, _meta(base=_other_cid())),
    Case(
        "inflated num_samples",
        Reason.METADATA_MISMATCH,
        lambda ctx: _meta(num_samples=ctx.num_samples * 100)(ctx),
    ),
    Case("missing key", Reason.KEYS_MISMATCH, _tensors(_with("linear.bias", None))),
    Case("extra key", Reason.KEYS_MISMATCH, _tensors(_with("backdoor", np.ones(3, F32)))),
    Case("wrong shape", Reason.SHAPE_MISMATCH, _tensors(_with("linear.weight", np.zeros((12, 4), F32)))),
    Case(
        "wrong dtype",
        Reason.DTYPE_MISMATCH,
        _tensors(_with("linear.bias", np.zeros(OUT_FEATURES, np.float64))),
    ),
    Case("nan", Reason.NON_FINITE, _tensors(_poison(float("nan")))),
    Case("inf", Reason.NON_FINITE, _tensors(_poison(float("inf")))),
    Case("oversized", Reason.TOO_LARGE, _oversized),
    Case("cid mismatch", Reason.CID_MISMATCH, honest_update, odd_dag=True),
    Case("free rider (zero delta)", Reason.NORM_TOO_SMALL, _tensors(_zero)),
    Case("scaled x1000 (above the bound)", Reason.NORM_TOO_LARGE, _tensors(_scaled(1000.0))),
    Case(
        "scaled x30 (out of proportion to the base)", Reason.SCALE_OUT_OF_PROPORTION, _tensors(_scaled(30.0))
    ),
    Case("scaled x10", Reason.NORM_OUTLIER, _tensors(_scaled(10.0)), level="round"),
    Case("duplicate of an earlier update", Reason.DUPLICATE, _copy_of_peer, level="round"),
    Case("sign flipped", Reason.LOSS_REGRESSION, _tensors(_scaled(-1.0)), level="loss"),
]

SUBSET = (
    "header bomb",
    "truncated in the data",
    "wrong shape",
    "nan",
    "metadata names another round",
    "oversized",
    "cid mismatch",
    "scaled x10",
    "duplicate of an earlier update",
    "sign flipped",
)
"""Cases the end-to-end test submits on chain and sends through real validator processes."""


def case(name: str) -> Case:
    for c in CASES:
        if c.name == name:
            return c
    raise KeyError(name)


def put_odd_dag(store_root: Path, data: bytes, chunk_size: int = 256) -> str:
    """Put ``data`` into a local block store as a DAG of ``chunk_size`` chunks; return that DAG's CIDv0."""
    from ledger.content.local_store import LocalStore
    from ledger.content.unixfs import import_bytes

    store = LocalStore(store_root)

    def sink(digest: bytes, parts: Any) -> None:
        path = store.block_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(bytes(p) for p in parts))

    return import_bytes(data, on_block=sink, chunk_size=chunk_size).cid
