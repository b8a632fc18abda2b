"""`meshprov demo --recipe PATH`: a recipe written outside meshprov (tests/lab/recipes/bn_cnn.py imports only torch:
a CNN with BatchNorm on generated images) runs through a whole consortium in real processes — members train it,
validators judge with its evaluate and train their reference updates with it — to an aggregate whose lineage
verifies and whose replay matches; the task's schema-2 spec names the recipe's hash, and a validator holding
another recipe is refused."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from ledger.content import cid_of_bytes
from ledger.exit_codes import ExitCode
from ledger.recipe import RecipeRef, parse_task_spec, recipe_cid
from ledger.updatefile import UpdateFile
from tests.lab.test_demo import SCALE_REASONS, clean_env, processes_using, run_meshprov, stop_demo_services
from tests.support import REPO

RECIPE = REPO / "tests" / "lab" / "recipes" / "bn_cnn.py"


@contextmanager
def recipe_demo(
    tmp_path: Path, recipe: Path, *args: str
) -> Iterator[tuple[subprocess.CompletedProcess[str], Path]]:
    """``meshprov demo --recipe RECIPE ARGS`` in ``tmp_path/demo``: (the finished run, its data directory); the
    services it left up for audits are stopped afterwards."""
    data_dir = tmp_path / "demo"
    done = run_meshprov("demo", "--recipe", str(recipe), *args, "--data-dir", str(data_dir), timeout=300)
    try:
        yield done, data_dir
    finally:
        stop_demo_services(data_dir)


def cli(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_meshprov("--data-dir", str(data_dir), *args, env=env)


BAD_METRIC = """
import torch
from torch import nn
from torch.utils.data import TensorDataset


def model():
    return nn.Linear(3, 2)


def data(member, members, seed):
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(member))
    return TensorDataset(x, (x[:, 0] > 0).long()), TensorDataset(x, (x[:, 0] > 0).long())


def evaluate(model, data):
    return {"loss": 1.0, "note": "n/a"}
"""


TINY_TEST = BAD_METRIC.replace('return {"loss": 1.0, "note": "n/a"}', 'return {"loss": 1.0}').replace(
    "TensorDataset(x, (x[:, 0] > 0).long())\n", "TensorDataset(x[:3], (x[:3, 0] > 0).long())\n"
)
"""A test set of 3: before, the validators refused it as they started, after the chain and the members."""


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (None, "neither a .py file nor a package directory"),
        ("def model():\n    return None\n", "has no `data` / `evaluate` function"),
        ("raise RuntimeError('boom')\n", "RuntimeError: boom"),
        (BAD_METRIC, "metric 'note' is 'n/a', not a number"),  # found sizing the loss gate, before any start
        (TINY_TEST, "its held-out half (2) cannot give each of the 3 validators a sample of its own"),
        (
            BAD_METRIC.replace('"note": "n/a"', '"n": 1').replace(
                "import torch\n", "import torch\nSETTINGS = {'dtype': torch.float32}\n", 1
            ),
            "setting 'dtype' = torch.float32 cannot be written in a task's specification",
        ),
    ],
)
def test_a_broken_recipe_is_refused_before_anything_starts(
    tmp_path: Path, source: str | None, problem: str
) -> None:
    recipe = tmp_path / "broken_recipe.py"
    if source is not None:
        recipe.write_text(source)
    data_dir = tmp_path / "demo"
    done = run_meshprov("demo", "--recipe", str(recipe), "--data-dir", str(data_dir), timeout=60)
    assert done.returncode == ExitCode.CONFIG, done.stderr
    assert problem in " ".join(done.stderr.split())
    assert not data_dir.exists()  # nothing was made, nothing started


def _genesis_gate(path: Path, *, nodes: int, seed: int = 0) -> float:
    """What the demo anchors as the loss gate for a recipe that is not a builtin: LOSS_GATE_MULTIPLE times the
    genesis's loss on member 0's test set, to three significant digits, where that is over the default."""
    from node.recipe import load_recipe
    from node.task_bounds import DEFAULT_LOSS_DELTA, LOSS_GATE_MULTIPLE

    recipe = load_recipe(str(path))
    loss = recipe.evaluate(recipe.build_model(seed), recipe.data(0, nodes, seed)[1])["loss"]
    sized = LOSS_GATE_MULTIPLE * loss
    return float(f"{sized:.3g}") if sized > DEFAULT_LOSS_DELTA else DEFAULT_LOSS_DELTA


def _bounds_of(recipe: Path, **config: object) -> tuple[dict[str, float], float, list[str]]:
    """``Demo._size_bounds`` for a 4-member task of ``recipe``: (the checks it anchors, the loss gate, what it said)."""
    from rich.console import Console

    from lab.demo import Demo, DemoConfig

    said: list[str] = []
    demo = Demo(
        DemoConfig(nodes=4, recipe=str(recipe), **config), console=Console(stderr=True), say=said.append
    )  # type: ignore[arg-type]
    demo.recipe = demo._load_recipe()
    return demo._size_bounds(demo.recipe), demo.config.loss_delta, said


def test_a_recipe_whose_honest_updates_dwarf_its_weights_gets_bounds_sized_for_it() -> None:
    """tests/lab/recipes/offset_regression.py: with the digits-sized defaults every honest update was rejected
    (SCALE_OUT_OF_PROPORTION in round 1, so the base never moved; with a wider scale bound, LOSS_REGRESSION for the
    members whose update raised an MSE in the hundreds by more than 5)."""
    from ledger.checks.limits import DEFAULT_MAX_SCALE_RATIO
    from node.task_bounds import DEFAULT_LOSS_DELTA

    offset = REPO / "tests" / "lab" / "recipes" / "offset_regression.py"
    checks, gate, said = _bounds_of(offset)
    assert checks["max_scale_ratio"] > 3 * DEFAULT_MAX_SCALE_RATIO
    assert gate == _genesis_gate(offset, nodes=4) > 1000 * DEFAULT_LOSS_DELTA
    assert any(line.startswith("max_scale_ratio ") for line in said)
    assert any(line.startswith("loss gate ") for line in said)

    # A gate the user gave is kept; the scale bound is still measured.
    checks, gate, _ = _bounds_of(offset, loss_delta=7.0, loss_delta_given=True)
    assert gate == 7.0
    assert "max_scale_ratio" in checks

    # The builtins keep the defaults they were measured with.
    assert _bounds_of(Path("digits")) == ({}, DEFAULT_LOSS_DELTA, [])


@pytest.mark.anvil
@pytest.mark.redis
@pytest.mark.slow
def test_an_outside_recipe_with_buffers_runs_through_the_demo_and_its_record_audits(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    done = run_meshprov(
        "demo", "--recipe", str(RECIPE.relative_to(REPO)), "--nodes", "3", "--rounds", "2", "--json",
        "--data-dir", str(data_dir), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout)
    try:
        assert processes_using(data_dir.resolve()) == []

        # The summary names the recipe and its hash; the spec anchored for the task is schema 2 and names it too.
        ref = RecipeRef("bn-cnn-test", "0.1", recipe_cid(RECIPE))
        recipe = summary["recipe"]
        assert (recipe["name"], recipe["version"], recipe["cid"]) == (ref.name, ref.version, ref.cid)
        assert recipe["source"] == str(RECIPE)
        assert summary["demo"]["recipe"] == str(RECIPE.relative_to(REPO))
        raw = (data_dir / "task-spec.json").read_bytes()
        spec = parse_task_spec(raw)
        assert spec.recipe == ref
        assert cid_of_bytes(raw) == recipe["spec"]["cid"]
        # The loss gate is what the recipe's genesis gives: the default 5 here (twice its 1.6 nats is less).
        assert spec.checks["loss_delta"] == summary["demo"]["loss_delta"] == _genesis_gate(RECIPE, nodes=3)
        # Its members' rounds take fewer than 20 optimiser steps (6 on the smallest of these three shards), so the
        # validators' reference is sized to them (docs/scoring.md, "How many steps").
        assert spec.checks["reference_steps"] == 6

        # Every validator judged with the recipe, checked against the task's hash before serving.
        for i in (1, 2, 3):
            log = (data_dir / "logs" / f"validator-{i}.log").read_text()
            assert f"recipe {ref}: the task's" in log

        # Both rounds finalized with an aggregate of honest updates; the scaled one rejected for a scale reason.
        assert [r["round"] for r in summary["rounds"]] == [1, 2]
        for r in summary["rounds"]:
            assert not r["carried_over"]
            assert r["accepted"], "no update accepted: the round would replay trivially"
            for u in r["updates"]:
                assert len(u["scores"]) == 3
                if u["behaviour"] == "scale":
                    assert not u["accepted"]
                    assert {v["reason_slug"] for v in u["scores"]} <= SCALE_REASONS
            assert set(r["metrics"]) >= {"loss", "accuracy"}

        # `final` keeps today's fields, with the recipe's metrics beside them.
        final = summary["final"]
        assert final["model"] == summary["rounds"][-1]["aggregate"]
        assert final["accuracy"] == final["metrics"]["accuracy"]
        assert final["loss"] == final["metrics"]["loss"]
        assert final["recipe"] == ref.to_dict()
        assert final["lineage"]["verified"] is True
        assert final["lineage"]["depth"] == 2
        assert final["verify"]["status"] == "anchored"
        assert summary["baseline"]["model"] == "bn-cnn-test"

        # The BatchNorm buffers travelled: the final model holds a trained int64 batch counter and moved statistics.
        with UpdateFile.open(Path(final["file"])) as model:
            counter = np.asarray(model.tensor("1.num_batches_tracked"))
            assert counter.dtype == np.int64
            assert int(counter) > 0
            assert not np.allclose(np.asarray(model.tensor("1.running_var")), 1.0)

        # An auditor's commands on the data directory alone: the lineage verifies, each round's replay matches.
        lineage = cli(data_dir, "audit", "lineage", final["model"])
        assert lineage.returncode == ExitCode.OK, lineage.stderr
        assert "verified: 2 rounds back to genesis" in lineage.stdout
        for round_ in (1, 2):
            replay = cli(data_dir, "audit", "replay", "1", str(round_), "--json")
            assert replay.returncode == ExitCode.OK, replay.stderr
            report = json.loads(replay.stdout)
            assert report["status"] == "match"
            assert (
                report["recomputed_cid"]
                == report["onchain_cid"]
                == summary["rounds"][round_ - 1]["aggregate"]
            )

        # A validator whose installed recipe is another one is refused before it serves, naming both hashes.
        env = {**clean_env(), "MESHPROV_PRIVATE_KEY_FILE": str(data_dir / "keys" / "validator-1.key")}
        wrong = cli(
            data_dir, "worker", "run", "--role", "validator", "--recipe", "digits", "--pool", "solo", env=env
        )
        assert wrong.returncode == ExitCode.RECIPE_MISMATCH, wrong.stderr
        assert "refusing to judge" in wrong.stderr
        assert ref.cid in wrong.stderr
    finally:
        stop_demo_services(data_dir)
    assert processes_using(data_dir.resolve()) == []


@pytest.mark.anvil
@pytest.mark.redis
@pytest.mark.slow
def test_a_recipe_package_with_its_own_training_and_no_accuracy_runs_and_reports_its_loss(
    tmp_path: Path,
) -> None:
    """tests/lab/recipes/regress: a package directory (relative import), a custom Dataset, its own train() and
    loss(), an evaluate returning a loss and a mean absolute error but no accuracy."""
    package = REPO / "tests" / "lab" / "recipes" / "regress"
    with recipe_demo(tmp_path, package, "--nodes", "3", "--rounds", "2", "--json") as (done, data_dir):
        assert done.returncode == 0, done.stderr[-4000:]
        summary = json.loads(done.stdout)
        assert (summary["recipe"]["name"], summary["recipe"]["cid"]) == ("regress", recipe_cid(package))
        final = summary["final"]
        assert final["accuracy"] is None
        assert set(final["metrics"]) == {"loss", "mae"}
        assert final["lineage"]["verified"] is True
        assert summary["baseline"]["accuracy"] is None
        assert (
            summary["baseline"]["loss"] < summary["rounds"][0]["loss"]
        )  # trained, by the recipe's own train()
        assert all(r["accepted"] for r in summary["rounds"])
        # The recipe printed in the demo's process (the baseline's training): on stderr, stdout kept for the JSON.
        assert "regress: trained on 300 samples" in done.stderr
        # Without an accuracy the rounds and the summary print the recipe's loss.
        assert f"test loss {summary['rounds'][-1]['loss']:.4g}" in done.stderr
        replay = cli(data_dir, "audit", "replay", "1", "2", "--json")
        assert replay.returncode == ExitCode.OK, replay.stderr
        assert json.loads(replay.stdout)["status"] == "match"


@pytest.mark.anvil
@pytest.mark.redis
@pytest.mark.slow
def test_honest_updates_of_a_recipe_with_short_rounds_score_as_honest_work(tmp_path: Path) -> None:
    """tests/lab/recipes/short_round.py: members take 2 optimiser steps a round. Against the validators' 20-step
    reference every honest update scored 1-3 of 10,000 (the magnitude term to the 4th power), so honest members'
    reputations never rose and rewards were split by noise; the task now anchors ``reference_steps`` at a round's
    2 steps and the validators' references stop there."""
    recipe = REPO / "tests" / "lab" / "recipes" / "short_round.py"
    with recipe_demo(tmp_path, recipe, "--nodes", "4", "--rounds", "1", "--json") as (done, data_dir):
        assert done.returncode == 0, done.stderr[-4000:]
        summary = json.loads(done.stdout)
        assert parse_task_spec((data_dir / "task-spec.json").read_bytes()).checks["reference_steps"] == 2
        assert "reference_steps 2: an honest round on the smallest shard takes 2" in done.stderr
        honest = [u for r in summary["rounds"] for u in r["updates"] if u["behaviour"] == "honest"]
        assert len(honest) == 3
        for u in honest:
            assert u["accepted"]
            assert u["consensus"] >= 3_000, u  # 1-3 with the 20-step reference
            assert min(v["score"] for v in u["scores"]) >= 1_000, u


VALIDATORS_CANNOT_TRAIN = """
import os

import torch
from torch import nn
from torch.utils.data import TensorDataset


def model():
    return nn.Linear(4, 2)


def data(member, members, seed):
    x = torch.randn(80, 4, generator=torch.Generator().manual_seed(seed + member))
    return TensorDataset(x, (x[:, 0] > 0).long()), TensorDataset(x[:40], (x[:40, 0] > 0).long())


def train(model, data, settings):
    if os.environ.get("HELDOUT_SLICE"):
        raise RuntimeError("this recipe cannot train on a validator's held-out slice")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data.tensors
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return len(y)


def evaluate(model, data):
    x, y = data.tensors
    return {"loss": float(nn.functional.cross_entropy(model(x), y))}
"""


@pytest.mark.anvil
@pytest.mark.redis
@pytest.mark.slow
def test_a_round_whose_validators_all_fail_stops_the_demo_and_names_their_error(tmp_path: Path) -> None:
    """Every validator's reference training fails: no validator reveals, nothing can be accepted. The demo ran all
    its rounds so and exited 0; now the first such round stops it with what the validators' logs say."""
    recipe = tmp_path / "validators_cannot_train.py"
    recipe.write_text(VALIDATORS_CANNOT_TRAIN)
    args = ("--nodes", "3", "--rounds", "3", "--commit-window", "8")
    with recipe_demo(tmp_path, recipe, *args) as (done, data_dir):
        assert done.returncode == ExitCode.ERROR, done.stderr[-3000:]
        err = " ".join(done.stderr.split())
        assert "round 1: 0 of 3 validators revealed their scores, fewer than the quorum of 2" in err
        assert "round 2:" not in err  # stopped at the first
        assert "--- validator-1 ---" in err
        assert "--- validator-3 ---" in err
        assert "cannot train on a validator's held-out slice" in err
    assert processes_using(data_dir.resolve()) == []
