"""examples/transformer_lm: the 25.5M-parameter byte-level GPT on CPython's reference-manual text loads as a
recipe, builds the same weights for a seed, splits the corpus deterministically into disjoint shards, trains one
step (weights move) and evaluates to a loss and its perplexity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from node.recipe import Recipe, load_recipe
from node.statedict import state_to_numpy
from tests.support import REPO

SOURCE = REPO / "examples" / "transformer_lm"


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    return load_recipe(str(SOURCE))


def test_it_loads_as_a_recipe_with_its_own_training_loop(recipe: Recipe) -> None:
    assert (recipe.name, recipe.version) == ("transformer_lm", "1")
    assert recipe.trains_itself
    assert recipe.merged_settings()["max_steps"] == 4


def test_the_model_has_over_25_million_parameters_and_is_deterministic_under_a_seed(recipe: Recipe) -> None:
    model = recipe.build_model(0)
    assert sum(p.numel() for p in model.parameters()) >= 25_000_000
    a, b = state_to_numpy(model), state_to_numpy(recipe.build_model(0))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    other = recipe.build_model(1).state_dict()["tokens.weight"].numpy()
    assert not np.array_equal(a["tokens.weight"], other)
    assert all(v.dtype == np.float32 for v in a.values())  # no buffers: the causal mask is the kernel's


def test_data_is_deterministic_and_members_are_disjoint(recipe: Recipe) -> None:
    module = recipe.module
    windows = len(module.corpus()) // (module.BLOCK + 1)
    parts = [module.split(m, 16, 7, windows, module.TEST_BLOCKS) for m in range(16)]
    test = parts[0][1]
    assert all(np.array_equal(p[1], test) for p in parts)
    union = np.concatenate([p[0] for p in parts])
    assert len(np.unique(union)) == len(union) == windows - module.TEST_BLOCKS
    assert not np.intersect1d(union, test).size
    assert not np.array_equal(module.split(0, 16, 8, windows, module.TEST_BLOCKS)[0], parts[0][0])

    (train, held), (train2, held2) = recipe.data(3, 16, 7), recipe.data(3, 16, 7)
    for one, two in ((train, train2), (held, held2)):
        assert all(torch.equal(s, t) for s, t in zip(one.tensors, two.tensors, strict=True))  # type: ignore[attr-defined]
    x, y = train.tensors  # type: ignore[attr-defined]
    assert x.shape == (len(parts[3][0]), module.BLOCK)
    assert x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one byte
    text = module.corpus()
    start = int(parts[3][0][0]) * (module.BLOCK + 1)
    assert bytes(x[0].tolist()) == text[start : start + module.BLOCK]
    short_x, _ = recipe.data(0, 2, 0, block=32, test_blocks=4)[1].tensors  # type: ignore[attr-defined]
    assert short_x.shape == (4, 32)
    with pytest.raises(ValueError, match="cannot give"):
        recipe.data(0, 2, 0, test_blocks=10**6)


def test_one_training_step_changes_the_weights_and_evaluate_gives_loss_and_perplexity(recipe: Recipe) -> None:
    model = recipe.build_model(0)
    train, test = recipe.data(0, 16, 0, block=32, test_blocks=4)
    before = state_to_numpy(model)
    used = recipe.fit(model, train, {"batch_size": 2, "max_steps": 1, "seed": 0})
    after = state_to_numpy(model)
    assert used == 2
    assert not np.array_equal(before["blocks.0.qkv.weight"], after["blocks.0.qkv.weight"])
    metrics = recipe.evaluate(model, test)
    assert set(metrics) == {"loss", "perplexity", "bits_per_byte"}
    assert math.isclose(metrics["perplexity"], math.exp(metrics["loss"]))
    assert 0.0 < metrics["loss"] < 8.0
    # Validators pass a Subset of a Subset of the test set (their held-out slice): the same samples, the same loss.
    held = Subset(Subset(test, [0, 1, 2, 3]), [1, 3])
    x, y = test.tensors  # type: ignore[attr-defined]
    direct = recipe.evaluate(model, TensorDataset(x[[1, 3]], y[[1, 3]]))
    assert recipe.evaluate(model, held) == pytest.approx(direct)
    as_list = [(x[i], y[i]) for i in (1, 3)]  # any Dataset of (x, y)
    assert recipe.evaluate(model, as_list) == pytest.approx(direct)  # type: ignore[arg-type]
