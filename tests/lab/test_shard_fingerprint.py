"""lab.shard_fingerprint: equal training sets give equal digests, and a difference in any sample shows; the demo
warns when a recipe's data() gives two members the same shard (their honest updates are then rejected as copies)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from lab.shard_fingerprint import fingerprint


def test_equal_shards_share_a_digest_and_any_changed_sample_shows() -> None:
    x = torch.arange(40.0).reshape(20, 2)
    y = torch.arange(20)
    same = TensorDataset(x.clone(), y.clone())
    assert fingerprint(TensorDataset(x, y)) == fingerprint(same)
    changed = x.clone()
    changed[13, 1] += 1
    assert fingerprint(TensorDataset(changed, y)) != fingerprint(same)
    assert fingerprint(TensorDataset(x[:19], y[:19])) != fingerprint(same)  # the length counts
    assert fingerprint(TensorDataset(x.double(), y)) != fingerprint(same)  # so does the dtype


def test_plain_lists_of_numpy_and_nested_samples_are_read_too() -> None:
    rows = [({"a": np.full(3, i, dtype=np.float32), "b": [i, "t"]}, i % 2) for i in range(300)]
    assert fingerprint(rows) == fingerprint([dict_copy(r) for r in rows])
    other = [dict_copy(r) for r in rows]
    other[0][0]["a"][1] = -1.0  # index 0 is always read
    assert fingerprint(other) != fingerprint(rows)
    assert fingerprint([]) == fingerprint([])


def dict_copy(row: tuple[dict[str, object], int]) -> tuple[dict[str, object], int]:
    features, label = row
    return ({"a": np.array(features["a"]), "b": list(features["b"])}, label)  # type: ignore[call-overload]


SAME_DATA = """
import torch
from torch import nn
from torch.utils.data import TensorDataset


def model():
    return nn.Linear(3, 2)


def data(member, members, seed):
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(seed))  # ignores member: every shard alike
    return TensorDataset(x, (x[:, 0] > 0).long()), TensorDataset(x, (x[:, 0] > 0).long())


def evaluate(model, data):
    x, y = data.tensors
    return {"loss": float(nn.functional.cross_entropy(model(x), y))}
"""


def test_the_demo_warns_when_members_get_the_same_shard(tmp_path: Path) -> None:
    from rich.console import Console

    from lab.demo import Demo, DemoConfig

    def warnings_for(source: str, nodes: int) -> list[str]:
        path = tmp_path / f"recipe_{nodes}_{abs(hash(source))}.py"
        path.write_text(source)
        said: list[str] = []
        demo = Demo(DemoConfig(nodes=nodes, recipe=str(path)), console=Console(stderr=True), say=said.append)  # type: ignore[arg-type]
        demo.recipe = demo._load_recipe()
        demo._warn_identical_shards()
        return said

    said = warnings_for(SAME_DATA, 3)
    assert len(said) == 1
    assert "gives node-1 and node-2, node-1 and node-3 the same training samples" in said[0]
    assert "rejected as duplicate" in said[0]
    own = SAME_DATA.replace("manual_seed(seed))", "manual_seed(seed * 100 + member))")
    assert warnings_for(own, 3) == []
