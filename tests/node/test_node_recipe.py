"""node.recipe: loading recipes (builtin, module, file, package), the builtin digits recipe reproducing the
pre-recipe training bit for bit, the default loop, and clear errors for recipes that break the interface."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ledger.recipe import RecipeError, recipe_cid
from node.data import make_federation
from node.models import genesis_state
from node.recipe import as_torch_dataset, builtin_for, load_recipe, task_spec
from node.statedict import load_numpy_state, state_to_numpy
from node.training import default_config, evaluate, local_train

GOOD = """
import torch
from torch import nn
from torch.utils.data import TensorDataset

NAME = "tiny"
VERSION = "3"

def model():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))

def data(member, members, seed):
    g = torch.Generator().manual_seed(seed * 100 + member)
    x = torch.randn(40, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return TensorDataset(x[:30], y[:30]), TensorDataset(x[30:], y[30:])

def evaluate(model, data):
    x, y = data.tensors
    return {"loss": float(nn.functional.cross_entropy(model(x), y)), "n": len(y)}
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_the_builtin_digits_recipe_is_the_pre_recipe_mlp_task() -> None:
    recipe = load_recipe("digits")
    assert (recipe.name, recipe.version) == ("digits", "1")
    assert recipe.source == Path(__file__).resolve().parents[2] / "node" / "recipes" / "digits.py"
    assert recipe.cid == recipe_cid(recipe.source)
    model = recipe.build_model(0)
    genesis = genesis_state("mlp", 0)
    state = state_to_numpy(model)
    assert state.keys() == genesis.keys()
    assert all(np.array_equal(state[k], genesis[k]) for k in genesis)

    train, test = recipe.data(1, 3, 0)
    federation = make_federation(3, 0.5, 0)
    assert len(train) == len(federation.node_data(1))  # type: ignore[arg-type]
    assert len(test) == len(federation.test)  # type: ignore[arg-type]

    # Training through the recipe's default loop gives the very weights local_train gave.
    config = replace(default_config("mlp"), seed=1234)
    old = local_train("mlp", genesis, federation.node_data(1), config)
    n = recipe.fit(model, train, {"seed": 1234})
    assert n == old.num_samples
    new = state_to_numpy(model)
    assert all(np.array_equal(new[k], old.state[k]) for k in genesis)
    metrics = recipe.evaluate(model, test)
    before = evaluate("mlp", old.state, federation.test)
    assert metrics["loss"] == pytest.approx(before.loss, rel=1e-6)
    assert metrics["accuracy"] == before.accuracy


def test_build_model_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    recipe = load_recipe("digits_cnn")
    torch.manual_seed(99)
    expected_next = torch.rand(1)
    torch.manual_seed(99)
    a = state_to_numpy(recipe.build_model(5))
    after = torch.rand(1)
    b = state_to_numpy(recipe.build_model(5))
    c = state_to_numpy(recipe.build_model(6))
    assert torch.equal(after, expected_next)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)
    assert builtin_for(recipe.cid) == "digits_cnn"
    assert builtin_for("QmZoEkgqtTKUXrYypeZGA2RFjscc5JKjfv5y5rJBUA9nDf") is None


def test_a_recipe_file_outside_the_repository_with_buffers(tmp_path: Path) -> None:
    path = _write(tmp_path / "outside" / "tiny_recipe.py", GOOD)
    recipe = load_recipe(str(path))
    assert (recipe.name, recipe.version, recipe.source) == ("tiny", "3", path.resolve())
    assert recipe.ref.cid == recipe_cid(path)
    model = recipe.build_model(0)
    train, test = recipe.data(0, 2, 0)
    before = state_to_numpy(model)
    assert recipe.fit(model, train, {"epochs": 2, "batch_size": 8, "lr": 0.1, "optimizer": "adam"}) == 30
    after = state_to_numpy(model)
    assert int(after["1.num_batches_tracked"]) == 2 * 4  # BatchNorm's counter moved with every step
    assert not np.array_equal(after["1.running_mean"], before["1.running_mean"])
    metrics = recipe.evaluate(model, test)
    assert set(metrics) == {"loss", "n"}
    assert metrics["n"] == 10.0


def test_a_package_directory_and_an_installed_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "mypkgrecipe"
    _write(
        pkg / "__init__.py", "from .impl import model, data, evaluate\nfrom mypkgrecipe.impl import NAME\n"
    )
    _write(pkg / "impl.py", GOOD.replace('NAME = "tiny"', 'NAME = "pkg"'))
    by_path = load_recipe(str(pkg))
    assert by_path.name == "pkg"
    assert by_path.source == pkg.resolve()
    assert by_path.cid == recipe_cid(pkg)
    for name in [m for m in sys.modules if m.startswith("mypkgrecipe")]:
        del sys.modules[name]
    monkeypatch.syspath_prepend(str(tmp_path))
    by_name = load_recipe("mypkgrecipe")
    assert by_name.source == pkg.resolve()
    assert by_name.cid == by_path.cid


def test_a_recipe_named_like_an_imported_module_loads_under_a_private_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "json.py", GOOD)  # clashes with the standard library's json
    recipe = load_recipe(str(path))
    import json

    assert recipe.module is not json
    assert recipe.name == "tiny"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("def model():", "def modelx():"), "no `model` function"),
        (GOOD.replace("def evaluate(", "def evaluatex("), "no `evaluate` function"),
        (
            GOOD.replace("def data(", "def datax(").replace("def evaluate(", "def evaluatex("),
            "no `data` / `evaluate`",
        ),
        (GOOD + "\ntrain = 3\n", "`train` is not a function"),
        (GOOD + "\nVERSION = 2\n", "`VERSION` must be a non-empty string"),
        ("raise RuntimeError('boom')\n", "importing the recipe .* failed: RuntimeError: boom"),
    ],
)
def test_broken_recipes_are_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path / f"broken_{abs(hash(text))}.py", text)
    with pytest.raises(RecipeError, match=message):
        load_recipe(str(path))


def test_what_a_recipe_returns_is_checked(tmp_path: Path) -> None:
    no_loss = load_recipe(str(_write(tmp_path / "noloss.py", GOOD.replace('{"loss":', '{"lossy":'))))
    with pytest.raises(RecipeError, match='returned no "loss"'):
        no_loss.evaluate(no_loss.build_model(0), no_loss.data(0, 1, 0)[1])
    not_module = load_recipe(str(_write(tmp_path / "notmodule.py", GOOD + "\ndef model():\n    return 3\n")))
    with pytest.raises(RecipeError, match=r"returned int, not a torch\.nn\.Module"):
        not_module.build_model(0)
    bad_train = load_recipe(
        str(_write(tmp_path / "badtrain.py", GOOD + "\ndef train(m, d, s):\n    return None\n"))
    )
    with pytest.raises(RecipeError, match="not the number of samples"):
        bad_train.fit(bad_train.build_model(0), bad_train.data(0, 1, 0)[0])
    recipe = load_recipe(str(_write(tmp_path / "fine.py", GOOD)))
    with pytest.raises(RecipeError, match="optimizer='lbfgs'"):
        recipe.fit(recipe.build_model(0), recipe.data(0, 1, 0)[0], {"optimizer": "lbfgs"})
    with pytest.raises(RecipeError, match="epochs=0"):
        recipe.fit(recipe.build_model(0), recipe.data(0, 1, 0)[0], {"epochs": 0})


@pytest.mark.parametrize(
    ("returned", "used"),
    [("7", 7), ("np.int64(7)", 7), ("torch.tensor(7)", 7), ("torch.ones(7).sum().long()", 7)],
)
def test_train_may_count_its_samples_with_numpy_or_torch(tmp_path: Path, returned: str, used: int) -> None:
    own = (
        GOOD
        + f"\nimport numpy as np\nimport torch\ndef train(model, data, settings):\n    return {returned}\n"
    )
    recipe = load_recipe(str(_write(tmp_path / "counts.py", own)))
    assert recipe.fit(recipe.build_model(0), recipe.data(0, 1, 0)[0]) == used


@pytest.mark.parametrize("returned", ["7.0", "True", "torch.tensor(7.0)", "torch.tensor([3, 4])", "0", "'7'"])
def test_train_returning_no_positive_count_is_refused(tmp_path: Path, returned: str) -> None:
    own = GOOD + f"\nimport torch\ndef train(model, data, settings):\n    return {returned}\n"
    recipe = load_recipe(str(_write(tmp_path / "nocount.py", own)))
    with pytest.raises(RecipeError, match="not the number of samples used"):
        recipe.fit(recipe.build_model(0), recipe.data(0, 1, 0)[0])


def test_a_spec_anchors_the_small_round_zscore_unless_told_otherwise() -> None:
    """docs/aggregation.md, "Rounds of three updates": what task_spec writes judges a round of three by the norm
    z-score (the demo, `lab hosts` and deploy/task-spec.json build theirs with it)."""
    from ledger.checks.anchored import anchored_limits
    from ledger.checks.limits import SPEC_ZSCORE_MIN_PEERS

    digits = load_recipe("digits")
    spec = task_spec(digits, members=3, checks={"zscore": 3.5, "loss_delta": 5.0})
    assert anchored_limits(spec.checks).zscore_min_peers == SPEC_ZSCORE_MIN_PEERS == 2
    assert task_spec(digits, members=3).checks == {"zscore_min_peers": SPEC_ZSCORE_MIN_PEERS}
    off = task_spec(digits, members=3, checks={"zscore": None})
    assert "zscore_min_peers" not in off.checks
    own = task_spec(digits, members=3, checks={"zscore": 3.5, "zscore_min_peers": 5})
    assert own.checks["zscore_min_peers"] == 5


def test_a_recipe_train_and_loss_are_used(tmp_path: Path) -> None:
    own = (
        GOOD
        + "\ncalls = []\ndef train(model, data, settings):\n    calls.append(settings['lr'])\n    return 7\n"
    )
    recipe = load_recipe(str(_write(tmp_path / "owntrain.py", own)))
    assert recipe.fit(recipe.build_model(0), recipe.data(0, 1, 0)[0], {"lr": 0.5}) == 7
    assert recipe.module.calls == [0.5]
    custom = GOOD + "\nseen = []\ndef loss(out, y):\n    seen.append(1)\n    return (out.sum() * 0.0)\n"
    recipe = load_recipe(str(_write(tmp_path / "ownloss.py", custom)))
    model = recipe.build_model(0)
    before = state_to_numpy(model)
    recipe.fit(model, recipe.data(0, 1, 0)[0], {"batch_size": 10, "momentum": 0.0})
    assert len(recipe.module.seen) == 3
    after = state_to_numpy(model)
    assert np.array_equal(after["0.weight"], before["0.weight"])  # a zero loss moves no weight


def test_missing_recipes_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="no recipe module 'no_such_recipe_xyz' is installed"):
        load_recipe("no_such_recipe_xyz")
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(str(tmp_path / "missing.py"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(RecipeError, match=r"no __init__\.py"):
        load_recipe(str(tmp_path / "plain"))


def test_old_array_datasets_become_tensor_datasets() -> None:
    shard = make_federation(3, 0.5, 0).node_data(0)
    data = as_torch_dataset(shard)
    x, y = data[0]
    assert torch.equal(x, torch.from_numpy(shard.x[0]))
    assert int(y) == int(shard.y[0])
    model = load_recipe("digits").build_model(0)
    load_numpy_state(model, genesis_state("mlp", 0))


def test_the_compose_task_spec_is_the_builtin_digits_recipes() -> None:
    from ledger.recipe import parse_task_spec
    from tests.support import REPO

    raw = (REPO / "deploy" / "task-spec.json").read_bytes()
    spec = parse_task_spec(raw)
    digits = load_recipe("digits")
    assert spec.recipe == digits.ref  # editing node/recipes/digits.py changes its hash: regenerate the spec
    assert spec == task_spec(digits, members=3, checks=dict(spec.checks), dataset=spec.dataset)
    assert spec.to_json().encode() == raw
    assert spec.hyperparameters == {
        "batch_size": 32,
        "epochs": 5,
        "lr": 0.1,
        "momentum": 0.9,
        "optimizer": "sgd",
        "weight_decay": 0.0,
    }


def test_the_recipe_in_docs_recipes_md_works_as_written(tmp_path: Path) -> None:
    from tests.support import REPO

    text = (REPO / "docs" / "recipes.md").read_text()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    recipe = load_recipe(str(_write(tmp_path / "my_recipe.py", block)))
    assert (recipe.name, recipe.version) == ("tiny", "1")
    model = recipe.build_model(0)
    train, test = recipe.data(0, 3, 0)
    assert recipe.fit(model, train, {"seed": 1}) == 150
    metrics = recipe.evaluate(model, test)
    assert set(metrics) == {"loss", "accuracy"}
    assert metrics["accuracy"] > 0.7


def test_shard_settings_reach_only_what_data_declares(tmp_path: Path) -> None:
    kwargs = GOOD.replace(
        "def data(member, members, seed):",
        "def data(member, members, seed, **extra):\n    seen.append(extra)",
    )
    recipe = load_recipe(str(_write(tmp_path / "kw.py", "seen = []\n" + kwargs)))
    recipe.data(0, 2, 0, members=2, member=0, seed=0, kind="dirichlet", alpha=0.3)
    assert recipe.module.seen == [{"kind": "dirichlet", "alpha": 0.3}]
    digits = load_recipe("digits")
    train, _ = digits.data(0, 3, 0, alpha=100.0, members=3, kind="dirichlet")
    assert len(train) == len(make_federation(3, 100.0, 0).node_data(0))  # type: ignore[arg-type]


def test_batch_norm_never_trains_on_a_single_sample_batch(tmp_path: Path) -> None:
    recipe = load_recipe(str(_write(tmp_path / "bn_one.py", GOOD)))
    model = recipe.build_model(0)
    train, _ = recipe.data(0, 1, 0)  # 30 samples: batches of 29 leave one over
    result = recipe.fit_result(model, train, {"batch_size": 29, "epochs": 2})
    assert result.num_samples == 30
    assert result.steps == 2  # one batch of 30 per epoch, not 29 + 1
    assert int(state_to_numpy(model)["1.num_batches_tracked"]) == 2


def test_a_recipe_that_raises_is_named_with_the_step(tmp_path: Path) -> None:
    raising = GOOD + "\ndef train(model, data, settings):\n    raise ValueError('boom')\n"
    recipe = load_recipe(str(_write(tmp_path / "raising.py", raising)))
    with pytest.raises(RecipeError, match=r"training of the recipe 'tiny' .* failed: ValueError: boom"):
        recipe.fit(recipe.build_model(0), recipe.data(0, 1, 0)[0])
    lonely = load_recipe(str(_write(tmp_path / "lonely.py", GOOD.replace("x[:30], y[:30]", "x[:1], y[:1]"))))
    with pytest.raises(
        RecipeError, match=r"training of the recipe 'tiny' .* failed: ValueError: Expected more than 1"
    ):
        lonely.fit(lonely.build_model(0), lonely.data(0, 1, 0)[0])


def test_a_package_given_by_its_init_file(tmp_path: Path) -> None:
    pkg = tmp_path / "initpkg"
    _write(pkg / "__init__.py", GOOD)
    recipe = load_recipe(str(pkg / "__init__.py"))
    assert recipe.source == pkg.resolve()
    assert recipe.cid == recipe_cid(pkg)
    assert recipe.module.__name__ == "initpkg"


def test_the_spec_records_the_split_that_happens(tmp_path: Path) -> None:
    own_split = load_recipe(str(_write(tmp_path / "tiny.py", GOOD)))  # data() takes no alpha
    assert task_spec(own_split, members=4, alpha=0.3).shards == {"kind": "recipe", "members": 4}
    digits = load_recipe("digits")  # its data() splits by Dirichlet(alpha)
    assert task_spec(digits, members=4, alpha=0.3).shards == {"kind": "dirichlet", "alpha": 0.3, "members": 4}


def test_a_train_that_counts_every_epochs_samples_claims_the_distinct_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A train() returning the samples it processed over 3 epochs (3 x the shard): the member's claim exceeded the
    task's maxSamples (the largest shard), its submission was refused and the demo stopped. It now counts as the
    shard's size, said once."""
    counting = GOOD + "\ndef train(model, data, settings):\n    return 3 * len(data)\n"
    recipe = load_recipe(str(_write(tmp_path / "epochs_counting.py", counting)))
    train = recipe.data(0, 1, 0)[0]
    with caplog.at_level("WARNING", logger="node.recipe"):
        assert recipe.fit(recipe.build_model(0), train, {}) == len(train) == 30
        assert recipe.fit(recipe.build_model(0), train, {}) == 30
    said = [r.getMessage() for r in caplog.records if "more than the 30 in its data" in r.getMessage()]
    assert len(said) == 1
    assert "returned 90 samples" in said[0]
    fewer = GOOD + "\ndef train(model, data, settings):\n    return 7\n"
    assert load_recipe(str(_write(tmp_path / "fewer.py", fewer))).fit(recipe.build_model(0), train, {}) == 7


def test_settings_json_cannot_hold_are_refused_naming_the_setting_and_numpy_numbers_are_written_plain(
    tmp_path: Path,
) -> None:
    """A recipe's SETTINGS go into the task's specification as JSON. numpy numbers and tuples are written as
    numbers and lists; a torch dtype failed the demo after its chain had started, with a hint about TaskSpec."""
    numbers = (
        GOOD + "\nimport numpy as np\nSETTINGS = {'lr': np.float32(0.5), 'betas': (0.9, np.float64(0.99))}\n"
    )
    spec = task_spec(load_recipe(str(_write(tmp_path / "numpy_settings.py", numbers))), members=3)
    assert spec.hyperparameters["lr"] == 0.5
    assert type(spec.hyperparameters["lr"]) is float
    assert spec.hyperparameters["betas"] == [0.9, 0.99]
    assert '"betas":[0.9,0.99]' in spec.to_json()

    dtype = GOOD + "\nSETTINGS = {'dtype': torch.float32}\n"
    with pytest.raises(
        RecipeError, match=r"the recipe 'tiny''s setting 'dtype' = torch.float32 cannot be written"
    ):
        task_spec(load_recipe(str(_write(tmp_path / "dtype_settings.py", dtype))), members=3)
