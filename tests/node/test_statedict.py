"""node.statedict: torch state dicts <-> numpy states for every dtype a model carries, bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ledger.updatefile import UpdateFile, UpdateMeta, write_update
from node.errors import StateMismatch
from node.statedict import (
    apply_state_delta,
    check_numpy_state,
    file_tensors,
    load_numpy_state,
    state_delta,
    state_to_numpy,
    to_torch,
)

CID = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
ADDRESS = "0x" + "11" * 20


class Mixed(nn.Module):
    """A BatchNorm CNN with a float16 head, a bfloat16 projection and integer/bool/uint8 buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 3).to(torch.float16)
        self.proj = nn.Linear(3, 2).to(torch.bfloat16)
        self.register_buffer("mask", torch.tensor([True, False, True]))
        self.register_buffer("codes", torch.tensor([0, 7, 255], dtype=torch.uint8))
        self.register_buffer("steps", torch.tensor([5, -3], dtype=torch.int32))
        self.register_buffer("scale", torch.tensor(0.5, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.conv(x)).mean(dim=(2, 3))
        return self.proj(self.head(h.half()).bfloat16()).float()


def _train_a_little(model: nn.Module, seed: int) -> None:
    torch.manual_seed(seed)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 1, 5, 5))  # updates running stats and num_batches_tracked
        for p in model.parameters():
            p.add_(torch.randn_like(p.float()).to(p.dtype) * 0.01)


def _fresh(seed: int = 0) -> Mixed:
    torch.manual_seed(seed)
    return Mixed()


def test_every_dtype_round_trips_bit_for_bit() -> None:
    model = _fresh(0)
    _train_a_little(model, 1)
    state = state_to_numpy(model)
    dtypes = {key: value.dtype for key, value in state.items()}
    assert dtypes["bn.num_batches_tracked"] == np.int64
    assert int(state["bn.num_batches_tracked"]) == 1
    assert dtypes["bn.running_mean"] == np.float32
    assert dtypes["bn.running_var"] == np.float32
    assert dtypes["head.weight"] == np.float16
    assert dtypes["proj.weight"] == np.uint16  # bfloat16 bits
    assert dtypes["mask"] == np.bool_
    assert dtypes["codes"] == np.uint8
    assert dtypes["steps"] == np.int32
    assert dtypes["scale"] == np.float64

    other = _fresh(5)
    load_numpy_state(other, state)
    for key, tensor in model.state_dict().items():
        loaded = other.state_dict()[key]
        assert loaded.dtype == tensor.dtype, key
        assert torch.equal(
            loaded.view(torch.int16) if loaded.dtype == torch.bfloat16 else loaded,
            tensor.view(torch.int16) if tensor.dtype == torch.bfloat16 else tensor,
        ), key
    again = state_to_numpy(other)
    for key in state:
        assert state[key].tobytes() == again[key].tobytes(), key


def test_state_is_a_copy() -> None:
    model = _fresh()
    state = state_to_numpy(model)
    before = state["conv.weight"].copy()
    with torch.no_grad():
        model.conv.weight.add_(1.0)
    np.testing.assert_array_equal(state["conv.weight"], before)


def test_bfloat16_bits_match_torch() -> None:
    values = torch.tensor([1.0, -2.5, 3.140625, float("inf"), 1e-40], dtype=torch.bfloat16)
    bits = state_to_numpy({"w": values})["w"]
    assert bits.tolist() == [int(v) & 0xFFFF for v in values.view(torch.int16).tolist()]
    assert torch.equal(to_torch(bits).view(torch.int16), values.view(torch.int16))


def test_mismatches_are_named() -> None:
    model = _fresh()
    state = state_to_numpy(model)
    broken = dict(state)
    del broken["bn.num_batches_tracked"]
    broken["extra"] = np.zeros(1, np.float32)
    broken["conv.weight"] = np.zeros((4, 1, 2, 2), np.float32)
    broken["head.weight"] = state["head.weight"].astype(np.float32)
    broken["proj.weight"] = state["proj.weight"].astype(np.float32)
    with pytest.raises(StateMismatch) as info:
        load_numpy_state(model, broken)
    problems = info.value.problems
    assert "missing bn.num_batches_tracked" in problems
    assert "unexpected extra" in problems
    assert "conv.weight has shape [4, 1, 2, 2], expected [4, 1, 3, 3]" in problems
    assert "head.weight has dtype float32, expected float16 (torch.float16)" in problems
    assert "proj.weight has dtype float32, expected uint16 (bfloat16 bits) (torch.bfloat16)" in problems
    # nothing was loaded
    assert torch.equal(model.conv.weight, _fresh().conv.weight)


def test_unsupported_dtypes_are_refused_by_name() -> None:
    with pytest.raises(StateMismatch, match=r"z has dtype torch\.complex64"):
        state_to_numpy({"ok": torch.zeros(2), "z": torch.zeros(2, dtype=torch.complex64)})
    with pytest.raises(StateMismatch, match="not a dense tensor"):
        state_to_numpy({"s": torch.zeros(3, 3).to_sparse()})
    with pytest.raises(StateMismatch, match=r"model's dtype torch\.complex64"):
        check_numpy_state({"z": torch.zeros(2, dtype=torch.complex64)}, {"z": np.zeros(2, np.complex64)})


def test_delta_through_an_update_file_and_back_is_exact(tmp_path: Path) -> None:
    base_model = _fresh(0)
    base = state_to_numpy(base_model)
    _train_a_little(base_model, 2)
    with torch.no_grad():
        base_model.mask.logical_not_()
        base_model.codes.copy_(torch.tensor([3, 1, 250], dtype=torch.uint8))  # deltas 3, -6, -5
        base_model.steps.add_(torch.tensor([-9, 4], dtype=torch.int32))
    local = state_to_numpy(base_model)
    delta = state_delta(local, base)
    assert int(delta["bn.num_batches_tracked"]) == 1
    assert delta["mask"].all()
    assert delta["codes"].view(np.int8).tolist() == [3, -6, -5]
    meta = UpdateMeta(task=1, round=1, base=CID, contributor=ADDRESS, num_samples=8)
    write_update(tmp_path / "u.safetensors", file_tensors(delta), meta)
    with UpdateFile.open(tmp_path / "u.safetensors") as f:
        assert f.dtype("proj.weight") == "BF16"
        assert f.dtype("bn.num_batches_tracked") == "I64"
        read = {key: np.array(f.tensor(key)) for key in f}
    rebuilt = apply_state_delta(base, read)
    target = _fresh(9)
    load_numpy_state(target, rebuilt)
    # floats: base + delta is the local value up to the one rounding of the delta; integers and bools exactly
    for key in ("bn.num_batches_tracked", "mask", "codes", "steps"):
        assert rebuilt[key].tobytes() == local[key].tobytes(), key
    np.testing.assert_allclose(rebuilt["conv.weight"], local["conv.weight"], rtol=1e-6, atol=1e-7)


def test_an_integer_buffer_that_moved_too_far_is_refused() -> None:
    from ledger.updatefile import InvalidTensors

    base = {"codes": np.array([0, 200], np.uint8), "n": np.array(1, np.int64)}
    with pytest.raises(InvalidTensors, match=r"'codes'.*U8 delta"):
        state_delta({"codes": np.array([0, 10], np.uint8), "n": np.array(2, np.int64)}, base)
    big = np.iinfo(np.int64)
    with pytest.raises(InvalidTensors, match="'n'"):
        state_delta({"n": np.array(big.max, np.int64)}, {"n": np.array(big.min, np.int64)})


# --- end to end: real torch models through update files, the checks, every rule, and back into the model -----


class BatchNormCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.fc(h.flatten(1))


class HalfPrecision(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16).to(torch.bfloat16)
        self.norm = nn.LayerNorm(16).to(torch.bfloat16)
        self.head = nn.Linear(16, 3).to(torch.float16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.embed(x.bfloat16())).half()).float()


def _train(model: nn.Module, member: int, shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(member)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for _ in range(3 + member):
        x = torch.randn(16, *shape, generator=gen)
        y = torch.randint(0, 3, (16,), generator=gen)
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()


@pytest.mark.parametrize(
    ("factory", "shape"),
    [(BatchNormCNN, (1, 8, 8)), (HalfPrecision, (8,))],
    ids=["batchnorm-cnn", "bf16-f16"],
)
def test_real_models_through_files_checks_every_rule_and_back(
    factory: Any, shape: tuple[int, ...], tmp_path: Path
) -> None:
    from ledger.aggregation import AggregationSpec, Contribution, prepare
    from ledger.aggregation.output import write_aggregation
    from ledger.checks import ChainRecord, CheckLimits, kubo_digest, verify_update
    from ledger.reasons import Reason
    from ledger.updatefile import GenesisMeta, write_aggregate

    torch.manual_seed(0)
    model = factory()
    base = state_to_numpy(model)
    base_path = tmp_path / "base.safetensors"
    base_cid = write_aggregate(base_path, file_tensors(base), GenesisMeta(model=factory.__name__)).cid
    paths = []
    for member in range(4):
        local_model = factory()
        load_numpy_state(local_model, base)
        _train(local_model, member, shape)
        delta = state_delta(state_to_numpy(local_model), base)
        path = tmp_path / f"u{member}.safetensors"
        meta = UpdateMeta(task=1, round=1, base=base_cid, contributor=ADDRESS, num_samples=16)
        write_update(path, file_tensors(delta), meta)
        paths.append(path)
    with UpdateFile.open(base_path) as base_file:
        for path in paths:
            record = ChainRecord(digest=kubo_digest(path), task=1, round=1, base=kubo_digest(base_path))
            verdict = verify_update(
                path, base=base_file, record=record, limits=CheckLimits(max_scale_ratio=None)
            )
            assert verdict.reason is Reason.ACCEPTED, verdict.detail
    digests = [bytes([i + 1]) * 32 for i in range(4)]
    specs = [
        AggregationSpec.fedavg(),
        AggregationSpec.fedavg(clip="0.05"),
        AggregationSpec.trimmed_mean("0.25"),
        AggregationSpec.median(),
        AggregationSpec.multi_krum(f=1),
    ]
    for s, spec in enumerate(specs):
        cids = []
        for order in ([0, 1, 2, 3], [2, 0, 3, 1]):
            with UpdateFile.open(base_path) as base_file:
                files = [UpdateFile.open(paths[i]) for i in order]
                agg = prepare(
                    base_file,
                    [Contribution(digests[i], f, 1 + i) for i, f in zip(order, files, strict=True)],
                    spec,
                )
                out = tmp_path / f"agg-{s}-{order[0]}.safetensors"
                cids.append(write_aggregation(out, agg, task=1, round=1, parent=base_cid).cid)
                for f in files:
                    f.close()
        assert cids[0] == cids[1], spec  # the same bytes whatever order the inputs come in
        with UpdateFile.open(out, kind="aggregate") as f:
            aggregate = {key: np.array(f.tensor(key)) for key in f}
        fresh = factory()
        load_numpy_state(fresh, aggregate)  # names, shapes and dtypes fit the model
        back = state_to_numpy(fresh)
        for key, value in aggregate.items():
            assert back[key].tobytes() == value.tobytes(), (spec, key)
        if "bn.num_batches_tracked" in aggregate:
            assert 3 <= int(aggregate["bn.num_batches_tracked"]) <= 6  # base 0 + the rule's increment of 3..6
        fresh.eval()
        with torch.no_grad():
            assert torch.isfinite(fresh(torch.randn(2, *shape))).all()


def test_a_loss_hook_loads_the_checks_full_weights_exactly(tmp_path: Path) -> None:
    from ledger.checks import CheckLimits, check_loss
    from ledger.updatefile import GenesisMeta, write_aggregate
    from node.statedict import state_from_weights

    model = _fresh(0)
    base = state_to_numpy(model)
    local_model = _fresh(0)
    _train_a_little(local_model, 3)
    local = state_to_numpy(local_model)
    base_path = tmp_path / "base.safetensors"
    cid = write_aggregate(base_path, file_tensors(base), GenesisMeta(model="mixed")).cid
    meta = UpdateMeta(task=1, round=1, base=cid, contributor=ADDRESS, num_samples=8)
    write_update(tmp_path / "u.safetensors", file_tensors(state_delta(local, base)), meta)
    loaded: list[dict[str, np.ndarray]] = []

    def evaluate(weights: Any) -> float:
        target = _fresh(7)
        load_numpy_state(target, state_from_weights(target, weights))
        loaded.append(state_to_numpy(target))
        return 0.0

    with UpdateFile.open(base_path) as b, UpdateFile.open(tmp_path / "u.safetensors") as u:
        check_loss(u, b, evaluate, CheckLimits(loss_delta=0.0))
    assert all(loaded[0][k].tobytes() == base[k].tobytes() for k in base)
    applied = apply_state_delta(base, state_delta(local, base))
    assert all(loaded[1][k].tobytes() == applied[k].tobytes() for k in base)
    with pytest.raises(StateMismatch, match="not bfloat16 values"):
        state_from_weights(model, {"proj.weight": np.full((2, 3), 1.0 + 2.0**-20, np.float32)})


def test_a_numpy_state_passes_through_as_a_copy() -> None:
    state = state_to_numpy(_fresh())
    again = state_to_numpy(state)
    assert all(again[k].tobytes() == v.tobytes() and again[k] is not v for k, v in state.items())
    with pytest.raises(StateMismatch, match=r"c has dtype complex64"):
        state_to_numpy({"c": np.zeros(2, np.complex64)})
