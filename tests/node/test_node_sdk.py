"""The member SDK: a plain training script (tests/node/sdk_member_script.py, 4 added lines) runs as a real member
process against anvil, and its updates are accepted over two rounds, the second trained from round 1's aggregate."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.content import digest_to_cid
from ledger.updatefile import UpdateFile, UpdateMeta
from node.journal import Journal
from node.provenance import dataset_sha256
from tests.support import REPO
from tests.support.node import NodeNet

SCRIPT = Path(__file__).with_name("sdk_member_script.py")


@pytest.fixture
def net(anvil: Any, tmp_path: Path, dev_keys: list[tuple[str, str]]) -> Iterator[NodeNet]:
    made = NodeNet.create(anvil.url, tmp_path, dev_keys, contributors=1)
    yield made
    made.close()


def _environment(net: NodeNet, key: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MESHPROV_")}
    environ.update(
        {
            "MESHPROV_DATA_DIR": str(net.root / "data"),
            "MESHPROV_CHAIN_RPC_URL": net.url,
            "MESHPROV_DEPLOYMENT_FILE": str(net.deployment_file),
            "MESHPROV_STORE_DIR": str(net.root / "blocks"),
            "MESHPROV_TASK_ID": str(net.task_id),
            "MESHPROV_PRIVATE_KEY": key,
            "PYTHONPATH": str(REPO),
        }
    )
    return environ


def test_the_script_adds_at_most_five_lines() -> None:
    added = [line for line in SCRIPT.read_text().splitlines() if line.rstrip().endswith("# + meshprov")]
    assert 1 <= len(added) <= 5


@pytest.mark.anvil
def test_a_plain_training_script_is_a_member_whose_updates_are_accepted(net: NodeNet) -> None:
    address, key = net.contributor_keys[0]
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "2"],
        cwd=net.root,
        env=_environment(net, key),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = digest_to_cid(net.judge_round(1))
        net.judge_round(2)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "round 1: submitted" in out
    assert "round 2: submitted" in out
    assert "accepted" in err

    journal = Journal.for_member(net.root / "data", address)
    records = [journal.load(net.task_id, r) for r in (1, 2)]
    assert [r.status if r else None for r in records] == ["accepted", "accepted"]
    metas = []
    for record in records:
        assert record is not None
        with UpdateFile.open(Path(record.file)) as update:
            assert isinstance(update.metadata, UpdateMeta)
            metas.append(update.metadata)
            assert all(np.isfinite(np.asarray(update.tensor(k))).all() for k in update)
    assert metas[0].base == net.genesis_cid
    assert metas[1].base == first  # round 2 trained from round 1's aggregate, handed over as rnd.base
    assert metas[0].num_samples == 300
    # submit(..., dataset=train_set) committed to the script's data: a manifest it keeps, hashing its examples.
    assert metas[0].dataset is not None
    assert metas[0].dataset == metas[1].dataset
    manifest = (journal.root / "datasets" / f"{metas[0].dataset[2:]}.json").read_bytes()
    assert "0x" + hashlib.sha256(manifest).hexdigest() == metas[0].dataset
    import torch
    from sklearn.datasets import load_digits
    from torch.utils.data import TensorDataset

    digits = load_digits()
    x = torch.tensor(digits.data[:300] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(digits.target[:300], dtype=torch.int64)
    assert dataset_sha256(TensorDataset(x, y))[1] in manifest.decode()
    assert metas[0].frameworks is not None
    assert "torch" in metas[0].frameworks


def _member(net: NodeNet, **options: Any) -> Any:
    from node.runner import NodeOptions
    from node.sdk import Member

    fast = NodeOptions(rounds=1, poll_s=0.05, max_poll_s=0.2, **options)
    return Member(lambda trainer, on_record: net.runner(0, fast, trainer=trainer, on_record=on_record))


@pytest.mark.anvil
def test_the_sdk_refuses_wrong_weights_and_a_round_without_submit_and_stops_on_break(net: NodeNet) -> None:
    from torch import nn

    from node.errors import StateMismatch
    from node.sdk import SdkError

    member = _member(net)
    rounds = member.rounds()
    rnd = next(rounds)
    assert rnd.number == 1
    assert set(rnd.base) == {"1.weight", "1.bias", "3.weight", "3.bias"}
    wrong = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    with pytest.raises(StateMismatch, match=r"1\.weight has shape \[64, 64\], expected \[128, 64\]"):
        rnd.submit(wrong.state_dict(), num_samples=10)
    for not_a_count in (0, True, 5.0, "5"):
        with pytest.raises(SdkError, match="num_samples"):
            rnd.submit(rnd.base, num_samples=not_a_count)
    with pytest.raises(SdkError, match=r"ended without rnd\.submit"):
        next(rounds)
    assert not member.runner.journal.load(net.task_id, 1)  # nothing was trained, written or sent

    # Leaving the loop early stops the node cleanly (its thread ends, nothing submitted).
    again = _member(net)
    for _rnd in again.rounds():
        break
    assert again._thread is not None
    assert not again._thread.is_alive()
    assert not net.client().submission_of(net.task_id, 1, again.address).submitted


@pytest.mark.anvil
def test_a_round_result_waits_for_the_verdict(net: NodeNet) -> None:
    import threading

    member = _member(net)
    judge = threading.Thread(target=net.judge_round, args=(1,), daemon=True)
    judge.start()
    for rnd in member.rounds():
        rnd.submit(rnd.base_numpy, num_samples=np.int64(5))  # a count computed with numpy is a count
        record = rnd.result(timeout=60)
        assert record is not None
        assert record.status == "accepted"
    judge.join(30)
    assert [r.status for r in member.records] == ["accepted"]
    assert [(r.num_samples, type(r.num_samples)) for r in member.records] == [(5, int)]
