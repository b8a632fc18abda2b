"""ledger.recipe: the deterministic recipe archive, its CID, and the schema-2 task specification."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from ledger.content import cid_of_bytes
from ledger.recipe import (
    MAX_SPEC_BYTES,
    LegacyTaskSpec,
    RecipeError,
    RecipeRef,
    TaskSpec,
    TaskSpecRejected,
    parse_task_spec,
    recipe_archive,
    recipe_cid,
)

CID = "QmZoEkgqtTKUXrYypeZGA2RFjscc5JKjfv5y5rJBUA9nDf"


def _package(root: Path, files: dict[str, bytes], *, order: list[str] | None = None) -> Path:
    pkg = root / "myrecipe"
    for name in order or list(files):
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[name])
    return pkg


FILES = {
    "__init__.py": b"from myrecipe.model import model\n",
    "model.py": b"def model():\n    return None\n",
    "data/vocab.txt": b"a\nb\n",
}


def test_same_files_give_the_same_archive_whatever_mtimes_modes_and_creation_order(tmp_path: Path) -> None:
    one = _package(tmp_path / "one", FILES)
    two = _package(tmp_path / "two", FILES, order=list(reversed(FILES)))
    os.utime(two / "model.py", (1_000_000, 1_000_000))
    (two / "model.py").chmod(0o755)
    (two / "__pycache__").mkdir()
    (two / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\x00junk")
    (two / "stale.pyc").write_bytes(b"junk")
    (two / ".DS_Store").write_bytes(b"junk")
    assert recipe_archive(one) == recipe_archive(two)
    assert recipe_cid(one) == recipe_cid(two) == cid_of_bytes(recipe_archive(one))


def test_one_changed_byte_changes_the_cid(tmp_path: Path) -> None:
    one = _package(tmp_path / "one", FILES)
    changed = dict(FILES, **{"data/vocab.txt": b"a\nc\n"})
    two = _package(tmp_path / "two", changed)
    assert recipe_cid(one) != recipe_cid(two)


def test_archive_members_are_sorted_normalised_and_named_by_package(tmp_path: Path) -> None:
    pkg = _package(tmp_path, FILES)
    with tarfile.open(fileobj=io.BytesIO(recipe_archive(pkg))) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [
            "myrecipe/__init__.py",
            "myrecipe/data/vocab.txt",
            "myrecipe/model.py",
        ]
        assert {(m.mtime, m.uid, m.gid, m.mode, m.uname) for m in members} == {(0, 0, 0, 0o644, "")}
        extracted = tar.extractfile("myrecipe/model.py")
        assert extracted is not None
        assert extracted.read() == FILES["model.py"]


def test_a_single_module_is_archived_under_its_file_name(tmp_path: Path) -> None:
    module = tmp_path / "solo.py"
    module.write_text("def model(): ...\n")
    copy = tmp_path / "elsewhere" / "solo.py"
    copy.parent.mkdir()
    shutil.copy(module, copy)
    os.utime(copy, (5, 5))
    with tarfile.open(fileobj=io.BytesIO(recipe_archive(module))) as tar:
        assert tar.getnames() == ["solo.py"]
    assert recipe_cid(module) == recipe_cid(copy)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.py", "does not exist"),
        (lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt", "not a .py file"),
        (lambda p: (p / "pkg").mkdir() or p / "pkg", "no __init__.py"),
    ],
)
def test_what_is_not_a_recipe_is_refused_by_name(tmp_path: Path, make: object, message: str) -> None:
    source = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(RecipeError, match=message):
        recipe_archive(source)


def test_symbolic_links_are_refused(tmp_path: Path) -> None:
    pkg = _package(tmp_path, FILES)
    (pkg / "link.py").symlink_to(pkg / "model.py")
    with pytest.raises(RecipeError, match="symbolic link"):
        recipe_archive(pkg)


SPEC = TaskSpec(
    recipe=RecipeRef("digits", "1", CID),
    hyperparameters={"epochs": 5, "batch_size": 32, "lr": 0.1, "optimizer": "sgd"},
    seed=7,
    shards={"kind": "dirichlet", "alpha": 0.5, "members": 3},
    checks={"zscore": 3.5, "loss_delta": 5.0},
    dataset="sklearn digits",
)


def test_spec_round_trips_through_canonical_json() -> None:
    raw = SPEC.to_json().encode()
    assert parse_task_spec(raw) == SPEC
    assert SPEC.to_json() == parse_task_spec(raw).to_json()
    assert SPEC.cid == cid_of_bytes(raw)
    assert raw.startswith(b'{"checks":')  # sorted keys, no spaces


def test_recipe_ref_normalises_a_cidv1() -> None:
    from ledger.content import parse_cid

    v1 = parse_cid(CID).v1
    assert RecipeRef("digits", "1", v1).cid == CID


def _mutated(**changes: object) -> bytes:
    import json

    data = SPEC.to_dict()
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{", "not JSON"),
        (b"[]", "a JSON object is expected"),
        (b'{"schema": 2, "schema": 2}', "appears twice"),
        (_mutated(schema=3), "unknown schema 3"),
        (_mutated(schema=True), "unknown schema True"),
        (_mutated(recipe=None), "missing recipe"),
        (_mutated(extra=1), "unknown field.*extra"),
        (_mutated(recipe={"name": "d", "version": "1"}), "missing cid"),
        (_mutated(recipe={"name": "d", "version": "1", "cid": "nope"}), "recipe.cid"),
        (_mutated(recipe={"name": "", "version": "1", "cid": CID}), "recipe.name"),
        (_mutated(seed=-1), "`seed`"),
        (_mutated(seed=1.5), "`seed`"),
        (_mutated(hyperparameters=[1]), "`hyperparameters` must be a JSON object"),
        (_mutated(checks="strict"), "`checks` must be a JSON object"),
        (_mutated(hyperparameters={"lr": float("nan")}), "NaN"),
        (b" " * (MAX_SPEC_BYTES + 1), "more than"),
    ],
)
def test_bad_specs_are_rejected_with_the_reason(raw: bytes, message: str) -> None:
    with pytest.raises(TaskSpecRejected, match=message):
        parse_task_spec(raw)


def test_a_spec_from_before_recipes_is_recognised() -> None:
    legacy = b'{"dataset":"sklearn digits","model":"mlp","seed":0}'
    with pytest.raises(LegacyTaskSpec, match="before recipes"):
        parse_task_spec(legacy)


def test_a_package_named_by_its_init_file_is_the_package(tmp_path: Path) -> None:
    pkg = _package(tmp_path, FILES)
    assert recipe_archive(pkg / "__init__.py") == recipe_archive(pkg)
