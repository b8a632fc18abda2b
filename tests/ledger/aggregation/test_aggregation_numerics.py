"""The fixed-order float64 sums and sorting networks that make aggregates identical on every machine."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.aggregation.numerics import (
    CHUNK,
    accumulate_chunks,
    add_sumsq,
    chunk_sums,
    selection_network,
    sort_rows,
    sorting_network,
)


def pairwise_reference(values: list[float]) -> float:
    """NumPy's ``pairwise_sum`` (numpy/_core/src/umath/loops_utils.h.src) transcribed: what the protocol relies on."""
    n = len(values)
    if n < 8:
        total = 0.0
        for v in values:
            total += v
        return total
    if n <= 128:
        r = values[:8]
        i = 8
        while i < n - n % 8:
            r = [r[k] + values[i + k] for k in range(8)]
            i += 8
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for v in values[i:]:
            total += v
        return total
    half = n // 2
    half -= half % 8
    return pairwise_reference(values[:half]) + pairwise_reference(values[half:])


def hashed_vector(n: int) -> np.ndarray:
    """A platform-independent test vector: integer hashing only, no RNG stream or libm involved."""
    k = np.arange(n, dtype=np.uint64)
    mixed = (k * np.uint64(2654435761) + np.uint64(12345)) % np.uint64(1 << 32)
    return mixed.astype(np.float64) / float(1 << 32) - 0.5


@pytest.mark.parametrize("n", [1, 7, 8, 9, 127, 128, 129, 1000, 4099])
def test_numpy_reduce_is_the_pairwise_sum_the_protocol_assumes(n: int) -> None:
    x = hashed_vector(n) * 1e3
    assert float(np.add.reduce(x)) == pairwise_reference(x.tolist())


def test_chunk_sums_match_the_one_dimensional_reduce_of_each_chunk() -> None:
    x = hashed_vector(2 * CHUNK + 77).reshape(1, -1)
    rows = np.vstack([x, x[:, ::-1] * 3.0])
    sums = chunk_sums(rows)
    assert sums.shape == (2, 3)
    for r in range(2):
        for c in range(3):
            chunk = np.ascontiguousarray(rows[r, c * CHUNK : (c + 1) * CHUNK])
            assert sums[r, c] == float(np.add.reduce(chunk))


def test_chunk_sums_work_on_rows_of_a_wider_buffer() -> None:
    buf = np.zeros((3, 3 * CHUNK))
    buf[:, : CHUNK + 5] = hashed_vector(3 * (CHUNK + 5)).reshape(3, -1)
    narrow = buf[:, : CHUNK + 5]
    assert np.array_equal(chunk_sums(narrow), chunk_sums(np.ascontiguousarray(narrow)))


def test_sum_of_squares_golden_value() -> None:
    # Pins chunking + pairwise + sequential order: if any of them changed, clipping factors, Krum distances and so
    # aggregate CIDs would change with it.
    assert CHUNK == 8192
    x = hashed_vector(3 * CHUNK + 1000)
    total = add_sumsq(0.0, x.copy(), np.empty_like(x))
    assert total.hex() == "0x1.0a6d4ccc626b0p+11"
    expected = 0.0
    for c in range(0, x.size, CHUNK):
        expected += pairwise_reference((x[c : c + CHUNK] ** 2).tolist())
    assert total == expected


def test_accumulate_chunks_adds_in_chunk_order() -> None:
    acc = np.array([0.0])
    accumulate_chunks(acc, np.array([[1e16, 1.0, 1.0]]))
    # left to right: (1e16 + 1) + 1 rounds twice to 1e16; any other order could give 1e16 + 2
    assert acc[0] == 1e16


def test_sorting_network_sorts_every_zero_one_input() -> None:
    # The 0-1 principle: a comparator network that sorts every 0/1 sequence sorts every sequence.
    for n in range(1, 13):
        net = sorting_network(n)
        for bits in itertools.product((0, 1), repeat=n):
            v = list(bits)
            for a, b in net:
                if v[a] > v[b]:
                    v[a], v[b] = v[b], v[a]
            assert v == sorted(bits), (n, bits)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_sort_rows_sorts_each_column(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = rng.integers(-3, 4, size=(n, 11)).astype(np.float64)  # many ties
    rows = [data[i].copy() for i in range(n)]
    out, _spare = sort_rows(rows, sorting_network(n), np.empty(11))
    assert np.array_equal(np.vstack(out), np.sort(data, axis=0))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 33), st.data())
def test_selection_network_gets_the_wanted_positions_right(n: int, data: st.DataObject) -> None:
    lo = data.draw(st.integers(0, (n - 1) // 2))
    wanted = tuple(range(lo, n - lo))
    rng = np.random.default_rng(n * 1000 + lo)
    values = rng.standard_normal((n, 9))
    out, _ = sort_rows([values[i].copy() for i in range(n)], selection_network(n, wanted), np.empty(9))
    expected = np.sort(values, axis=0)
    for pos in wanted:
        assert np.array_equal(out[pos], expected[pos])
    assert len(selection_network(n, wanted)) <= len(sorting_network(n))


def test_median_selection_prunes_comparators() -> None:
    assert len(selection_network(16, (7, 8))) < len(sorting_network(16))
