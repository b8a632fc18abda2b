"""The ``meshprov`` metadata of update, aggregate and genesis files: typed, validated, canonical.

One metadata key, ``meshprov``, holds canonical JSON (see :mod:`ledger.updatefile.canonical`) of one of:

    update     {"schema": 1, "kind": "update", "task": int, "round": int, "base": CIDv0,
                "contributor": checksummed address, "num_samples": int, ["privacy": {...}],
                ["dataset": "0x" + 64 hex], ["frameworks": {"python": "3.11.9", "torch": "2.5.1", …}]}
    aggregate  {"schema": 1, "kind": "aggregate", "task": int, "round": int,
                "rule": {"id": int, "name": str, "params": {…}}, "inputs": [CIDv0, …], "parent": CIDv0}
    genesis    {"schema": 1, "kind": "genesis", "model": str, "params": {…}}

``inputs`` are in ascending order of their sha-256 digests, the order aggregation consumes them (not the order
of the CID strings). The constructors normalise what they are given (CIDv1 to CIDv0, an address to its checksum
form, inputs into digest order); :func:`parse_metadata` accepts only the normal form, with no missing or extra
field, and raises :class:`MetadataRejected` (reason ``BAD_METADATA``) otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ledger.content.errors import InvalidCID
from ledger.content.multiformats import CID
from ledger.updatefile.canonical import NotCanonical, canonical_json, parse_canonical
from ledger.updatefile.errors import MetadataRejected

SCHEMA_VERSION = 1
METADATA_KEY = "meshprov"
_UINT64 = 1 << 64

JSONValue = Any


def _uint(name: str, value: object, *, minimum: int = 0, maximum: int = _UINT64 - 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise MetadataRejected(f"`{name}` must be an integer, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise MetadataRejected(f"`{name}` = {value} is outside [{minimum}, {maximum}]")
    return value


def _cid(name: str, value: object, *, strict: bool) -> str:
    if not isinstance(value, str):
        raise MetadataRejected(f"`{name}` must be a CID string, got {type(value).__name__}")
    try:
        v0 = CID.parse(value).v0
    except InvalidCID as exc:
        raise MetadataRejected(f"`{name}`: {exc.problem}") from None
    if strict and v0 != value:
        raise MetadataRejected(f"`{name}` must be written as CIDv0 ({v0}), not {value}")
    return v0


def _address(value: object, *, strict: bool) -> str:
    from eth_utils.address import is_checksum_address, is_hex_address, to_checksum_address

    if not isinstance(value, str) or not is_hex_address(value):
        raise MetadataRejected(f"`contributor` must be a 0x-prefixed 20-byte hex address, got {value!r}")
    if strict and not is_checksum_address(value):
        raise MetadataRejected(f"`contributor` must be in EIP-55 checksum form: {to_checksum_address(value)}")
    return str(to_checksum_address(value))


def _json_object(name: str, value: object) -> dict[str, JSONValue]:
    if not isinstance(value, Mapping):
        raise MetadataRejected(f"`{name}` must be a JSON object, got {type(value).__name__}")
    try:
        canonical_json(dict(value))
    except NotCanonical as exc:
        raise MetadataRejected(f"`{name}`: {exc.problem}") from None
    return dict(value)


PRIVACY_MECHANISM_MAX_LEN = 64


def _privacy(value: object) -> dict[str, str | int | float]:
    """A differential-privacy record: ``mechanism`` is a short name (e.g. ``gaussian``), ``steps`` a count of
    accounted releases, ``sample_rate`` a probability in (0, 1]; every other entry is a finite number (clip, noise
    multiplier, epsilon, delta, …). Enough for an auditor to recompute ε from the mechanism's parameters."""
    obj = _json_object("privacy", value)
    for key, item in obj.items():
        if key == "mechanism":
            if not isinstance(item, str) or not item:
                raise MetadataRejected(f"`privacy.mechanism` must be a non-empty string, got {item!r}")
            if len(item) > PRIVACY_MECHANISM_MAX_LEN or not item.isascii() or not item.isprintable():
                raise MetadataRejected(
                    f"`privacy.mechanism` must be printable ASCII of at most {PRIVACY_MECHANISM_MAX_LEN} characters"
                )
            continue
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise MetadataRejected(f"`privacy.{key}` must be a number, got {type(item).__name__}")
        if isinstance(item, float) and not math.isfinite(item):
            raise MetadataRejected(f"`privacy.{key}` must be finite")
        if key == "steps" and (not isinstance(item, int) or item < 0):
            raise MetadataRejected(f"`privacy.steps` must be a non-negative integer, got {item!r}")
        if key == "sample_rate" and not 0 < item <= 1:
            raise MetadataRejected(f"`privacy.sample_rate` must be in (0, 1], got {item!r}")
    return obj


DATASET_HEX_LEN = 64
FRAMEWORKS_MAX_ENTRIES = 16
FRAMEWORK_NAME_MAX_LEN = 32
FRAMEWORK_VERSION_MAX_LEN = 64


def _dataset(value: object) -> str:
    """The member's dataset commitment: sha-256 of the manifest it keeps, ``0x`` + 64 lowercase hex digits."""
    if (
        not isinstance(value, str)
        or len(value) != 2 + DATASET_HEX_LEN
        or not value.startswith("0x")
        or any(c not in "0123456789abcdef" for c in value[2:])
    ):
        raise MetadataRejected(
            f"`dataset` must be 0x followed by 64 lowercase hex digits (a sha-256), got {value!r}"
        )
    return value


def _frameworks(value: object) -> dict[str, str]:
    """Versions of what made the update (``python``, ``torch``, ``meshprov``, …): a small str→str object."""
    if not isinstance(value, Mapping):
        raise MetadataRejected(f"`frameworks` must be a JSON object, got {type(value).__name__}")
    if len(value) > FRAMEWORKS_MAX_ENTRIES:
        raise MetadataRejected(f"`frameworks` has {len(value)} entries, at most {FRAMEWORKS_MAX_ENTRIES}")
    out: dict[str, str] = {}
    for name, version in value.items():
        if (
            not isinstance(name, str)
            or not 0 < len(name) <= FRAMEWORK_NAME_MAX_LEN
            or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)
        ):
            raise MetadataRejected(
                f"`frameworks` key {name!r} must be 1..{FRAMEWORK_NAME_MAX_LEN} ASCII letters, digits, - _ ."
            )
        if (
            not isinstance(version, str)
            or not 0 < len(version) <= FRAMEWORK_VERSION_MAX_LEN
            or not version.isascii()
            or not version.isprintable()
        ):
            raise MetadataRejected(
                f"`frameworks.{name}` must be printable ASCII of 1..{FRAMEWORK_VERSION_MAX_LEN} characters"
            )
        out[name] = version
    return out


def _exact_keys(
    data: Mapping[str, Any], required: AbstractSet[str], optional: AbstractSet[str] = frozenset()
) -> None:
    missing = required - data.keys()
    extra = data.keys() - required - optional
    if missing:
        raise MetadataRejected(f"missing field(s): {', '.join(sorted(missing))}")
    if extra:
        raise MetadataRejected(f"unknown field(s): {', '.join(sorted(extra))}")


@dataclass(frozen=True)
class UpdateMeta:
    """Metadata of a member's update (the delta of its local model against the round's base)."""

    kind: ClassVar[str] = "update"
    task: int
    round: int
    base: str
    """CID of the base model this delta applies to (normalised to CIDv0)."""
    contributor: str
    """The member's address (normalised to EIP-55 checksum form)."""
    num_samples: int
    privacy: Mapping[str, str | int | float] | None = None
    """Optional differential-privacy record: the ``mechanism`` name (a string) and numbers such as clip,
    noise_multiplier, epsilon, delta, steps (an integer) and sample_rate, so auditors can recompute ε."""
    dataset: str | None = None
    """Optional commitment to the member's training data: sha-256 (``0x`` + 64 hex) of the dataset manifest the
    member keeps (docs/node-training.md, "Dataset manifest"); it can show the manifest to an auditor later."""
    frameworks: Mapping[str, str] | None = None
    """Optional versions of the software that made the update, e.g. ``{"python", "torch", "meshprov"}``."""

    def __post_init__(self) -> None:
        _uint("task", self.task)
        _uint("round", self.round)
        _uint("num_samples", self.num_samples, minimum=1)
        object.__setattr__(self, "base", _cid("base", self.base, strict=False))
        object.__setattr__(self, "contributor", _address(self.contributor, strict=False))
        if self.privacy is not None:
            object.__setattr__(self, "privacy", _privacy(self.privacy))
        if self.dataset is not None:
            object.__setattr__(
                self,
                "dataset",
                _dataset(self.dataset.lower() if isinstance(self.dataset, str) else self.dataset),
            )
        if self.frameworks is not None:
            object.__setattr__(self, "frameworks", _frameworks(self.frameworks))

    def to_dict(self) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {
            "schema": SCHEMA_VERSION,
            "kind": self.kind,
            "task": self.task,
            "round": self.round,
            "base": self.base,
            "contributor": self.contributor,
            "num_samples": self.num_samples,
        }
        if self.privacy is not None:
            out["privacy"] = dict(self.privacy)
        if self.dataset is not None:
            out["dataset"] = self.dataset
        if self.frameworks is not None:
            out["frameworks"] = dict(self.frameworks)
        return out

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UpdateMeta:
        _exact_keys(
            data,
            {"schema", "kind", "task", "round", "base", "contributor", "num_samples"},
            {"privacy", "dataset", "frameworks"},
        )
        return cls(
            task=_uint("task", data["task"]),
            round=_uint("round", data["round"]),
            base=_cid("base", data["base"], strict=True),
            contributor=_address(data["contributor"], strict=True),
            num_samples=_uint("num_samples", data["num_samples"], minimum=1),
            privacy=_privacy(data["privacy"]) if "privacy" in data else None,
            dataset=_dataset(data["dataset"]) if "dataset" in data else None,
            frameworks=_frameworks(data["frameworks"]) if "frameworks" in data else None,
        )


@dataclass(frozen=True)
class AggregateMeta:
    """Metadata of an aggregate: the round's new model (full weights) and how it was made."""

    kind: ClassVar[str] = "aggregate"
    task: int
    round: int
    rule_id: int
    """The rule's on-chain id (uint8)."""
    rule: str
    """The rule's name, e.g. ``fedavg``."""
    inputs: tuple[str, ...]
    """CIDs of the aggregated updates, normalised to CIDv0 and sorted by digest."""
    parent: str
    """CID of the base model the updates were deltas of."""
    params: Mapping[str, JSONValue] = field(default_factory=dict)
    """The rule's parameters and anything needed to replay it (JSON object)."""

    def __post_init__(self) -> None:
        _uint("task", self.task)
        _uint("round", self.round)
        _uint("rule_id", self.rule_id, maximum=255)
        if not isinstance(self.rule, str) or not self.rule:
            raise MetadataRejected("`rule.name` must be a non-empty string")
        object.__setattr__(self, "inputs", _sorted_inputs(self.inputs, strict=False))
        object.__setattr__(self, "parent", _cid("parent", self.parent, strict=False))
        object.__setattr__(self, "params", _json_object("rule.params", self.params))

    def to_dict(self) -> dict[str, JSONValue]:
        return {
            "schema": SCHEMA_VERSION,
            "kind": self.kind,
            "task": self.task,
            "round": self.round,
            "rule": {"id": self.rule_id, "name": self.rule, "params": dict(self.params)},
            "inputs": list(self.inputs),
            "parent": self.parent,
        }

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    @property
    def input_digests(self) -> tuple[bytes, ...]:
        return tuple(CID.parse(c).digest for c in self.inputs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AggregateMeta:
        _exact_keys(data, {"schema", "kind", "task", "round", "rule", "inputs", "parent"})
        rule = data["rule"]
        if not isinstance(rule, Mapping):
            raise MetadataRejected("`rule` must be an object {id, name, params}")
        _exact_keys(rule, {"id", "name", "params"})
        if not isinstance(rule["name"], str):
            raise MetadataRejected("`rule.name` must be a string")
        return cls(
            task=_uint("task", data["task"]),
            round=_uint("round", data["round"]),
            rule_id=_uint("rule.id", rule["id"], maximum=255),
            rule=rule["name"],
            inputs=_sorted_inputs(data["inputs"], strict=True),
            parent=_cid("parent", data["parent"], strict=True),
            params=_json_object("rule.params", rule["params"]),
        )


@dataclass(frozen=True)
class GenesisMeta:
    """Metadata of a task's initial model: no parent, no inputs; names the architecture."""

    kind: ClassVar[str] = "genesis"
    model: str
    params: Mapping[str, JSONValue] = field(default_factory=dict)
    """How the weights were made (architecture settings, seed): a JSON object."""

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise MetadataRejected("`model` must be a non-empty string")
        object.__setattr__(self, "params", _json_object("params", self.params))

    def to_dict(self) -> dict[str, JSONValue]:
        return {"schema": SCHEMA_VERSION, "kind": self.kind, "model": self.model, "params": dict(self.params)}

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenesisMeta:
        _exact_keys(data, {"schema", "kind", "model", "params"})
        if not isinstance(data["model"], str):
            raise MetadataRejected("`model` must be a string")
        return cls(model=data["model"], params=_json_object("params", data["params"]))


Metadata = UpdateMeta | AggregateMeta | GenesisMeta
_KINDS: dict[str, type[UpdateMeta] | type[AggregateMeta] | type[GenesisMeta]] = {
    "update": UpdateMeta,
    "aggregate": AggregateMeta,
    "genesis": GenesisMeta,
}


def _sorted_inputs(value: object, *, strict: bool) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise MetadataRejected("`inputs` must be a list of CIDs")
    cids = [_cid(f"inputs[{i}]", c, strict=strict) for i, c in enumerate(value)]
    ordered = sorted(cids, key=lambda c: CID.parse(c).digest)
    if len(set(ordered)) != len(ordered):
        raise MetadataRejected("`inputs` names a CID twice")
    if strict and ordered != cids:
        raise MetadataRejected("`inputs` must be in ascending order of their sha-256 digests")
    return tuple(ordered)


def parse_metadata(text: str, *, kind: str | None = None) -> Metadata:
    """Parse the ``meshprov`` metadata value strictly (canonical JSON, known schema and kind, exact fields)."""
    try:
        data = parse_canonical(text)
    except NotCanonical as exc:
        raise MetadataRejected(exc.problem) from None
    if not isinstance(data, dict):
        raise MetadataRejected("metadata must be a JSON object")
    if data.get("schema") != SCHEMA_VERSION or isinstance(data.get("schema"), bool):
        raise MetadataRejected(
            f"unknown schema {data.get('schema')!r} (this meshprov reads {SCHEMA_VERSION})"
        )
    found = data.get("kind")
    cls = _KINDS.get(found) if isinstance(found, str) else None
    if cls is None:
        raise MetadataRejected(f"unknown kind {found!r} (one of {', '.join(_KINDS)})")
    if kind is not None and found != kind:
        raise MetadataRejected(f"expected a file of kind {kind!r}, this one is {found!r}")
    return cls.from_dict(data)
