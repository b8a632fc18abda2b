"""The update metadata's optional provenance fields: the member's dataset commitment and the framework versions.

Old files (without them) still parse; present, they are strict and bounded; one `meshprov` metadata key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.reasons import Reason
from ledger.updatefile import MetadataRejected, UpdateFile, UpdateMeta, parse_metadata, write_update

BASE = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
DATASET = "0x" + "ab" * 32
FRAMEWORKS = {"python": "3.11.9", "torch": "2.5.1+cpu", "meshprov": "0.4.0"}


def meta(**extra: Any) -> UpdateMeta:
    return UpdateMeta(task=1, round=2, base=BASE, contributor=ADDRESS, num_samples=150, **extra)


def test_dataset_and_frameworks_round_trip_through_a_file(tmp_path: Path) -> None:
    m = meta(dataset=DATASET, frameworks=FRAMEWORKS)
    assert parse_metadata(m.to_json(), kind="update") == m
    written = write_update(tmp_path / "u.safetensors", {"w": np.zeros(3, np.float32)}, m)
    with UpdateFile.open(written.path) as update:
        assert update.metadata == m
    header = json.loads(
        written.path.read_bytes()[8 : 8 + int.from_bytes(written.path.read_bytes()[:8], "little")]
    )
    assert list(header["__metadata__"]) == ["meshprov"]  # still exactly one metadata key


def test_files_without_them_still_parse() -> None:
    old = meta()
    text = old.to_json()
    assert "dataset" not in text
    assert "frameworks" not in text
    parsed = parse_metadata(text, kind="update")
    assert isinstance(parsed, UpdateMeta)
    assert (parsed.dataset, parsed.frameworks) == (None, None)


def test_the_constructor_normalises_an_uppercase_commitment_the_parser_does_not() -> None:
    assert meta(dataset="0x" + "AB" * 32).dataset == DATASET
    data = meta(dataset=DATASET).to_dict()
    data["dataset"] = "0x" + "AB" * 32
    with pytest.raises(MetadataRejected, match="lowercase hex"):
        UpdateMeta.from_dict(data)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"dataset": "ab" * 32}, "0x followed by 64"),
        ({"dataset": "0x" + "ab" * 31}, "0x followed by 64"),
        ({"dataset": "0x" + "zz" * 32}, "0x followed by 64"),
        ({"dataset": 5}, "0x followed by 64"),
        ({"frameworks": ["torch"]}, "must be a JSON object"),
        ({"frameworks": {"torch": 2}}, "printable ASCII"),
        ({"frameworks": {"torch": ""}}, "printable ASCII"),
        ({"frameworks": {"torch": "v" * 65}}, "printable ASCII"),
        ({"frameworks": {"torch": "2.5\n"}}, "printable ASCII"),
        ({"frameworks": {"to rch": "2"}}, "ASCII letters"),
        ({"frameworks": {"": "2"}}, "ASCII letters"),
        ({"frameworks": {f"p{i}": "1" for i in range(17)}}, "at most 16"),
    ],
)
def test_malformed_provenance_is_bad_metadata(extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(MetadataRejected, match=problem) as caught:
        meta(**extra)
    assert caught.value.reason == Reason.BAD_METADATA
    data = meta().to_dict() | {k: v for k, v in extra.items()}
    with pytest.raises(MetadataRejected, match=problem):
        UpdateMeta.from_dict(data)
