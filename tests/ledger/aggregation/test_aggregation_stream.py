"""The streaming driver: memory-mapped files, block boundaries, bounded memory, dtypes and refusals."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from ledger.aggregation import (
    AggregationSpec,
    ArraySource,
    BadSampleCount,
    Contribution,
    DuplicateInput,
    InputMismatch,
    NoInputs,
    NonFiniteAggregate,
    aggregate,
    prepare,
)
from ledger.aggregation.numerics import CHUNK
from ledger.aggregation.stream import release_pages
from tests.ledger.aggregation.test_aggregation_rules import contributions, digest_of, make_round

ALL_SPECS = [
    AggregationSpec.fedavg(),
    AggregationSpec.fedavg(clip="40"),
    AggregationSpec.median(),
    AggregationSpec.median(clip="40"),
    AggregationSpec.trimmed_mean(0.2),
    AggregationSpec.multi_krum(1),
    AggregationSpec.multi_krum(1, 2, clip="40"),
]

_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}


class MemmapSource:
    """A minimal safetensors reader with memory-mapped tensors (what ledger.updatefile.UpdateFile provides)."""

    def __init__(self, path: Path) -> None:
        raw = path.read_bytes()[:8]
        (length,) = struct.unpack("<Q", raw)
        header = json.loads(path.read_bytes()[8 : 8 + length])
        header.pop("__metadata__", None)
        self._path = path
        self._data = 8 + length
        self._header = header

    def keys(self) -> list[str]:
        return sorted(self._header)

    def dtype(self, key: str) -> str:
        return str(self._header[key]["dtype"])

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._header[key]["shape"])

    def tensor(self, key: str) -> np.ndarray:
        entry = self._header[key]
        start, _ = entry["data_offsets"]
        return np.memmap(
            self._path,
            dtype=_DTYPES[entry["dtype"]],
            mode="r",
            offset=self._data + start,
            shape=tuple(entry["shape"]),
        )


def to_files(tmp_path: Path, models: list[dict[str, np.ndarray]], counts: list[int]) -> list[Contribution]:
    out = []
    for i, (m, c) in enumerate(zip(models, counts, strict=True)):
        path = tmp_path / f"u{i}.safetensors"
        save_file(m, str(path))
        out.append(Contribution(digest_of(i), MemmapSource(path), c))
    return out


@pytest.mark.parametrize("spec", ALL_SPECS, ids=str)
def test_memory_mapped_files_and_tiny_blocks_give_identical_bytes(
    tmp_path: Path, spec: AggregationSpec
) -> None:
    # one tensor spans several chunks and blocks; a tiny memory budget forces many blocks per tensor
    shapes = {"big": (3 * CHUNK + 123,), "m": (40, 30), "s": ()}
    base, models, counts = make_round(11, 5, shapes)
    models = [{k: np.asarray(v * np.float32(0.1)) for k, v in m.items()} for m in models]
    in_memory = aggregate(ArraySource(base), contributions(models, counts), spec)
    mapped = aggregate(ArraySource(base), to_files(tmp_path, models, counts), spec, memory_budget=1 << 16)
    for key, value in in_memory.items():
        assert value.tobytes() == mapped[key].tobytes(), key


def test_tensors_stream_in_sorted_key_order_with_base_dtype_and_shape() -> None:
    base = {"z": np.zeros((2, 3), np.float16), "a": np.zeros(4, np.float64), "m": np.zeros((), np.float32)}
    models = [{k: np.ones_like(v) for k, v in base.items()} for _ in range(3)]
    agg = prepare(ArraySource(base), contributions(models, [1, 2, 3]), AggregationSpec.fedavg())
    seen = [(k, v.dtype, v.shape) for k, v in agg.tensors()]
    assert seen == [("a", np.float64, (4,)), ("m", np.float32, ()), ("z", np.float16, (2, 3))]


def test_integer_buffers_are_rounded_and_take_no_part_in_norms() -> None:
    base = {"w": np.zeros(3, np.float32), "steps": np.array(100, np.int64)}
    models = [
        {"w": np.full(3, 0.1, np.float32), "steps": np.array(10, np.int64)},
        {"w": np.full(3, 0.2, np.float32), "steps": np.array(15, np.int64)},
    ]
    agg = prepare(ArraySource(base), contributions(models, [1, 1]), AggregationSpec.fedavg(clip="1"))
    assert agg.norms is not None
    np.testing.assert_allclose(agg.norms, [np.sqrt(3) * 0.1, np.sqrt(3) * 0.2], rtol=1e-6)
    out = dict(agg.tensors())
    assert out["steps"].dtype == np.int64
    assert int(out["steps"]) == 112  # 100 + 12.5 rounded half to even
    np.testing.assert_allclose(out["w"], 0.15, rtol=1e-6)


def test_outputs_that_overflow_the_dtype_are_refused() -> None:
    base = {"w": np.full(2, 60000, np.float16)}
    models = [{"w": np.full(2, 30000, np.float16)}]
    with pytest.raises(NonFiniteAggregate, match="float16"):
        aggregate(ArraySource(base), contributions(models, [1]), AggregationSpec.fedavg())


@pytest.mark.parametrize(
    "spec", [AggregationSpec.fedavg(), AggregationSpec.fedavg(clip=1), AggregationSpec.median()]
)
def test_non_finite_inputs_never_produce_an_aggregate(spec: AggregationSpec) -> None:
    base = {"w": np.zeros(4, np.float32)}
    models = [{"w": np.array([0, np.nan, 0, 0], np.float32)}, {"w": np.ones(4, np.float32)}]
    with pytest.raises(NonFiniteAggregate):
        aggregate(ArraySource(base), contributions(models, [1, 1]), spec)


def test_refusals() -> None:
    base = {"w": np.zeros(4, np.float32)}
    good = {"w": np.ones(4, np.float32)}
    with pytest.raises(NoInputs):
        prepare(ArraySource(base), [], AggregationSpec.fedavg())
    c = Contribution(b"\x01" * 32, ArraySource(good), 1)
    with pytest.raises(DuplicateInput):
        prepare(ArraySource(base), [c, c], AggregationSpec.median())
    bad_inputs: list[tuple[dict[str, Any], str]] = [
        ({"w": np.ones(5, np.float32)}, "shape"),
        ({"w": np.ones(4, np.float64)}, "dtype"),
        ({"w": np.ones(4, np.float32), "extra": np.ones(1, np.float32)}, "key set"),
        ({}, "key set"),
    ]
    for tensors, what in bad_inputs:
        with pytest.raises(InputMismatch, match=what):
            prepare(
                ArraySource(base),
                [Contribution(b"\x02" * 32, ArraySource(tensors), 1)],
                AggregationSpec.fedavg(),
            )
    for counts in ([0], [-3], [True], [10_001], [2**64 - 1]):
        with pytest.raises(BadSampleCount):
            prepare(
                ArraySource(base),
                [Contribution(b"\x03" * 32, ArraySource(good), counts[0])],
                AggregationSpec.fedavg(),
            )


def test_summary_names_inputs_in_digest_order_and_the_selection() -> None:
    base, models, counts = make_round(1, 4, {"w": (6,)})
    agg = prepare(
        ArraySource(base), contributions(models, counts), AggregationSpec.multi_krum(1, 2, clip="5")
    )
    summary = agg.summary()
    assert summary["inputs"] == sorted(digest_of(i).hex() for i in range(4))
    assert len(summary["selected"]) == 2
    assert set(summary["selected"]) <= set(summary["inputs"])
    assert summary["rule"] == "multi-krum"
    assert summary["clip"] == "5"
    assert len(summary["krum_scores"]) == 4
    json.dumps(summary)


def _peak_while_streaming(n: int) -> int:
    size = 1 << 20
    rng = np.random.default_rng(0)
    base = ArraySource({"w": np.zeros(size, np.float32)})
    one = rng.standard_normal(size).astype(np.float32)
    # every input shares one array: the inputs cost no traced memory, only the driver's own allocations count
    contribs = [Contribution(digest_of(i), ArraySource({"w": one}), 1) for i in range(n)]
    peak = 0
    for spec in (AggregationSpec.fedavg(clip="1"), AggregationSpec.median(), AggregationSpec.multi_krum(1)):
        tracemalloc.start()
        try:
            for _key, value in prepare(base, contribs, spec, memory_budget=8 << 20).tensors():
                del value
            peak = max(peak, tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return peak


def test_memory_grows_with_the_model_not_with_the_number_of_updates() -> None:
    small, large = _peak_while_streaming(4), _peak_while_streaming(32)
    model = 4 << 20
    assert large < model + (9 << 20)  # one output tensor plus the 8 MiB scratch budget
    assert large < small + (
        7 << 20
    )  # 8x the inputs: only the order-statistics stack grows, within the budget


def test_release_pages_gives_mapped_pages_back(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(np.arange(8 << 20, dtype=np.float32).tobytes())  # 32 MiB
    mapped = np.memmap(path, dtype=np.float32, mode="r")

    def rss_file_kib() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssFile:"):
                return int(line.split()[1])
        raise AssertionError("no RssFile")

    before = rss_file_kib()
    assert float(mapped[::1024].sum()) > 0  # touch every page
    touched = rss_file_kib()
    release_pages(mapped[: 8 << 20])
    after = rss_file_kib()
    assert touched - before > 16 << 10
    assert touched - after > 16 << 10
    assert float(mapped[-1]) == (8 << 20) - 1  # still readable after release
    release_pages(np.zeros(1 << 20, np.float32))  # plain arrays are left alone


class Bf16Source:
    """Tensors declared ``BF16`` and given as uint16 bit patterns, as ledger.updatefile reads them."""

    def __init__(self, values: dict[str, np.ndarray]) -> None:
        self._bits = {
            k: (np.asarray(v, np.float32).view(np.uint32) >> 16).astype(np.uint16) for k, v in values.items()
        }

    def keys(self) -> list[str]:
        return sorted(self._bits)

    def dtype(self, key: str) -> str:
        return "BF16"

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._bits[key].shape)

    def tensor(self, key: str) -> np.ndarray:
        return self._bits[key]


def test_bfloat16_tensors_are_parameters_and_come_back_as_bfloat16_bits() -> None:
    base = Bf16Source({"w": np.array([1.0, -2.0, 0.0], np.float32)})
    updates = [
        Contribution(b"\x01" * 32, Bf16Source({"w": np.array([0.5, 0.0, 3.0], np.float32)}), 1),
        Contribution(b"\x02" * 32, Bf16Source({"w": np.array([0.25, 0.0, 4.0], np.float32)}), 3),
    ]
    agg = prepare(base, updates, AggregationSpec.fedavg(clip="10"))
    assert agg.norms == (pytest.approx(np.sqrt(0.25 + 9)), pytest.approx(np.sqrt(0.0625 + 16)))
    out = dict(agg.tensors())["w"]
    assert out.dtype == np.uint16
    as_float = (out.astype(np.uint32) << 16).view(np.float32)
    # (1*0.5 + 3*0.25)/4 = 0.3125; (1*3 + 3*4)/4 = 3.75: all exact in bfloat16
    assert as_float.tolist() == [1.3125, -2.0, 3.75]


def test_bfloat16_inputs_must_match_a_bfloat16_base() -> None:
    base = Bf16Source({"w": np.zeros(3, np.float32)})
    wrong = Contribution(b"\x01" * 32, ArraySource({"w": np.zeros(3, np.float16)}), 1)
    with pytest.raises(InputMismatch, match="dtype"):
        prepare(base, [wrong], AggregationSpec.fedavg())
    # meshprov stores no U16: a uint16 array is bfloat16 bits, as node.statedict hands them over
    bits = Contribution(b"\x01" * 32, ArraySource({"w": np.zeros(3, np.uint16)}), 1)
    assert prepare(base, [bits], AggregationSpec.fedavg()).layout[0].bfloat16
