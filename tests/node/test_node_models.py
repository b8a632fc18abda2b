"""The model registry: names, stable state_dict layouts, deterministic genesis weights, state checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ledger.errors import ConfigError, Mismatch
from ledger.exit_codes import ExitCode
from node.errors import StateMismatch, UnknownModel
from node.models import build_model, genesis_state, load_state, model_names, state_to_numpy

# The update file and the on-chain genesis digest depend on these layouts: changing one is a protocol change.
EXPECTED_LAYOUTS = {
    "mlp": [
        ("1.weight", (128, 64)),
        ("1.bias", (128,)),
        ("3.weight", (10, 128)),
        ("3.bias", (10,)),
    ],
    "cnn": [
        ("0.weight", (16, 1, 3, 3)),
        ("0.bias", (16,)),
        ("2.weight", (32, 16, 3, 3)),
        ("2.bias", (32,)),
        ("6.weight", (64, 512)),
        ("6.bias", (64,)),
        ("8.weight", (10, 64)),
        ("8.bias", (10,)),
    ],
}


def test_registry_lists_mlp_and_cnn() -> None:
    assert {"mlp", "cnn"} <= set(model_names())
    assert model_names() == sorted(model_names())


@pytest.mark.parametrize("name", sorted(EXPECTED_LAYOUTS))
def test_state_dict_keys_shapes_and_dtype_are_stable(name: str) -> None:
    state = genesis_state(name)
    assert [(key, value.shape) for key, value in state.items()] == EXPECTED_LAYOUTS[name]
    assert all(value.dtype == np.float32 for value in state.values())


@pytest.mark.parametrize("name", sorted(EXPECTED_LAYOUTS))
def test_models_map_digit_images_to_ten_logits(name: str) -> None:
    out = build_model(name)(torch.zeros(3, 1, 8, 8))
    assert tuple(out.shape) == (3, 10)


@pytest.mark.parametrize("name", sorted(EXPECTED_LAYOUTS))
def test_genesis_depends_only_on_the_seed(name: str) -> None:
    a, b, c = genesis_state(name, 7), genesis_state(name, 7), genesis_state(name, 8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_building_a_model_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    build_model("cnn", seed=5)
    assert torch.equal(torch.rand(4), expected)


def test_state_to_numpy_returns_copies() -> None:
    model = build_model("mlp")
    state = state_to_numpy(model)
    before = state["1.bias"].copy()
    with torch.no_grad():
        next(iter(model.parameters())).add_(1.0)
        model.state_dict()["1.bias"].add_(1.0)
    assert np.array_equal(state["1.bias"], before)


def test_load_state_round_trips() -> None:
    state = genesis_state("cnn", 3)
    again = state_to_numpy(load_state("cnn", state))
    assert all(np.array_equal(state[k], again[k]) for k in state)


def test_unknown_model_is_a_config_error_naming_the_choices() -> None:
    with pytest.raises(UnknownModel) as caught:
        build_model("resnet")
    assert isinstance(caught.value, ConfigError)
    assert caught.value.exit_code is ExitCode.CONFIG
    assert "cnn" in str(caught.value)
    assert "mlp" in str(caught.value)


def test_load_state_rejects_a_foreign_layout() -> None:
    cnn = genesis_state("cnn")
    with pytest.raises(StateMismatch) as caught:
        load_state("mlp", cnn)
    assert isinstance(caught.value, Mismatch)
    assert "missing 1.weight" in caught.value.problems
    assert "unexpected 0.weight" in caught.value.problems


def test_load_state_rejects_wrong_shape_and_dtype() -> None:
    state = genesis_state("mlp")
    state["1.bias"] = np.zeros(127, dtype=np.float32)
    state["3.bias"] = state["3.bias"].astype(np.float64)
    with pytest.raises(StateMismatch) as caught:
        load_state("mlp", state)
    assert caught.value.problems == [
        "1.bias has shape (127,), expected (128,)",
        "3.bias has dtype float64, expected float32",
    ]
