"""Update, aggregate and genesis files: deterministic bytes, safetensors compatibility, strict metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save

from ledger.content import cid_of_file
from ledger.content.multiformats import CID
from ledger.reasons import Reason
from ledger.updatefile import (
    BF16,
    AggregateMeta,
    GenesisMeta,
    InvalidTensors,
    MetadataRejected,
    NotCanonical,
    TensorSpec,
    UpdateFile,
    UpdateMeta,
    bf16_to_float32,
    canonical_json,
    encode,
    float32_to_bf16,
    open_writer,
    parse_canonical,
    parse_metadata,
    write_aggregate,
    write_update,
)

BASE = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
BASE_V1 = "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"
ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
NUMPY_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_]


def meta(**overrides: Any) -> UpdateMeta:
    fields: dict[str, Any] = {"task": 1, "round": 3, "base": BASE, "contributor": ADDRESS, "num_samples": 120}
    return UpdateMeta(**{**fields, **overrides})


def state(seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "fc.weight": rng.standard_normal((4, 3)).astype(np.float32),
        "fc.bias": rng.standard_normal(4).astype(np.float32),
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
        "emb": rng.standard_normal((2, 2)).astype(np.float16),
        "mask": np.array([True, False, True]),
        "empty": np.zeros((0, 5), np.float64),
    }


# --- writing -------------------------------------------------------------------------------------------------
def test_update_metadata_is_canonical_json_with_the_documented_fields() -> None:
    m = meta(privacy={"noise_multiplier": 1.1, "clip": 1.0, "epsilon": 3, "delta": 1e-05})
    assert m.to_json() == (
        '{"base":"QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o","contributor":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",'
        '"kind":"update","num_samples":120,"privacy":{"clip":1.0,"delta":1e-05,"epsilon":3,"noise_multiplier":1.1},'
        '"round":3,"schema":1,"task":1}'
    )
    assert parse_metadata(m.to_json()) == m


def test_written_update_reads_back(tmp_path: Path) -> None:
    tensors = state()
    written = write_update(tmp_path / "u.safetensors", tensors, meta())
    assert written.size == (tmp_path / "u.safetensors").stat().st_size
    assert written.cid == cid_of_file(written.path)
    with UpdateFile.open(written.path, kind="update") as f:
        assert f.metadata == meta()
        assert f.keys() == sorted(tensors)
        for key, value in tensors.items():
            array = f.tensor(key)
            assert f.shape(key) == value.shape
            assert f.numpy_dtype(key) == value.dtype
            np.testing.assert_array_equal(array, value)
            assert not array.flags.writeable
        assert f.dtype("fc.weight") == "F32"
        assert f.dtype("mask") == "BOOL"
        assert isinstance(f.tensor("fc.weight"), np.memmap)
        with pytest.raises(ValueError, match="read-only"):
            f.tensor("fc.bias")[0] = 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["u.safetensors"]


def test_bytes_equal_safetensors_numpy_save_with_one_metadata_key() -> None:
    tensors = state()
    assert encode(tensors, meta()) == save(tensors, metadata={"meshprov": meta().to_json()})


names = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=12).filter(
    lambda s: s != "__metadata__"
)
arrays = st.tuples(st.sampled_from(NUMPY_DTYPES), st.lists(st.integers(0, 3), max_size=3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(names, arrays, max_size=6), st.integers(0, 2**32 - 1))
def test_bytes_equal_safetensors_for_any_names_dtypes_and_shapes(spec: dict[str, Any], seed: int) -> None:
    rng = np.random.default_rng(seed)
    tensors = {k: np.asarray((rng.random(shape) * 100).astype(dt)) for k, (dt, shape) in spec.items()}
    m = meta(privacy={'note"\n\\': 1})
    ours = encode(tensors, m)
    assert ours == save(tensors, metadata={"meshprov": m.to_json()})
    with UpdateFile.from_bytes(ours) as f:
        for key, value in tensors.items():
            np.testing.assert_array_equal(f.tensor(key), value)


def test_bf16_matches_safetensors_torch() -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save as torch_save

    values = torch.tensor([[1.0, -2.5, 3.140625], [0.0, 65280.0, -0.0078125]], dtype=torch.bfloat16)
    bits = values.view(torch.int16).numpy().view(np.uint16)
    f32 = np.arange(5, dtype=np.float32)
    ours = encode({"w": BF16(bits), "b": f32}, meta())
    theirs = torch_save({"w": values, "b": torch.from_numpy(f32)}, metadata={"meshprov": meta().to_json()})
    assert ours == theirs
    with UpdateFile.from_bytes(ours) as f:
        assert f.dtype("w") == "BF16"
        np.testing.assert_array_equal(bf16_to_float32(f.tensor("w")), values.float().numpy())


def test_safetensors_reads_our_files(tmp_path: Path) -> None:
    tensors = state(5)
    path = write_update(tmp_path / "u", tensors, meta()).path
    loaded = load_file(str(path))
    assert sorted(loaded) == sorted(tensors)
    for key, value in tensors.items():
        np.testing.assert_array_equal(loaded[key], value)


def test_insertion_order_and_memory_layout_do_not_change_the_bytes() -> None:
    tensors = state(1)
    reordered = {k: tensors[k] for k in reversed(list(tensors))}
    fortran = {k: np.asfortranarray(v) if v.ndim else v for k, v in tensors.items()}
    big_endian = {k: v.astype(v.dtype.newbyteorder(">")) for k, v in tensors.items()}
    reference = encode(tensors, meta())
    assert encode(reordered, meta()) == reference
    assert encode(fortran, meta()) == reference
    assert encode(big_endian, meta()) == reference


_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from ledger.updatefile import UpdateMeta, write_update
    rng = np.random.default_rng(42)
    items = [(f"layer{{i}}.weight", rng.standard_normal((i + 1, 3)).astype(np.float32)) for i in range(12)]
    items += [("steps", np.array(3, dtype=np.int64)), ("half", rng.standard_normal(7).astype(np.float16))]
    if sys.argv[2] == "reversed":
        items.reverse()
    meta = UpdateMeta(task=2, round=9, base="{base}", contributor="{address}".lower(), num_samples=77,
                      privacy={{"epsilon": 2.5, "delta": 1e-06, "clip": 1, "noise_multiplier": 0.9}})
    print(write_update(sys.argv[1], dict(items), meta).cid)
    """
).format(base=BASE_V1, address=ADDRESS)


def test_two_processes_write_identical_bytes(tmp_path: Path) -> None:
    outputs = []
    for i, (seed, order) in enumerate([("0", "forward"), ("12345", "reversed")]):
        path = tmp_path / f"u{i}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", _WRITER, str(path), order],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        outputs.append((path.read_bytes(), proc.stdout.strip()))
    (first, cid1), (second, cid2) = outputs
    assert first == second
    assert cid1 == cid2 == cid_of_file(tmp_path / "u0")


def test_aggregate_metadata_sorts_inputs_by_digest_and_normalises_cids(tmp_path: Path) -> None:
    inputs = [CID(bytes([b]) * 32).v1 for b in (9, 1, 200, 7)]
    m = AggregateMeta(
        task=1,
        round=3,
        rule_id=1,
        rule="trimmed-mean",
        inputs=inputs,
        parent=BASE_V1,
        params={"trim_bp": 1000},
    )
    assert m.parent == BASE
    assert [CID.parse(c).digest[0] for c in m.inputs] == [1, 7, 9, 200]
    assert all(c.startswith("Qm") for c in m.inputs)
    path = write_aggregate(tmp_path / "agg", state(), m).path
    with UpdateFile.open(path, kind="aggregate") as f:
        assert f.metadata == m
        assert isinstance(f.metadata, AggregateMeta)
        assert f.metadata.input_digests == tuple(sorted(CID.parse(c).digest for c in inputs))
    doc = json.loads(m.to_json())
    assert doc["rule"] == {"id": 1, "name": "trimmed-mean", "params": {"trim_bp": 1000}}


def test_genesis_metadata_round_trips(tmp_path: Path) -> None:
    g = GenesisMeta(model="mlp", params={"hidden": [64, 32], "seed": 7})
    path = write_aggregate(tmp_path / "g", state(), g).path
    with UpdateFile.open(path) as f:
        assert f.metadata == g
    with pytest.raises(MetadataRejected, match="expected a file of kind 'update'"):
        UpdateFile.open(path, kind="update")


def test_streaming_writer_takes_tensors_in_any_order(tmp_path: Path) -> None:
    tensors = state(2)
    specs = {k: TensorSpec.of(v) for k, v in tensors.items()}
    path = tmp_path / "s"
    with open_writer(path, specs, meta()) as writer:
        for key in sorted(tensors, reverse=True):
            writer.write(key, tensors[key])
        assert writer.pending == frozenset()
    assert path.read_bytes() == encode(tensors, meta())


def test_streaming_writer_leaves_nothing_when_it_fails(tmp_path: Path) -> None:
    tensors = state(3)
    specs = {k: TensorSpec.of(v) for k, v in tensors.items()}
    path = tmp_path / "s"
    with pytest.raises(InvalidTensors, match="never written"), open_writer(path, specs, meta()) as writer:
        writer.write("fc.bias", tensors["fc.bias"])
    with pytest.raises(RuntimeError), open_writer(path, specs, meta()) as writer:
        raise RuntimeError("aggregation failed")
    assert list(tmp_path.iterdir()) == []
    with open_writer(tmp_path / "twice", specs, meta()) as writer:
        for key, value in tensors.items():
            writer.write(key, value)
        with pytest.raises(InvalidTensors, match="written twice"):
            writer.write("fc.bias", tensors["fc.bias"])
    (tmp_path / "twice").unlink()
    with pytest.raises(InvalidTensors, match="not declared"), open_writer(path, specs, meta()) as writer:
        writer.write("other", tensors["fc.bias"])
    with (
        pytest.raises(InvalidTensors, match="declared F32, given float64"),
        open_writer(path, specs, meta()) as w,
    ):
        w.write("fc.bias", tensors["fc.bias"].astype(np.float64))
    with pytest.raises(InvalidTensors, match="declared shape"), open_writer(path, specs, meta()) as w:
        w.write("fc.bias", tensors["fc.bias"][:2])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("tensors", "problem"),
    [
        ({"w": np.zeros(2, np.uint16)}, "not stored"),
        ({"w": np.zeros(2, np.complex64)}, "not stored"),
        ({"w": np.array(["a"], dtype=object)}, "not stored"),
        ({"__metadata__": np.zeros(2, np.float32)}, "reserved"),
        ({"": np.zeros(2, np.float32)}, "non-empty"),
    ],
)
def test_tensors_the_writer_cannot_store(tensors: dict[str, Any], problem: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidTensors, match=problem):
        write_update(tmp_path / "x", tensors, meta())
    assert list(tmp_path.iterdir()) == []


# --- metadata validation -------------------------------------------------------------------------------------
def test_constructors_normalise_addresses_and_cids() -> None:
    m = meta(base=BASE_V1, contributor=ADDRESS.lower())
    assert (m.base, m.contributor) == (BASE, ADDRESS)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"task": -1}, "outside"),
        ({"round": 2**64}, "outside"),
        ({"num_samples": 0}, "outside"),
        ({"num_samples": True}, "integer"),
        ({"base": "QmNope"}, "base"),
        ({"contributor": "0x1234"}, "20-byte"),
        ({"privacy": {"epsilon": "high"}}, "number"),
        ({"privacy": {"epsilon": float("inf")}}, "finite"),
        ({"privacy": {"clip": True}}, "number"),
    ],
)
def test_invalid_update_metadata(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(MetadataRejected, match=problem) as caught:
        meta(**overrides)
    assert caught.value.reason == Reason.BAD_METADATA


def _doc(**changes: Any) -> str:
    doc = meta().to_dict()
    for key, value in changes.items():
        if value is ...:
            doc.pop(key)
        else:
            doc[key] = value
    return canonical_json(doc)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (json.dumps(meta().to_dict()), "canonical"),
        (json.dumps(meta().to_dict(), sort_keys=True), "canonical"),
        (_doc(extra=1), "unknown field"),
        (_doc(num_samples=...), "missing field"),
        (_doc(schema=2), "unknown schema"),
        (_doc(schema=True), "unknown schema"),
        (_doc(kind="delta"), "unknown kind"),
        (_doc(base=BASE_V1), "CIDv0"),
        (_doc(contributor=ADDRESS.lower()), "checksum"),
        (_doc(round=1.0), "integer"),
        ('{"a":NaN}', "NaN"),
        ('{"a":1,"a":1}', "duplicate"),
        ("[1]", "object"),
        ("", "Expecting value"),
    ],
)
def test_parse_metadata_accepts_only_the_normal_form(text: str, problem: str) -> None:
    with pytest.raises(MetadataRejected, match=problem) as caught:
        parse_metadata(text)
    assert caught.value.reason == Reason.BAD_METADATA


def test_aggregate_inputs_must_be_sorted_and_unique_when_read() -> None:
    good = AggregateMeta(
        task=1, round=1, rule_id=0, rule="fedavg", inputs=[BASE, CID(bytes(32)).v0], parent=BASE
    )
    doc = good.to_dict()
    doc["inputs"] = list(reversed(doc["inputs"]))
    with pytest.raises(MetadataRejected, match="ascending"):
        parse_metadata(canonical_json(doc))
    doc["inputs"] = [BASE, BASE]
    with pytest.raises(MetadataRejected, match="twice"):
        parse_metadata(canonical_json(doc))


def test_files_without_exactly_one_meshprov_key_are_rejected() -> None:
    tensors = {"w": np.zeros(2, np.float32)}
    for metadata, problem in [
        (None, "no `meshprov` key"),
        ({"format": "pt"}, "no `meshprov` key"),
        ({"meshprov": meta().to_json(), "format": "pt"}, "only `meshprov`"),
        ({"meshprov": "{}"}, "unknown schema"),
    ]:
        with pytest.raises(MetadataRejected, match=problem) as caught:
            UpdateFile.from_bytes(save(tensors, metadata=metadata))
        assert caught.value.reason == Reason.BAD_METADATA


# --- canonical JSON and bfloat16 helpers ---------------------------------------------------------------------
def test_canonical_json_rules() -> None:
    assert canonical_json({"b": [1, 2.5, None, True], "a": "é"}) == '{"a":"é","b":[1,2.5,null,true]}'
    for bad in ({"x": float("nan")}, {1: 2}, {"s": {1, 2}}, {"d": b"bytes"}):
        with pytest.raises(NotCanonical):
            canonical_json(bad)
    with pytest.raises(NotCanonical, match="nested"):
        canonical_json(json.loads("[" * 40 + "]" * 40))
    with pytest.raises(NotCanonical, match="not in canonical form"):
        parse_canonical('{"a":1e-7}')
    assert parse_canonical('{"a":1e-07}') == {"a": 1e-07}


def test_bf16_conversion_rounds_to_nearest_even_and_keeps_nan() -> None:
    x = np.array([1.0, 1.00390625, 1.01171875, -2.0, np.inf, np.nan], dtype=np.float32)
    bits = float32_to_bf16(x)
    # 1 + 2**-8 is a tie between 1.0 and 1 + 2**-7: even mantissa wins (1.0); 1 + 3 * 2**-8 rounds up.
    np.testing.assert_array_equal(bits[:5], [0x3F80, 0x3F80, 0x3F82, 0xC000, 0x7F80])
    back = bf16_to_float32(bits)
    assert np.isnan(back[5])
    np.testing.assert_array_equal(back[:5], [1.0, 1.0, 1.015625, -2.0, np.inf])


def test_tensors_come_one_at_a_time_in_key_order(tmp_path: Path) -> None:
    path = write_update(tmp_path / "u", state(), meta()).path
    with UpdateFile.open(path) as f:
        seen = [(key, array.shape) for key, array in f.tensors()]
        assert seen == [(k, f.shape(k)) for k in f]
        assert list(f) == f.keys()
        assert len(f) == 6
        assert "fc.bias" in f
        assert f.info("fc.bias").nbytes == 16
    with pytest.raises(ValueError, match="closed"):
        f.tensor("fc.bias")
