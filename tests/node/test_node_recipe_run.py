"""A member trains through the task's recipe: it reads the spec the chain anchors, refuses (exit 3, both hashes
named) an installed recipe whose hash is not the task's, feeds the spec's hyperparameters to training, and records
its dataset commitment and framework versions in every update."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.content import cid_to_digest
from ledger.content.local_store import LocalStore
from ledger.exit_codes import ExitCode
from ledger.recipe import RecipeMismatch, RecipeRef, TaskSpec
from ledger.updatefile import UpdateFile, UpdateMeta
from node.models import genesis_state
from node.provenance import dataset_sha256
from node.recipe import load_recipe
from node.runner import NodeOptions
from node.training import recipe_round, round_seed
from tests.node.test_node_cli import cli
from tests.support import node as support_node
from tests.support.node import NodeNet

pytestmark = [pytest.mark.anvil]

FAST: dict[str, Any] = {"poll_s": 0.05, "max_poll_s": 0.2, "base_backoff_s": 0.01}
HYPER = {"epochs": 2, "batch_size": 16, "lr": 0.05, "momentum": 0.5}


def _spec(cid: str, name: str = "digits") -> TaskSpec:
    return TaskSpec(
        recipe=RecipeRef(name, "1", cid),
        hyperparameters=HYPER,
        seed=0,
        shards={"kind": "dirichlet", "alpha": 0.5, "members": 2},
        checks={"zscore": 3.5},
    )


@pytest.fixture
def make_net(
    anvil: Any, tmp_path: Path, dev_keys: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    nets: list[NodeNet] = []

    def make(spec: TaskSpec | bytes | None, **kwargs: Any) -> NodeNet:
        if spec is not None:
            raw = spec.to_json().encode() if isinstance(spec, TaskSpec) else spec
            spec_cid = LocalStore(tmp_path / "blocks").put_bytes(raw)
            # NodeNet anchors fake_digest("spec") as the task's spec: anchor the real one instead.
            monkeypatch.setattr(support_node, "fake_digest", lambda *_: cid_to_digest(spec_cid))
        net = NodeNet.create(anvil.url, tmp_path, dev_keys, **kwargs)
        nets.append(net)
        return net

    yield make
    for net in nets:
        net.close()


def test_a_recipe_whose_hash_is_not_the_tasks_is_refused_with_both_hashes(make_net: Any) -> None:
    digits = load_recipe("digits")
    cnn = load_recipe("digits_cnn")
    net: NodeNet = make_net(_spec(cnn.cid, "digits_cnn"), contributors=1)
    key = net.contributor_keys[0][1]
    done = cli(net, "node", "run", "--rounds", "1", "--recipe", "digits", key=key)
    assert done.returncode == ExitCode.RECIPE_MISMATCH, done.stderr
    text = " ".join(done.stderr.split())
    assert digits.cid in text
    assert cnn.cid in text
    assert "refusing to train" in text
    assert "--recipe" in text
    assert not list((net.root / "data").glob("node/*/updates/*.safetensors"))  # nothing trained, nothing sent

    runner = net.runner(0, NodeOptions(rounds=1, recipe="digits", **FAST))
    with pytest.raises(RecipeMismatch):
        runner.run()


def test_the_task_recipe_trains_with_the_specs_hyperparameters_and_commits_to_its_data(make_net: Any) -> None:
    digits = load_recipe("digits")
    net: NodeNet = make_net(_spec(digits.cid), contributors=1)
    # No --recipe: the node picks the builtin whose hash the task names.
    thread = net.start(net.runner(0, NodeOptions(shard=1, shards=2, rounds=1, **FAST)))
    net.judge_round(1)
    (record,) = thread.join_result()
    assert record.status == "accepted"
    assert record.recipe == str(digits.ref)

    with UpdateFile.open(Path(record.file)) as update:
        meta = update.metadata
        delta = {k: np.array(update.tensor(k)) for k in update}
    assert isinstance(meta, UpdateMeta)
    assert meta.frameworks is not None
    assert {"python", "torch", "meshprov"} <= set(meta.frameworks)

    # The dataset commitment is the sha-256 of a manifest the member keeps, which hashes its training examples.
    assert meta.dataset is not None
    manifest_path = next(Path(record.file).parents[1].glob("datasets/*.json"))
    raw = manifest_path.read_bytes()
    assert "0x" + hashlib.sha256(raw).hexdigest() == meta.dataset == record.dataset
    manifest = json.loads(raw)
    train, _ = digits.data(1, 2, 0)
    assert manifest["train"] == {"examples": len(train), "sha256": dataset_sha256(train)[1]}  # type: ignore[arg-type]
    assert manifest["recipe"] == digits.ref.to_dict()
    assert (manifest["member"], manifest["members"]) == (1, 2)

    # The delta is the recipe trained with the spec's hyperparameters (2 epochs, batch 16, lr 0.05, momentum 0.5).
    expected = recipe_round(digits, genesis_state("mlp", 0), train, {**HYPER, "seed": round_seed(0, 1, 1)})
    assert set(delta) == set(expected.delta)
    assert all(np.array_equal(delta[k], expected.delta[k]) for k in delta)
    assert any("the task's" in m for m in net.messages[net.contributor_keys[0][0]])


@pytest.mark.parametrize(
    ("spec", "flags", "code", "words"),
    [
        (None, ["--require-spec"], ExitCode.UNAVAILABLE, "cannot read the specification"),
        (b'{"model":"mlp","seed":0}', ["--require-spec"], ExitCode.CONFIG, "before recipes"),
        (b'{"schema":2,"recipe":{"name":"digits"}}', [], ExitCode.CONFIG, "missing"),
    ],
)
def test_an_unreadable_legacy_or_malformed_spec(
    make_net: Any, spec: bytes | None, flags: list[str], code: int, words: str
) -> None:
    net: NodeNet = make_net(spec, contributors=1)
    done = cli(net, "node", "run", "--rounds", "1", *flags, key=net.contributor_keys[0][1])
    assert done.returncode == code, done.stderr
    assert words in " ".join(done.stderr.split())
    assert not list((net.root / "data").glob("node/*/updates/*.safetensors"))


def test_the_dataset_hash_depends_only_on_the_examples() -> None:
    import torch
    from torch.utils.data import Dataset, TensorDataset

    x = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    y = torch.tensor([0, 1, 0, 1])

    class Listed(Dataset[Any]):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return x[i], int(y[i])

    tensors = dataset_sha256(TensorDataset(x, y))
    assert tensors == dataset_sha256(TensorDataset(x.clone(), y.clone()))
    assert tensors[0] == 4
    changed = x.clone()
    changed[2, 1] += 1
    assert dataset_sha256(TensorDataset(changed, y)) != tensors
    assert dataset_sha256(TensorDataset(x[[1, 0, 2, 3]], y[[1, 0, 2, 3]])) != tensors  # order is part of it
    # Python ints are int64 arrays like the int64 tensor: the same examples hash alike in any Dataset class.
    assert dataset_sha256(Listed()) == tensors


def test_an_sdk_member_gets_the_specs_settings_and_can_pin_the_tasks_recipe(make_net: Any) -> None:
    from node.sdk import Member

    digits = load_recipe("digits")
    cnn = load_recipe("digits_cnn")
    net: NodeNet = make_net(_spec(digits.cid), contributors=1)
    options = NodeOptions(rounds=1, **FAST)

    def runner(trainer: Any, on_record: Any) -> Any:
        return net.runner(0, options, trainer=trainer, on_record=on_record)

    wrong = Member(runner, recipe_ref=cnn.ref)
    with pytest.raises(RecipeMismatch, match=cnn.cid):
        next(wrong.rounds())

    member = Member(runner, recipe_ref=digits.ref)
    rounds = member.rounds()
    rnd = next(rounds)
    assert rnd.settings == HYPER
    assert rnd.seed == round_seed(0, 1, 0)
    rnd.submit(rnd.base_numpy, num_samples=3)
    rounds.close()  # leaving the loop stops the node


@pytest.mark.parametrize(
    ("text", "words"),
    [(None, "does not exist"), ("def model():\n    pass\n", "has no `data` / `evaluate` function")],
)
def test_a_recipe_that_cannot_be_loaded_exits_5_before_connecting(
    tmp_path: Path, text: str | None, words: str
) -> None:
    path = tmp_path / "broken_recipe.py"
    if text is not None:
        path.write_text(text)
    done = cli(None, "node", "run", "--recipe", str(path), MESHPROV_CHAIN_RPC_URL="http://127.0.0.1:9")
    assert done.returncode == ExitCode.CONFIG, done.stderr
    assert words in " ".join(done.stderr.split())
