"""Rule ids, the packed uint32 parameter and the digest order of inputs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.aggregation import AggregationSpec, ClipBound, DuplicateInput, Rule, SpecError, sort_by_digest
from ledger.errors import ConfigError


def test_rule_ids_are_the_on_chain_numbers() -> None:
    assert [(r.value, r.slug) for r in Rule] == [
        (0, "fedavg"),
        (1, "trimmed-mean"),
        (2, "median"),
        (3, "multi-krum"),
    ]
    assert Rule.from_slug("Trimmed_Mean") is Rule.TRIMMED_MEAN


@pytest.mark.parametrize(
    ("spec", "param"),
    [
        (AggregationSpec.fedavg(), 0),
        (AggregationSpec.median(), 0),
        (AggregationSpec.trimmed_mean(0.1), 1000),
        (AggregationSpec.trimmed_mean("0.4999"), 4999),
        (AggregationSpec.multi_krum(2), 2),
        (AggregationSpec.multi_krum(2, 5), 2 | 5 << 8),
        # 2.5 = 25 * 10**(5 - 6): mantissa 25 in bits 16-27, exponent 5 in bits 28-31
        (AggregationSpec.fedavg(clip=2.5), (25 << 16) | (5 << 28)),
        (AggregationSpec.median(clip="0.001"), (1 << 16) | (3 << 28)),
        (AggregationSpec.trimmed_mean(0.2, clip=1000), 2000 | (1 << 16) | (9 << 28)),
    ],
)
def test_packing_examples(spec: AggregationSpec, param: int) -> None:
    assert spec.encode() == param
    assert AggregationSpec.decode(spec.rule_id, param) == spec


@given(
    st.sampled_from(list(Rule)),
    st.integers(1, 4999),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 4095),
    st.integers(0, 15),
)
def test_encode_decode_round_trip(rule: Rule, bp: int, f: int, m: int, mant: int, exp: int) -> None:
    clip = ClipBound(mant, exp) if mant else None
    if rule is Rule.TRIMMED_MEAN:
        spec = AggregationSpec(rule, trim_bp=bp, clip=clip)
    elif rule is Rule.MULTI_KRUM:
        spec = AggregationSpec(rule, krum_f=f, krum_m=m, clip=clip)
    else:
        spec = AggregationSpec(rule, clip=clip)
    param = spec.encode()
    assert 0 <= param < 2**32
    assert AggregationSpec.decode(rule, param) == spec


@pytest.mark.parametrize(
    ("bound", "value"),
    [("2.5", 2.5), (0.001, 0.001), ("0.000001", 1e-6), (10, 10.0), ("4095e9", 4.095e12), ("1e10", 1e10)],
)
def test_clip_bound_is_decoded_exactly(bound: object, value: float) -> None:
    clip = ClipBound.of(bound)  # type: ignore[arg-type]
    assert clip.value == value
    decoded = AggregationSpec.decode(0, AggregationSpec(Rule.FEDAVG, clip=clip).encode()).clip_norm
    assert decoded == value


@pytest.mark.parametrize("bound", ["1.2345", "1e-7", "5e12", "0", "-1", "nan", "inf", "abc"])
def test_clip_bounds_that_would_round_are_refused(bound: str) -> None:
    with pytest.raises(SpecError):
        ClipBound.of(bound)


@pytest.mark.parametrize(
    ("rule_id", "param"),
    [
        (4, 0),  # unknown rule
        (0, 1),  # fedavg takes no argument
        (2, 7),  # nor does the median
        (1, 5000),  # trimming half from each end leaves nothing
        (1, 0),  # a trimmed mean that trims nothing (the contract refuses it too)
        (0, 2**32),  # not a uint32
    ],
)
def test_invalid_chain_values_are_spec_errors(rule_id: int, param: int) -> None:
    with pytest.raises(SpecError) as info:
        AggregationSpec.decode(rule_id, param)
    assert isinstance(info.value, ConfigError)


def test_every_parameter_the_contract_accepts_decodes() -> None:
    # MeshLedger._ruleFits checks only the low 16 bits: an exponent without mantissa must still decode (no clip)
    spec = AggregationSpec.decode(0, 7 << 28)
    assert spec == AggregationSpec.fedavg()
    assert spec.encode() == 0  # re-encoded canonically
    assert AggregationSpec.decode(3, 0xFFFF).krum_m == 255


def test_trim_fraction_must_be_a_whole_basis_point() -> None:
    with pytest.raises(SpecError):
        AggregationSpec.trimmed_mean(0.00015)


def test_trim_count_floors_per_side() -> None:
    spec = AggregationSpec.trimmed_mean(0.2)
    assert [spec.trim_count(n) for n in (1, 4, 5, 9, 10, 16)] == [0, 0, 1, 1, 2, 3]
    assert [AggregationSpec.median().trim_count(n) for n in (1, 2, 3, 16, 17)] == [0, 0, 1, 7, 8]


def test_describe_and_str() -> None:
    spec = AggregationSpec.multi_krum(1, 3, clip="2.5")
    assert spec.describe() == {
        "rule": "multi-krum",
        "rule_id": 3,
        "param": spec.encode(),
        "f": 1,
        "m": 3,
        "clip": "2.5",
    }
    assert str(spec) == "multi-krum(f=1, m=3, clip=2.5)"
    assert str(AggregationSpec.trimmed_mean(0.1)) == "trimmed-mean(trim=0.1)"


def test_inputs_are_ordered_by_raw_digest_bytes() -> None:
    digests = [bytes([0xFF] + [0] * 31), bytes([0x01] + [0xFF] * 31), bytes(32)]
    assert sort_by_digest(digests, lambda d: d) == [digests[2], digests[1], digests[0]]
    assert [d.hex() for d in sort_by_digest(digests, lambda d: d)] == sorted(d.hex() for d in digests)


def test_a_digest_given_twice_is_refused() -> None:
    with pytest.raises(DuplicateInput):
        sort_by_digest([b"a" * 32, b"b" * 32, b"a" * 32], lambda d: d)
