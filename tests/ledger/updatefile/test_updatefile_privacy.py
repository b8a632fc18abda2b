"""The update metadata's `privacy` record: the node's DP parameters, including the mechanism's name and what an
auditor needs to recompute ε (steps, sample_rate), stay canonical and byte-deterministic."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ledger.reasons import Reason
from ledger.updatefile import MetadataRejected, UpdateFile, UpdateMeta, encode, parse_metadata

BASE = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
RECORD = {
    "mechanism": "gaussian",
    "clip": 3.0,
    "noise_multiplier": 0.1,
    "epsilon": 96.4,
    "delta": 1e-05,
    "steps": 2,
    "sample_rate": 1.0,
}


def meta(privacy: Any) -> UpdateMeta:
    return UpdateMeta(task=1, round=2, base=BASE, contributor=ADDRESS, num_samples=150, privacy=privacy)


def test_the_node_dp_record_is_accepted_canonical_and_round_trips() -> None:
    m = meta(RECORD)
    assert m.to_json().endswith(
        '"privacy":{"clip":3.0,"delta":1e-05,"epsilon":96.4,"mechanism":"gaussian","noise_multiplier":0.1,'
        '"sample_rate":1.0,"steps":2},"round":2,"schema":1,"task":1}'
    )
    assert parse_metadata(m.to_json()) == m
    # The same record in another insertion order gives the same bytes, so the same CID.
    shuffled = dict(reversed(list(RECORD.items())))
    tensors = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    assert encode(tensors, meta(shuffled)) == encode(tensors, m)
    with UpdateFile.from_bytes(encode(tensors, m)) as f:
        assert f.metadata == m


def test_what_node_privacy_produces_is_accepted() -> None:
    pytest.importorskip("opacus")
    from node.privacy import DPConfig, privatize

    private = privatize(
        {"w": np.ones(4, np.float32)}, DPConfig(clip=1.0, noise_multiplier=1.0), seed=0, steps=3
    )
    record = {**private.params, "steps": 3, "sample_rate": 1.0}
    assert meta(record).privacy == record


@pytest.mark.parametrize(
    ("privacy", "problem"),
    [
        ({"mechanism": ""}, "non-empty string"),
        ({"mechanism": 1}, "non-empty string"),
        ({"mechanism": "g" * 65}, "at most 64"),
        ({"mechanism": "gauss\nian"}, "printable"),
        ({"epsilon": "high"}, "number"),  # only `mechanism` may be a string
        ({"steps": 1.5}, "non-negative integer"),
        ({"steps": -1}, "non-negative integer"),
        ({"sample_rate": 0}, r"\(0, 1\]"),
        ({"sample_rate": 1.5}, r"\(0, 1\]"),
        ({"epsilon": float("nan")}, "finite"),
    ],
)
def test_malformed_privacy_records_are_bad_metadata(privacy: dict[str, Any], problem: str) -> None:
    with pytest.raises(MetadataRejected, match=problem) as caught:
        meta(privacy)
    assert caught.value.reason == Reason.BAD_METADATA
