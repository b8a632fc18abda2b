"""A task's recipe by content, and the task specification anchored on chain (schema 2). No torch here.

A recipe is the Python code members install themselves (a module file or a package directory; docs/recipes.md).
Code is never fetched from the store: the chain anchors only its *hash*, so a member can check that what it
installed is what the task names.

    archive = recipe_archive(Path("my_recipe.py"))       # deterministic tar of the recipe's files
    cid = recipe_cid(Path("my_recipe/"))                  # CIDv0 of that archive (Kubo's default import)
    spec = TaskSpec(recipe=RecipeRef("digits", "1", cid), hyperparameters={"epochs": 5}, seed=0)
    raw = spec.to_json().encode()                         # canonical JSON: the bytes the task's spec CID names
    assert parse_task_spec(raw) == spec

The archive is a POSIX tar with members in sorted order, ``mtime`` 0, uid/gid 0, empty owner names and mode
0644, so the same files give the same bytes whatever their timestamps, permissions, owners or the order the file
system lists them in. ``__pycache__`` directories, ``*.pyc``/``*.pyo`` files and dot-files (``.git``, editor
droppings) are left out: they are byproducts, not the recipe. A single ``.py`` file is archived under its file
name; a package directory (or its ``__init__.py``) under ``<directory name>/<relative path>`` (the name is the
import name). Symbolic
links are refused: what they point at is not part of the recipe's files.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.content import InvalidCID, cid_of_bytes
from ledger.content.multiformats import CID
from ledger.errors import ConfigError, Mismatch
from ledger.exit_codes import ExitCode
from ledger.updatefile.canonical import NotCanonical, canonical_json

SPEC_SCHEMA = 2
MAX_SPEC_BYTES = 64 * 1024
"""A task specification is a few hundred bytes; anything far larger is not one (bounded before parsing)."""
MAX_RECIPE_BYTES = 64 * 1024 * 1024
MAX_RECIPE_FILES = 4096
MAX_NAME_LEN = 128
MAX_VERSION_LEN = 64
MAX_DATASET_LEN = 1024

_MODE = 0o644
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


class RecipeError(ConfigError):
    """A recipe that cannot be archived or loaded: the message names the path or the missing piece."""


class TaskSpecRejected(ConfigError):
    """Bytes that are not a valid schema-2 task specification (the message says which field and why)."""

    def __init__(self, problem: str, *, hint: str | None = None) -> None:
        self.problem = problem
        super().__init__(
            f"invalid task specification: {problem}",
            hint=hint or "write it with TaskSpec(...).to_json() (docs/recipes.md lists the fields)",
        )


class LegacyTaskSpec(TaskSpecRejected):
    """A JSON object without ``schema``: a specification written before recipes (it names no recipe hash)."""


# ─── the archive ──────────────────────────────────────────────────────────────────────────────────────────────
def _skipped(name: str) -> bool:
    return name == "__pycache__" or name.startswith(".") or name.endswith(_SKIPPED_SUFFIXES)


def recipe_files(source: Path) -> list[tuple[str, Path]]:
    """(archive name, path) of every file of the recipe at ``source``, sorted by archive name."""
    source = Path(source)
    if source.name == "__init__.py" and source.is_file():
        source = source.parent  # a package named by its __init__.py is the package
    if source.is_symlink():
        raise RecipeError(
            f"the recipe {source} is a symbolic link", hint="point at the real file or directory"
        )
    if source.is_file():
        if source.suffix != ".py":
            raise RecipeError(f"the recipe {source} is not a .py file nor a package directory")
        return [(source.name, source)]
    if not source.is_dir():
        raise RecipeError(
            f"the recipe {source} does not exist", hint="give a .py file or a package directory"
        )
    if not (source / "__init__.py").is_file():
        raise RecipeError(
            f"the recipe directory {source} has no __init__.py", hint="a recipe directory is a Python package"
        )
    found: list[tuple[str, Path]] = []
    pending = [source]
    while pending:
        folder = pending.pop()
        for entry in folder.iterdir():
            if _skipped(entry.name):
                continue
            if entry.is_symlink():
                raise RecipeError(
                    f"the recipe {source} holds a symbolic link, {entry}",
                    hint="replace it with the file itself (the archive hashes files only)",
                )
            if entry.is_dir():
                pending.append(entry)
            elif entry.is_file():
                found.append((f"{source.name}/{entry.relative_to(source).as_posix()}", entry))
            if len(found) > MAX_RECIPE_FILES:
                raise RecipeError(f"the recipe {source} holds more than {MAX_RECIPE_FILES} files")
    return sorted(found)


def recipe_archive(source: Path) -> bytes:
    """The deterministic tar of the recipe's files (module docstring): same files, same bytes."""
    out = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in recipe_files(source):
            data = path.read_bytes()
            total += len(data)
            if total > MAX_RECIPE_BYTES:
                raise RecipeError(f"the recipe {source} is larger than {MAX_RECIPE_BYTES} bytes")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = _MODE
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def recipe_cid(source: Path) -> str:
    """CIDv0 of :func:`recipe_archive` (what ``ipfs add`` of the archive would print)."""
    return cid_of_bytes(recipe_archive(source))


# ─── the task specification ────────────────────────────────────────────────────────────────────────────────────
def _text(where: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value:
        raise TaskSpecRejected(f"`{where}` must be a non-empty string, got {value!r}")
    if len(value) > limit or not value.isprintable():
        raise TaskSpecRejected(f"`{where}` must be printable text of at most {limit} characters")
    return value


def _uint(where: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise TaskSpecRejected(f"`{where}` must be an integer in [0, 2^64), got {value!r}")
    return value


def _object(where: str, value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TaskSpecRejected(f"`{where}` must be a JSON object, got {type(value).__name__}")
    try:
        canonical_json(dict(value))
    except NotCanonical as exc:
        raise TaskSpecRejected(f"`{where}`: {exc.problem}") from None
    except (TypeError, ValueError) as exc:
        raise TaskSpecRejected(f"`{where}`: {exc}") from None
    for key in value:
        if not isinstance(key, str) or not key:
            raise TaskSpecRejected(f"`{where}` has a key that is not a non-empty string")
    return dict(value)


def _exact(
    where: str, data: Mapping[str, Any], required: set[str], optional: frozenset[str] = frozenset()
) -> None:
    missing = required - data.keys()
    extra = data.keys() - required - optional
    if missing:
        raise TaskSpecRejected(f"`{where}` is missing {', '.join(sorted(missing))}")
    if extra:
        raise TaskSpecRejected(f"`{where}` has unknown field(s) {', '.join(sorted(extra))}")


@dataclass(frozen=True)
class RecipeRef:
    """Which recipe a task runs: its name, version and the CID of its archive (normalised to CIDv0)."""

    name: str
    version: str
    cid: str

    def __post_init__(self) -> None:
        _text("recipe.name", self.name, MAX_NAME_LEN)
        _text("recipe.version", self.version, MAX_VERSION_LEN)
        if not isinstance(self.cid, str):
            raise TaskSpecRejected(f"`recipe.cid` must be a CID string, got {type(self.cid).__name__}")
        try:
            object.__setattr__(self, "cid", CID.parse(self.cid).v0)
        except InvalidCID as exc:
            raise TaskSpecRejected(f"`recipe.cid`: {exc.problem}") from None

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "cid": self.cid}

    @classmethod
    def from_dict(cls, data: object) -> RecipeRef:
        if not isinstance(data, Mapping):
            raise TaskSpecRejected("`recipe` must be an object {name, version, cid}")
        _exact("recipe", data, {"name", "version", "cid"})
        return cls(name=data["name"], version=data["version"], cid=data["cid"])

    def __str__(self) -> str:
        return f"{self.name} {self.version} ({self.cid})"


class RecipeMismatch(Mismatch):
    """The installed recipe is not the one the task's specification anchors. A member would train, a validator
    judge, with other code than the task's: both refuse before anything else (exit 10)."""

    exit_code = ExitCode.RECIPE_MISMATCH

    def __init__(self, task: int, installed: RecipeRef, wanted: RecipeRef, *, refusing: str) -> None:
        self.task = task
        self.installed = installed
        self.wanted = wanted
        super().__init__(
            f"the installed recipe {installed.name} {installed.version} has hash {installed.cid}, but task {task} "
            f"runs {wanted.name} {wanted.version} with hash {wanted.cid}: refusing to {refusing}",
            hint=f"install the task's recipe (`{wanted.name}` {wanted.version}, the files whose archive hashes to "
            f'{wanted.cid}; `python -c "from ledger.recipe import recipe_cid; print(recipe_cid(PATH))"` checks a '
            "copy) and pass it with --recipe NAME_OR_PATH",
        )


@dataclass(frozen=True)
class TaskSpec:
    """The task specification (schema 2) whose CID the task anchors on chain.

    ``hyperparameters`` feed the recipe's ``train`` (or the default loop) as its settings; ``shards`` describes the
    simulated split (for the demo: ``{"kind": "dirichlet", "alpha": 0.5, "members": 3}``); ``checks`` the
    validators' settings (e.g. ``{"zscore": 3.5, "loss_delta": 5.0}``); ``dataset`` optionally says in words what
    data the task expects."""

    recipe: RecipeRef
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    shards: Mapping[str, Any] = field(default_factory=dict)
    checks: Mapping[str, Any] = field(default_factory=dict)
    dataset: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.recipe, RecipeRef):
            raise TaskSpecRejected("`recipe` must be a RecipeRef")
        _uint("seed", self.seed)
        for name in ("hyperparameters", "shards", "checks"):
            object.__setattr__(self, name, _object(name, getattr(self, name)))
        for key, value in self.hyperparameters.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise TaskSpecRejected(f"`hyperparameters.{key}` must be finite")
        if self.dataset is not None:
            _text("dataset", self.dataset, MAX_DATASET_LEN)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": SPEC_SCHEMA,
            "recipe": self.recipe.to_dict(),
            "hyperparameters": dict(self.hyperparameters),
            "seed": self.seed,
            "shards": dict(self.shards),
            "checks": dict(self.checks),
        }
        if self.dataset is not None:
            out["dataset"] = self.dataset
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the same spec always has the same bytes, hence the same CID."""
        return canonical_json(self.to_dict())

    @property
    def cid(self) -> str:
        """The CID the task anchors (the canonical JSON's bytes imported like ``ipfs add``)."""
        return cid_of_bytes(self.to_json().encode())


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise TaskSpecRejected(f"the key {key!r} appears twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise TaskSpecRejected(f"{name} is not a JSON number")


def parse_task_spec(raw: bytes) -> TaskSpec:
    """Parse untrusted bytes strictly: at most :data:`MAX_SPEC_BYTES`, UTF-8 JSON without duplicate keys or NaN,
    ``schema`` 2, exactly the known fields. Raises :class:`TaskSpecRejected` (:class:`LegacyTaskSpec` for an
    object with no ``schema``: a pre-recipe specification)."""
    if len(raw) > MAX_SPEC_BYTES:
        raise TaskSpecRejected(f"{len(raw)} bytes, more than the {MAX_SPEC_BYTES} a specification may have")
    try:
        text = bytes(raw).decode("utf-8")
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except TaskSpecRejected:
        raise
    except UnicodeDecodeError:
        raise TaskSpecRejected("not UTF-8 text") from None
    except RecursionError:
        raise TaskSpecRejected("nested too deeply") from None
    except ValueError as exc:
        raise TaskSpecRejected(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TaskSpecRejected(f"a JSON object is expected, got {type(data).__name__}")
    if "schema" not in data:
        raise LegacyTaskSpec(
            "no `schema`: a specification from before recipes, naming no recipe hash",
            hint="deploy a schema-2 specification (TaskSpec(...).to_json(); docs/recipes.md)",
        )
    schema = data["schema"]
    if schema != SPEC_SCHEMA or isinstance(schema, bool):
        raise TaskSpecRejected(f"unknown schema {schema!r} (this meshprov reads {SPEC_SCHEMA})")
    _exact(
        "specification",
        data,
        {"schema", "recipe", "hyperparameters", "seed", "shards", "checks"},
        frozenset({"dataset"}),
    )
    return TaskSpec(
        recipe=RecipeRef.from_dict(data["recipe"]),
        hyperparameters=_object("hyperparameters", data["hyperparameters"]),
        seed=_uint("seed", data["seed"]),
        shards=_object("shards", data["shards"]),
        checks=_object("checks", data["checks"]),
        dataset=data.get("dataset"),
    )
