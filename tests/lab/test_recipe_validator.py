"""lab.recipe_validator: the validator's hooks for any recipe — weights loaded bit for bit whatever their dtypes and
buffers, the recipe's evaluate on the held-out half of its test set, the reference trained with the recipe on this
validator's slice (seeded), and the slices of several validators disjoint."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from lab.recipe_validator import RecipeValidator, data_options, validator_hooks, validator_slice
from ledger.recipe import RecipeError, TaskSpec
from ledger.updatefile.dtypes import bf16_to_float32
from node.recipe import Recipe, load_recipe
from node.statedict import state_to_numpy
from tests.support import REPO

BN_CNN = REPO / "tests" / "lab" / "recipes" / "bn_cnn.py"


def spec_of(recipe: Recipe, **kwargs: Any) -> TaskSpec:
    return TaskSpec(recipe=recipe.ref, **kwargs)


def weights_as_checks_give_them(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What ledger.checks hands a loss hook: every tensor in its dtype, bfloat16 (uint16 bits) as float32."""
    return {k: bf16_to_float32(v) if v.dtype == np.uint16 else v for k, v in state.items()}


@pytest.fixture(scope="module")
def bn_recipe() -> Recipe:
    return load_recipe(str(BN_CNN))


def trained(recipe: Recipe, data: Any) -> torch.nn.Module:
    model = recipe.build_model(0)
    recipe.fit(model, data, {"epochs": 1, "seed": 5})
    return model


def test_metrics_are_the_recipes_evaluate_of_exactly_these_weights_buffers_included(
    bn_recipe: Recipe,
) -> None:
    hooks = RecipeValidator(bn_recipe, spec_of(bn_recipe))
    train, _ = bn_recipe.data(0, 1, 0)
    model = trained(bn_recipe, train)
    state = state_to_numpy(model)
    assert int(state["1.num_batches_tracked"]) > 0  # the counter and the statistics moved: a real test
    metrics = hooks.metrics(state)
    assert metrics == bn_recipe.evaluate(model, hooks.heldout)
    assert set(metrics) == {"loss", "accuracy"}
    # Other running statistics give another loss: the buffers are loaded, not rebuilt.
    moved = {**state, "1.running_mean": state["1.running_mean"] + 3.0}
    assert hooks.metrics(moved)["loss"] != metrics["loss"]


def test_bfloat16_and_float16_weights_load_bit_for_bit(tmp_path: Path) -> None:
    source = tmp_path / "half_recipe.py"
    source.write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn
            from torch.utils.data import TensorDataset

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.a = nn.Linear(4, 8).to(torch.bfloat16)
                    self.b = nn.Linear(8, 3).to(torch.float16)

                def forward(self, x):
                    return self.b(torch.relu(self.a(x.to(torch.bfloat16))).to(torch.float16)).float()

            def model():
                return Net()

            def data(member, members, seed):
                g = torch.Generator().manual_seed(seed)
                x = torch.randn(60, 4, generator=g)
                y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
                return TensorDataset(x[member::members], y[member::members]), TensorDataset(x, y)

            def evaluate(model, data):
                x, y = data[:] if hasattr(data, "tensors") else map(torch.stack, zip(*[data[i] for i in range(len(data))]))
                return {"loss": float(nn.functional.cross_entropy(model(x), y))}
            """
        )
    )
    recipe = load_recipe(str(source))
    hooks = RecipeValidator(recipe, spec_of(recipe))
    model = recipe.build_model(9)  # other weights than the hooks' own build_model(0)
    state = state_to_numpy(model)
    assert state["a.weight"].dtype == np.uint16
    assert state["b.weight"].dtype == np.float16
    assert hooks.metrics(weights_as_checks_give_them(state)) == recipe.evaluate(model, hooks.heldout)
    delta = hooks.reference(weights_as_checks_give_them(state), seed=1, steps=3)
    assert set(delta) == set(state)
    assert all(v.dtype == np.float64 and np.isfinite(v).all() for v in delta.values())


def test_the_reference_is_the_recipes_training_on_the_slice_seeded(bn_recipe: Recipe) -> None:
    hooks = RecipeValidator(bn_recipe, spec_of(bn_recipe, hyperparameters={"lr": 0.05}), slice_=(1, 3))
    weights = state_to_numpy(bn_recipe.build_model(0))
    delta = hooks.reference(weights, seed=11, steps=20)
    # Every floating tensor (BatchNorm statistics included), never the integer counter.
    assert set(delta) == {k for k, v in weights.items() if v.dtype.kind == "f"}
    assert "1.num_batches_tracked" not in delta
    assert np.abs(delta["4.weight"]).sum() > 0
    assert np.abs(delta["1.running_mean"]).sum() > 0
    again = hooks.reference(weights, seed=11, steps=20)
    assert all(np.array_equal(delta[k], again[k]) for k in delta)
    other = hooks.reference(weights, seed=12, steps=20)
    assert not np.array_equal(delta["4.weight"], other["4.weight"])

    # It is the recipe's fit from these weights on the slice, with the task's hyperparameters: the slice's 27
    # samples repeated 24 times (648), so that one epoch holds the 20 batches of 32, stopped after the 20th.
    from node.optimizer_steps import stop_after_steps

    repeated = hooks.training_slice(20, 32)
    assert isinstance(repeated, TensorDataset)
    assert len(repeated) == 27 * 24
    assert all(
        torch.equal(a, b) for a, b in zip(repeated.tensors[0][27:54], repeated.tensors[0][:27], strict=True)
    )
    model = bn_recipe.build_model(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = bn_recipe.merged_settings({"lr": 0.05})
    settings.update(seed=11, epochs=1)
    assert stop_after_steps(lambda: bn_recipe.fit(model, repeated, settings), 20) == 20  # of the epoch's 21
    expected = (model.state_dict()["4.weight"].double() - before["4.weight"].double()).numpy()
    assert np.array_equal(delta["4.weight"], expected)


def test_validators_hold_disjoint_slices_of_the_even_half_of_the_test_set(bn_recipe: Recipe) -> None:
    _, test = bn_recipe.data(0, 1, 0)
    x, y = test.tensors  # type: ignore[attr-defined]
    heldout = RecipeValidator(bn_recipe, None).heldout
    # Still a TensorDataset, as the recipe made it: an evaluate or train reading `data.tensors` works on it.
    assert isinstance(heldout, TensorDataset)
    assert torch.equal(heldout.tensors[0], x[0::2])
    assert torch.equal(heldout.tensors[1], y[0::2])
    for v in range(3):
        part = RecipeValidator(bn_recipe, None, slice_=(v, 3)).own_slice
        assert isinstance(part, TensorDataset)
        assert torch.equal(part.tensors[0], x[0::2][v::3])  # v, v + 3, … of the held-out half: disjoint


def test_another_kind_of_dataset_is_sliced_as_a_subset(tmp_path: Path) -> None:
    source = tmp_path / "listed_recipe.py"
    source.write_text(
        "import torch\nfrom torch import nn\n"
        "def model():\n    return nn.Linear(2, 2)\n"
        "def data(member, members, seed):\n"
        "    items = [(torch.full((2,), float(i)), i % 2) for i in range(12)]\n"
        "    return items, items\n"
        "def evaluate(model, data):\n"
        "    x = torch.stack([p for p, _ in data]); y = torch.tensor([c for _, c in data])\n"
        "    return {'loss': float(nn.functional.cross_entropy(model(x), y)), 'n': len(data)}\n"
    )
    recipe = load_recipe(str(source))
    hooks = RecipeValidator(recipe, None, slice_=(1, 2))
    assert [int(hooks.own_slice[i][0][0]) for i in range(len(hooks.own_slice))] == [2, 6, 10]  # type: ignore[arg-type]
    assert hooks.metrics(state_to_numpy(recipe.build_model(0)))["n"] == 6


def test_the_host_reads_the_validators_slice_from_the_environment(
    bn_recipe: Recipe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELDOUT_SLICE", "2/3")
    hooks = validator_hooks(str(BN_CNN), spec_of(bn_recipe, seed=4))
    assert hooks.slice == (2, 3)
    assert hooks.seed == 4
    assert hooks.ref == bn_recipe.ref


def test_positional_names_never_reach_data_as_options(bn_recipe: Recipe) -> None:
    spec = spec_of(bn_recipe, shards={"alpha": 0.3, "members": 5, "seed": 1, "member": 0})
    assert data_options(spec) == {"alpha": 0.3}
    assert data_options(None) == {}


def test_a_test_set_too_small_to_share_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "tiny_recipe.py"
    source.write_text(
        "import torch\nfrom torch import nn\nfrom torch.utils.data import TensorDataset\n"
        "def model():\n    return nn.Linear(2, 2)\n"
        "def data(member, members, seed):\n"
        "    return TensorDataset(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)), "
        "TensorDataset(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))\n"
        "def evaluate(model, data):\n    return {'loss': 0.0}\n"
    )
    recipe = load_recipe(str(source))
    with pytest.raises(RecipeError, match=r"its held-out half \(2\) cannot give each of the 3 validators"):
        _ = RecipeValidator(recipe, None, slice_=(0, 3)).own_slice


def test_the_reference_stops_after_exactly_its_steps_even_mid_epoch() -> None:
    """docs/scoring.md, "How many steps": the task anchors the reference's steps at a member's round, and the score
    compares norms, so the reference must not round up to whole epochs (it did: 3 steps for 2, 6 for 4)."""
    from node.optimizer_steps import counted_steps

    short = load_recipe(str(REPO / "tests" / "lab" / "recipes" / "short_round.py"))
    hooks = RecipeValidator(short, spec_of(short), slice_=(0, 3))
    assert len(hooks.own_slice) == 67  # type: ignore[arg-type]  # 3 batches of 32 an epoch
    weights = state_to_numpy(short.build_model(0))
    sizes = []
    for steps in (2, 4, 1):
        with counted_steps() as counted:
            delta = hooks.reference(weights, seed=5, steps=steps)
        assert counted.steps == steps
        sizes.append(float(np.sqrt(sum(np.square(v).sum() for v in delta.values()))))
    assert sizes[2] < sizes[0] < sizes[1]  # more steps, a longer reference


DROP_LAST = """
import torch
from torch import nn


def model():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def data(member, members, seed):
    g = torch.Generator().manual_seed(seed + member)
    pool = [(torch.randn(3, generator=g), torch.tensor(k % 2)) for k in range(60)]
    return pool, pool[:9]  # a test set of 9: a held-out set of 5, slices of 2, 2 and 1


def train(model, data, settings):
    loader = torch.utils.data.DataLoader(data, batch_size=settings["batch_size"], shuffle=True, drop_last=True)
    opt = torch.optim.SGD(model.parameters(), lr=settings["lr"])
    used = 0
    for _ in range(settings["epochs"]):
        for k, (x, y) in enumerate(loader):
            (nn.functional.cross_entropy(model(x), y) / 2).backward()
            used += len(y)
            if k % 2 == 1:  # a step every two batches
                opt.step()
                opt.zero_grad()
    return min(used, len(data))


def evaluate(model, data):
    x = torch.stack([a for a, _ in data])
    y = torch.stack([b for _, b in data])
    return {"loss": float(nn.functional.cross_entropy(model(x), y))}
"""


def test_a_slice_smaller_than_a_batch_still_trains_a_loop_that_drops_partial_batches(tmp_path: Path) -> None:
    """A recipe's own loop with ``drop_last`` and gradient accumulation on a validator slice of 1-2 samples: its
    train() returned 0 samples (RecipeError) and the validator was absent from every round."""
    from node.optimizer_steps import counted_steps

    source = tmp_path / "drop_last_recipe.py"
    source.write_text(DROP_LAST)
    recipe = load_recipe(str(source))
    spec = spec_of(recipe, hyperparameters={"batch_size": 8, "lr": 0.1, "epochs": 1})
    weights = state_to_numpy(recipe.build_model(0))
    for v in range(3):
        hooks = RecipeValidator(recipe, spec, slice_=(v, 3))
        assert len(hooks.own_slice) in (1, 2)  # type: ignore[arg-type]
        with counted_steps() as counted:
            delta = hooks.reference(weights, seed=4, steps=3)
        assert 1 <= counted.steps <= 3  # two batches a step: one epoch of 3 batches gives one, the rest more
        assert np.abs(delta["2.weight"]).sum() > 0  # the last layer's weights moved: a real step


def test_the_reference_never_trains_batchnorm_on_a_batch_of_one(tmp_path: Path) -> None:
    """A held-out slice of 33 samples in batches of 32 would leave one sample alone, which BatchNorm1d refuses in
    training; the default loop folds it into the previous batch (node.recipe.default_fit)."""
    source = tmp_path / "bn1d_recipe.py"
    source.write_text(
        "import torch\nfrom torch import nn\nfrom torch.utils.data import TensorDataset\n"
        "def model():\n    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))\n"
        "def data(member, members, seed):\n"
        "    x = torch.randn(66, 3, generator=torch.Generator().manual_seed(seed))\n"
        "    d = TensorDataset(x, (x[:, 0] > 0).long())\n"
        "    return d, d\n"
        "def evaluate(model, data):\n"
        "    x, y = data.tensors\n"
        "    return {'loss': float(nn.functional.cross_entropy(model(x), y))}\n"
    )
    recipe = load_recipe(str(source))
    hooks = RecipeValidator(recipe, None)
    assert len(hooks.own_slice) == 33  # type: ignore[arg-type]
    delta = hooks.reference(state_to_numpy(recipe.build_model(0)), seed=3, steps=4)
    assert np.abs(delta["2.weight"]).sum() > 0


@pytest.mark.parametrize("raw", ["1", "a/3", "3/3", "-1/2", "1/2/3"])
def test_a_malformed_slice_is_refused_by_name(raw: str) -> None:
    from ledger.errors import ConfigError

    with pytest.raises(ConfigError, match="HELDOUT_SLICE"):
        validator_slice(raw)
    assert validator_slice("") == (0, 1)
    assert validator_slice(" 1/4 ") == (1, 4)


WIDE_RECIPE = """
import torch
from torch import nn
from torch.utils.data import TensorDataset


def model():
    return nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4))  # tensors past torch's grain size


def data(member, members, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 256, generator=g)
    return TensorDataset(x, torch.randint(0, 4, (64,), generator=g)), TensorDataset(x, x[:, 0].gt(0).long())


def evaluate(model, data):
    x, y = data.tensors
    return {"loss": float(nn.functional.cross_entropy(model(x), y))}
"""

ROUNDS_IN_ONE_WORKER = """
import sys, tempfile, threading
import numpy as np
from lab.recipe_validator import validator_hooks
from worker.verify import _in_child

hooks = validator_hooks(sys.argv[1], None)
hooks.warm_up()  # what `meshprov worker run --recipe` does as it starts
out = tempfile.mkdtemp()

def job(round_):
    weights = {k: v.detach().numpy() for k, v in hooks.recipe.build_model(round_).state_dict().items()}
    hooks.metrics(weights)  # the loss gate, in the job's thread: loads full weights
    path = f"{out}/reference-{round_}.npy"
    _in_child(lambda: np.save(path, hooks.reference(weights, seed=round_, steps=2)["0.weight"]), what="reference")
    print("round", round_, np.load(path).shape, flush=True)

for round_ in (1, 2, 3):  # celery's pool runs the rounds' jobs in its own thread
    worker = threading.Thread(target=job, args=(round_,))
    worker.start()
    worker.join()
"""


def test_reference_children_finish_round_after_round_in_one_worker(tmp_path: Path) -> None:
    """The validator trains its reference in a forked child. After a round had loaded full weights with torch's
    thread pool in the job's thread, the next round's child hung for ever on its first parallel op (a
    25M-parameter recipe's demo lost round 2: every validator absent). warm_up keeps torch on one thread."""
    from tests.support.hang import rounds_or_fail

    recipe = tmp_path / "wide.py"
    recipe.write_text(WIDE_RECIPE)
    assert rounds_or_fail(ROUNDS_IN_ONE_WORKER, str(recipe)) == [f"round {r} (256, 256)" for r in (1, 2, 3)]
