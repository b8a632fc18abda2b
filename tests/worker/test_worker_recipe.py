"""worker.recipe: the validator's recipe hooks, the task's spec read from chain + store, and the refusal of a recipe
whose hash is not the task's (``meshprov worker run --recipe``; the end-to-end run is tests/lab/test_demo_recipe.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from ledger.aggregation.source import ArraySource
from ledger.content import cid_to_digest
from ledger.content.local_store import LocalStore
from ledger.errors import ConfigError
from ledger.exit_codes import ExitCode
from ledger.recipe import RecipeMismatch, RecipeRef, TaskSpec, TaskSpecRejected
from worker.recipe import check_recipe, load_hooks, loss_of, read_task_spec
from worker.reference import reference_update

REF = RecipeRef("mine", "1", "QmWvayS2Z667EYvP7QYPgY7HbVHAzHnAUK3fXDZ74rfaPf")
OTHER = RecipeRef("theirs", "2", "QmYiBtjoPDjmMcfK1Ek8KVkuZfZ7Uwo4dNxbhT8bGQ32yv")


class FakeChain:
    """What read_task_spec reads of the chain: the task's spec digest."""

    def __init__(self, cid: str) -> None:
        self.digest = cid_to_digest(cid)

    def task(self, task_id: int) -> Any:
        return SimpleNamespace(params=SimpleNamespace(spec_digest=self.digest))


def stored(tmp_path: Path, raw: bytes) -> tuple[FakeChain, LocalStore]:
    store = LocalStore(tmp_path / "blocks")
    return FakeChain(store.put_bytes(raw)), store


def test_the_task_spec_is_read_from_the_digest_the_chain_anchors(tmp_path: Path) -> None:
    spec = TaskSpec(recipe=REF, hyperparameters={"lr": 0.1}, seed=3, checks={"loss_delta": 2.5})
    chain, store = stored(tmp_path, spec.to_json().encode())
    assert read_task_spec(chain, store, 1) == spec  # type: ignore[arg-type]


def test_a_pre_recipe_spec_names_no_recipe(tmp_path: Path) -> None:
    chain, store = stored(tmp_path, json.dumps({"model": "mlp", "seed": 0}).encode())
    assert read_task_spec(chain, store, 1) is None  # type: ignore[arg-type]


def test_a_broken_or_missing_spec_is_an_error_naming_its_cid(tmp_path: Path) -> None:
    chain, store = stored(tmp_path, b'{"schema": 2, "recipe": 7}')
    with pytest.raises(TaskSpecRejected, match="task 1's specification Qm"):
        read_task_spec(chain, store, 1)  # type: ignore[arg-type]
    missing = FakeChain(OTHER.cid)
    with pytest.raises(ConfigError, match=f"cannot read the specification {OTHER.cid} of task 4"):
        read_task_spec(missing, store, 4)  # type: ignore[arg-type]


def test_a_recipe_of_another_hash_is_refused_with_both_hashes_and_exit_10() -> None:
    spec = TaskSpec(recipe=OTHER)
    with pytest.raises(RecipeMismatch) as caught:
        check_recipe(7, REF, spec)
    message = str(caught.value)
    assert REF.cid in message
    assert OTHER.cid in message
    assert "task 7" in message
    assert caught.value.exit_code == ExitCode.RECIPE_MISMATCH
    check_recipe(7, OTHER, spec)  # the task's own: accepted
    check_recipe(7, REF, None)  # a legacy spec names no hash: nothing to compare


class Hooks:
    """A host's hooks without torch: a 'model' whose loss is the distance of w to 1."""

    ref = REF

    def __init__(self, recipe: str, spec: TaskSpec | None) -> None:
        self.recipe = recipe
        self.spec = spec

    def metrics(self, weights: Any) -> dict[str, float]:
        return {"loss": float(np.sum((np.asarray(weights["w"]) - 1.0) ** 2)), "accuracy": 0.5}

    def reference(self, weights: Any, *, seed: int, steps: int) -> dict[str, Any]:
        return {"w": (1.0 - np.asarray(weights["w"], dtype=np.float64)) * 0.1}


def host(recipe: str, spec: TaskSpec | None) -> Hooks:
    return Hooks(recipe, spec)


def no_metrics(recipe: str, spec: TaskSpec | None) -> Any:
    return SimpleNamespace(ref=REF, reference=None)


def test_the_host_gives_the_loss_gate_and_the_reference_trainer() -> None:
    spec = TaskSpec(recipe=REF)
    hooks = load_hooks("my.recipe", spec, host=f"{__name__}:host")
    assert isinstance(hooks, Hooks)
    assert (hooks.recipe, hooks.spec) == ("my.recipe", spec)
    loss = loss_of(hooks)
    assert loss({"w": np.array([1.0, 3.0], dtype=np.float32)}) == 4.0
    base = ArraySource({"w": np.array([0.0, 2.0], dtype=np.float32)})
    vector = reference_update(hooks.reference, base, seed=1)
    assert np.allclose(vector, [0.1, -0.1])


def test_a_bad_host_or_hooks_without_metrics_are_refused() -> None:
    with pytest.raises(ConfigError, match="not MODULE:FUNCTION"):
        load_hooks("x", None, host="nohost")
    with pytest.raises(ConfigError, match="cannot load the recipe host"):
        load_hooks("x", None, host="no.such.module:fn")
    with pytest.raises(ConfigError, match="without `metrics`"):
        load_hooks("x", None, host=f"{__name__}:no_metrics")


def test_an_evaluate_without_loss_cannot_gate() -> None:
    hooks = SimpleNamespace(ref=REF, metrics=lambda w: {"accuracy": 1.0})
    with pytest.raises(ConfigError, match='no "loss"'):
        loss_of(hooks)({"w": np.zeros(1)})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--recipe", "digits", "--evaluator", "node.heldout:loss"], "drop --evaluator"),
        (["--recipe", "digits", "--reference-trainer", "node.heldout:reference"], "drop --evaluator"),
    ],
)
def test_recipe_replaces_the_evaluator_and_reference_trainer_flags(args: list[str], problem: str) -> None:
    from worker.cli import app

    result = CliRunner().invoke(app, ["run", "--role", "validator", *args])
    assert result.exit_code == 2
    assert problem in " ".join(result.output.split())


def test_only_a_validator_takes_a_recipe() -> None:
    from worker.cli import app

    result = CliRunner().invoke(app, ["run", "--role", "aggregator", "--recipe", "digits"])
    assert result.exit_code == 2
    assert "only validators" in " ".join(result.output.split())


def runtime_for(tmp_path: Path, spec: TaskSpec) -> Any:
    """What ``worker run`` has when it takes up the recipe: chain, store, the task, the check limits."""
    from ledger.checks import CheckLimits

    chain, store = stored(tmp_path, spec.to_json().encode())
    return SimpleNamespace(
        chain=lambda: chain,
        store=lambda: store,
        settings=SimpleNamespace(task_id=1),
        limits=CheckLimits(),
        recipe=None,
        evaluate=None,
        reference_trainer=None,
    )


def test_worker_run_takes_up_the_tasks_recipe_with_the_specs_margin(tmp_path: Path) -> None:
    from worker.cli import _use_recipe

    rt = runtime_for(tmp_path, TaskSpec(recipe=REF, checks={"loss_delta": 2.5}))
    _use_recipe(rt, "mine", host=f"{__name__}:host", loss_delta_given=False)
    assert rt.recipe == REF
    assert rt.limits.loss_delta == 2.5
    assert rt.evaluate({"w": np.array([3.0])}) == 4.0
    assert rt.reference_trainer.__self__.recipe == "mine"

    given = runtime_for(tmp_path / "given", TaskSpec(recipe=REF, checks={"loss_delta": 2.5}))
    given.limits = replace(given.limits, loss_delta=0.5)
    _use_recipe(given, "mine", host=f"{__name__}:host", loss_delta_given=True)
    assert given.limits.loss_delta == 0.5  # --loss-delta wins over the spec


def test_a_loss_ratio_given_on_the_command_line_beats_the_specs(tmp_path: Path) -> None:
    from worker.cli import _use_recipe

    spec = TaskSpec(recipe=REF, checks={"loss_ratio": 2.0})
    rt = runtime_for(tmp_path, spec)
    _use_recipe(rt, "mine", host=f"{__name__}:host", loss_delta_given=False)
    assert rt.limits.loss_ratio == 2.0
    given = runtime_for(tmp_path / "given", spec)
    given.limits = replace(given.limits, loss_ratio=1.2)
    _use_recipe(given, "mine", host=f"{__name__}:host", loss_delta_given=False, loss_ratio_given=True)
    assert given.limits.loss_ratio == 1.2


def test_worker_run_judges_with_every_check_setting_the_task_anchors(tmp_path: Path) -> None:
    """What `meshprov audit rejudge` re-judges with is what the validator judged with."""
    from worker.cli import _use_recipe

    anchored = {"zscore": None, "max_scale_ratio": 2.0, "min_norm": 0.01, "near_copy_cosine": 0.99}
    rt = runtime_for(tmp_path, TaskSpec(recipe=REF, checks=anchored))
    _use_recipe(rt, "mine", host=f"{__name__}:host", loss_delta_given=False)
    assert rt.limits.zscore_threshold is None
    assert rt.limits.max_scale_ratio == 2.0
    assert rt.limits.min_norm == 0.01
    assert rt.limits.near_copy_cosine == 0.99
    rt = runtime_for(tmp_path / "typo", TaskSpec(recipe=REF, checks={"zscor": 3}))
    with pytest.raises(ConfigError, match=r"checks\.zscor is not a check setting"):
        _use_recipe(rt, "mine", host=f"{__name__}:host", loss_delta_given=False)


def test_worker_run_refuses_another_recipe_or_a_bad_margin(tmp_path: Path) -> None:
    from worker.cli import _use_recipe

    rt = runtime_for(tmp_path, TaskSpec(recipe=OTHER))
    with pytest.raises(RecipeMismatch):
        _use_recipe(rt, "mine", host=f"{__name__}:host", loss_delta_given=False)
    assert rt.evaluate is None  # nothing taken up
    for bad in ("5", -1.0):
        rt = runtime_for(tmp_path / str(bad), TaskSpec(recipe=REF, checks={"loss_delta": bad}))
        with pytest.raises(ConfigError, match="specification"):
            _use_recipe(rt, "mine", host=f"{__name__}:host", loss_delta_given=False)


def test_worker_run_takes_up_the_tasks_privacy_budget(tmp_path: Path) -> None:
    """The budget the specification anchors is what the validator bounds members with (PRIVACY_BUDGET_EXCEEDED)."""
    from ledger.checks.privacy_budget import Budget
    from worker.cli import _use_recipe

    spec = TaskSpec(recipe=REF, checks={"privacy_epsilon": 8, "privacy_delta": 1e-6})
    rt = runtime_for(tmp_path, spec)
    _use_recipe(rt, "mine", host=f"{__name__}:host", loss_delta_given=False)
    assert rt.privacy_budget == Budget(8.0, 1e-6)
    rt = runtime_for(tmp_path / "none", TaskSpec(recipe=REF, checks={"loss_delta": 2.5}))
    _use_recipe(rt, "mine", host=f"{__name__}:host", loss_delta_given=False)
    assert rt.privacy_budget is None
