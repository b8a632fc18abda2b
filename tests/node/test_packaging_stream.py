"""The member's update serialized straight into the store (node.packaging.store_update) and the update file
hashed while it is written (write_update_file): the same bytes and CID as the reference writer
(ledger.updatefile.write_update) followed by a put of the file, for many shapes, dtypes and sizes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.content.local_store import LocalStore
from ledger.content.unixfs import CHUNK_SIZE, Progress
from ledger.updatefile import UpdateMeta, file_tensors, write_update
from ledger.updatefile.format import TensorSpec, encode_header
from node.packaging import put_update, store_update, write_update_file

BASE = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
MEMBER = "0x" + "ab" * 20
KW: dict[str, Any] = {"task": 3, "round_": 7, "base": BASE, "contributor": MEMBER, "num_samples": 42}


def _meta() -> UpdateMeta:
    return UpdateMeta(task=3, round=7, base=BASE, contributor=MEMBER, num_samples=42)


def _padded_to(total: int, others: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``others`` plus a uint8 tensor sized so that the whole file is exactly ``total`` bytes."""
    data = sum(v.nbytes for v in others.values())
    n = 0
    for _ in range(10):
        specs = {
            k: TensorSpec.of(v, k) for k, v in file_tensors({**others, "pad": np.zeros(n, np.uint8)}).items()
        }
        want = total - len(encode_header(specs, _meta().to_json())) - data
        if want == n:
            break
        n = want
    rng = np.random.default_rng(total)
    return {**others, "pad": rng.integers(0, 255, n, dtype=np.uint8)}


def _cases() -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    rng = np.random.default_rng(1)
    yield "one float32", {"w": rng.standard_normal((300, 200)).astype(np.float32)}
    yield (
        "empty tensors",
        {"e": np.zeros((0,), np.float32), "f": np.zeros((3, 0), np.float16), "g": np.ones(5)},
    )
    yield "only empty", {"e": np.zeros((0, 4), np.float32)}
    yield "scalar", {"s": np.array(1.5, np.float32)}
    yield (
        "every dtype",
        {
            "bool": rng.integers(0, 2, 1000).astype(bool),
            "u8": rng.integers(0, 255, 1001, dtype=np.uint8),
            "i8": rng.integers(-100, 100, 999, dtype=np.int8),
            "i16": rng.integers(-1000, 1000, 777, dtype=np.int16),
            "f16": rng.standard_normal(513).astype(np.float16),
            "bf16": rng.integers(0, 65535, 4097, dtype=np.uint16),
            "i32": rng.integers(-(10**6), 10**6, 300, dtype=np.int32),
            "f32": rng.standard_normal((7, 11, 13)).astype(np.float32),
            "f64": rng.standard_normal(2000),
            "i64": rng.integers(-(10**9), 10**9, 100, dtype=np.int64),
        },
    )
    yield (
        "not C-contiguous or big-endian",
        {
            "t": rng.standard_normal((400, 300)).astype(np.float32).T,
            "s": rng.standard_normal(1000).astype(np.float32)[::3],
            "be": rng.standard_normal(5000).astype(">f4"),
        },
    )
    yield (
        "several chunks",
        {
            "a": rng.standard_normal(3 * CHUNK_SIZE // 4 + 11).astype(np.float32),
            "b": rng.standard_normal(CHUNK_SIZE // 8).astype(np.float64),
        },
    )
    yield (
        "two levels (over 174 leaves)",
        {"big": rng.standard_normal(175 * CHUNK_SIZE // 4).astype(np.float32)},
    )
    for chunks in (1, 2, 174):
        for extra in (-1, 0, 1):
            total = chunks * CHUNK_SIZE + extra
            yield (
                f"{chunks} chunks {extra:+d}",
                _padded_to(total, {"w": rng.standard_normal(100).astype(np.float32)}),
            )


CASES = list(_cases())


@pytest.mark.parametrize(("name", "delta"), CASES, ids=[c[0] for c in CASES])
def test_streamed_update_matches_the_reference_file_and_its_put(
    tmp_path: Path, name: str, delta: dict[str, np.ndarray]
) -> None:
    reference = write_update(tmp_path / "ref.safetensors", file_tensors(delta), _meta())
    if " chunks " in name:
        chunks, extra = name.split(" chunks ")
        assert reference.size == int(chunks) * CHUNK_SIZE + int(extra)
    by_file = LocalStore(tmp_path / "a")
    assert put_update(by_file, reference) == reference.cid

    written = write_update_file(tmp_path / "node" / "u.safetensors", delta, **KW)
    assert written.path.read_bytes() == reference.path.read_bytes()
    assert (written.size, written.cid) == (reference.size, reference.cid)
    assert sorted(p.name for p in written.path.parent.iterdir()) == ["u.safetensors"]  # no temporary left

    streamed = LocalStore(tmp_path / "b")
    seen: list[int] = []
    stored = store_update(streamed, delta, progress=seen.append, **KW)
    assert (stored.cid, stored.size) == (reference.cid, reference.size)
    assert sum(seen) == reference.size
    assert streamed.stat(stored.cid).pinned
    assert b"".join(bytes(c) for c in streamed.get(stored.cid)) == reference.path.read_bytes()


class _FileOnlyStore:
    """A store that takes files only (as Kubo and gateways do): store_update spills to a temporary file."""

    def __init__(self, inner: LocalStore) -> None:
        self.inner = inner
        self.paths: list[Path] = []

    def put_file(self, path: str | os.PathLike[str], *, progress: Progress | None = None) -> str:
        self.paths.append(Path(path))
        return self.inner.put_file(path, progress=progress)


def test_a_store_that_takes_files_gets_a_temporary_file_that_is_removed(tmp_path: Path) -> None:
    delta = dict(CASES[0][1])
    reference = write_update(tmp_path / "ref.safetensors", file_tensors(delta), _meta())
    store = _FileOnlyStore(LocalStore(tmp_path / "s"))
    spill = tmp_path / "spill"
    spill.mkdir()
    stored = store_update(store, delta, spill_dir=spill, **KW)  # type: ignore[arg-type]
    assert stored.cid == reference.cid
    assert len(store.paths) == 1
    assert store.paths[0].parent.parent == spill
    assert list(spill.iterdir()) == []


def test_a_failed_serialization_leaves_no_root_no_pin_and_no_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    rng = np.random.default_rng(2)
    delta = {"a": rng.standard_normal(CHUNK_SIZE).astype(np.float32), "z": np.zeros(3, np.complex64)}
    with pytest.raises(Exception, match="complex64"):
        store_update(store, delta, **KW)
    assert list((store.root / ".pins").iterdir()) == []
    with pytest.raises(Exception, match="complex64"):
        write_update_file(tmp_path / "out" / "u.safetensors", delta, **KW)
    assert list((tmp_path / "out").iterdir()) == []
