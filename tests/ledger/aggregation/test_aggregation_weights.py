"""FedAvg weighs by consensus (protocol R2, R5): the weight source, its bounds, and what a file records."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

from ledger.aggregation import (
    MAX_WEIGHT,
    AggregationSpec,
    ArraySource,
    BadWeight,
    Contribution,
    aggregate,
    consensus_weights,
    prepare,
    write_aggregation,
)
from ledger.content.unixfs import import_file
from ledger.updatefile import (
    AggregateMeta,
    GenesisMeta,
    UpdateFile,
    UpdateMeta,
    write_aggregate,
    write_update,
)

ALICE = "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"
BOB = "0xAb8483F64d9C6d1EcF9b849Ae677dD3315835cb2"


def test_the_weights_are_the_accepted_updates_consensus() -> None:
    consensus = [7_000, -10_000, 0, 1, 10_000]
    assert consensus_weights(consensus, 0b11001) == {0: 7_000, 3: 1, 4: 10_000}
    assert consensus_weights(consensus, 0) == {}


@pytest.mark.parametrize(
    ("consensus", "bitmap", "why"),
    [
        ([5_000, 0], 0b10, "consensus 0"),
        ([-3], 0b1, "consensus -3"),
        ([10_001], 0b1, "consensus 10001"),
        ([5_000], 0b100, "update 2 is accepted"),
        ([5_000], -1, "negative"),
    ],
)
def test_an_accepted_update_without_a_positive_bounded_consensus_is_refused(
    consensus: list[int], bitmap: int, why: str
) -> None:
    with pytest.raises(BadWeight, match=why):
        consensus_weights(consensus, bitmap)


def _round() -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(4)
    base = {"w": rng.standard_normal(64).astype(np.float32)}
    return base, [{"w": (0.1 * rng.standard_normal(64)).astype(np.float32)} for _ in range(3)]


def test_fedavg_weighs_by_consensus_and_never_by_the_claimed_samples() -> None:
    base, deltas = _round()
    weights = [10_000, 2_500, 1]
    inflated = [2**64 - 1, 1, 2**32]  # what members might claim: no part of the arithmetic
    contribs = [
        Contribution(bytes([i + 1]) * 32, ArraySource(d), w, num_samples=n)
        for i, (d, w, n) in enumerate(zip(deltas, weights, inflated, strict=True))
    ]
    got = aggregate(ArraySource(base), contribs, AggregationSpec.fedavg())["w"]
    mean = sum(w * d["w"].astype(np.float64) for w, d in zip(weights, deltas, strict=True)) / sum(weights)
    np.testing.assert_allclose(got, base["w"] + mean, rtol=1e-6, atol=1e-7)
    # The same weights with other claimed counts: the same bytes.
    honest = [Contribution(c.digest, c.source, c.weight, num_samples=10) for c in contribs]
    again = aggregate(ArraySource(base), honest, AggregationSpec.fedavg())["w"]
    assert again.tobytes() == got.tobytes()
    # A weight at the bound (a perfect score) against the smallest: at most 10,000 to 1.
    assert MAX_WEIGHT == 10_000


@pytest.mark.parametrize(
    "spec",
    [AggregationSpec.trimmed_mean(0.2), AggregationSpec.median(), AggregationSpec.multi_krum(1)],
    ids=str,
)
def test_the_robust_rules_ignore_the_weights_of_the_accepted_set(spec: AggregationSpec) -> None:
    base, deltas = _round()
    light = [Contribution(bytes([i + 1]) * 32, ArraySource(d), 1) for i, d in enumerate(deltas)]
    heavy = [Contribution(c.digest, c.source, MAX_WEIGHT - i) for i, c in enumerate(light)]
    a = aggregate(ArraySource(base), light, spec)["w"]
    b = aggregate(ArraySource(base), heavy, spec)["w"]
    assert a.tobytes() == b.tobytes()
    with pytest.raises(BadWeight):  # a weight no consensus can be is refused whatever the rule
        prepare(ArraySource(base), [Contribution(b"\x09" * 32, ArraySource(deltas[0]), 0)], spec)


def test_the_aggregate_file_records_the_weights_and_replays_bit_for_bit(tmp_path: Path) -> None:
    """What the aggregator writes from ``tally`` and an auditor from ``RoundFinalized`` (the same consensus and
    bitmap through ``consensus_weights``) is the same file; other weights give another CID."""
    base, deltas = _round()
    base_path = tmp_path / "base.safetensors"
    base_cid = write_aggregate(base_path, base, GenesisMeta(model="m")).cid
    paths = []
    for i, (who, d) in enumerate(zip([ALICE, BOB, ALICE], deltas, strict=True)):
        path = tmp_path / f"u{i}.safetensors"
        write_update(
            path, d, UpdateMeta(task=1, round=2, base=base_cid, contributor=who, num_samples=100 * (i + 1))
        )
        paths.append(path)
    consensus, accepted = [6_000, -10_000, 9_000], 0b101

    def write(out: Path, weights: dict[int, int]) -> str:
        with contextlib.ExitStack() as stack:
            b = stack.enter_context(UpdateFile.open(base_path))
            contribs = [
                Contribution(import_file(paths[i]).digest, stack.enter_context(UpdateFile.open(paths[i])), w)
                for i, w in weights.items()
            ]
            agg = prepare(b, contribs, AggregationSpec.fedavg())
            return write_aggregation(out, agg, task=1, round=2, parent=base_cid).cid

    first = write(tmp_path / "a.safetensors", consensus_weights(consensus, accepted))
    replay = write(tmp_path / "b.safetensors", consensus_weights(list(consensus), accepted))
    assert first == replay
    with UpdateFile.open(tmp_path / "a.safetensors", kind="aggregate") as f:
        meta = f.metadata
        assert isinstance(meta, AggregateMeta)
        by_digest = {import_file(paths[0]).digest: 6_000, import_file(paths[2]).digest: 9_000}
        assert list(meta.params["weights"]) == [by_digest[d] for d in meta.input_digests]
    assert write(tmp_path / "c.safetensors", {0: 9_000, 2: 6_000}) != first
