"""An in-toto Statement v1 with a SLSA provenance v1 predicate for one model.

Field names follow https://in-toto.io/Statement/v1 (``_type``, ``subject``, ``predicateType``, ``predicate``) and
https://slsa.dev/provenance/v1 (``buildDefinition`` {buildType, externalParameters, internalParameters,
resolvedDependencies}, ``runDetails`` {builder {id}, metadata {invocationId}}), so OpenSSF model-signing and SLSA
verifiers can read it. Pure: the caller gathers the facts (index + store) and this module only shapes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://meshprov.dev/federated-round/v1"
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """Hex sha-256 of a file, streamed (a model may be larger than memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class InputUpdate:
    """One accepted update that went into the model."""

    cid: str
    sha256: str | None
    contributor: str
    dataset: str | None  # the member's dataset commitment ("0x" + 64 hex) when its metadata records one
    frameworks: Mapping[str, str] | None = None  # software versions the member's metadata records
    num_samples: int | None = None  # as the member claimed on chain
    consensus: int | None = None  # the validators' consensus score (fixed point, 10,000 = 1.0): its weight


@dataclass(frozen=True)
class ModelProvenance:
    """What the chain and the store say made one model."""

    model_name: str
    model_sha256: str
    model_cid: str
    task_id: int
    round: int
    chain_id: int
    contract: str
    aggregator: str
    aggregation_rule: str
    finalize_tx: str | None
    recipe: dict[str, str] | None  # {"name", "version", "cid"}; None for a pre-recipe (legacy) spec
    recipe_sha256: str | None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    spec_cid: str | None = None
    base_cid: str | None = None
    base_sha256: str | None = None
    updates: tuple[InputUpdate, ...] = ()


def _digest(cid: str | None, sha256: str | None) -> dict[str, str]:
    # "cid" is not a registered in-toto digest algorithm name, but the spec allows any lowercase name; sha256
    # is what SLSA tooling checks.
    out: dict[str, str] = {}
    if sha256:
        out["sha256"] = sha256
    if cid:
        out["cid"] = cid
    return out


def statement(p: ModelProvenance) -> dict[str, Any]:
    """The Statement as a JSON-ready dict."""
    deps: list[dict[str, Any]] = []
    if p.recipe is not None:
        deps.append(
            {
                "name": f"recipe:{p.recipe['name']}@{p.recipe['version']}",
                "uri": f"ipfs://{p.recipe['cid']}",
                "digest": _digest(p.recipe["cid"], p.recipe_sha256),
            }
        )
    if p.base_cid is not None:
        deps.append(
            {
                "name": "base-model",
                "uri": f"ipfs://{p.base_cid}",
                "digest": _digest(p.base_cid, p.base_sha256),
            }
        )
    for u in p.updates:
        annotations: dict[str, Any] = {"contributor": u.contributor}
        if u.dataset is not None:
            annotations["datasetCommitment"] = u.dataset
        if u.frameworks is not None:
            annotations["frameworks"] = dict(u.frameworks)
        if u.num_samples is not None:
            annotations["numSamples"] = u.num_samples
        if u.consensus is not None:
            annotations["consensus"] = u.consensus
        deps.append(
            {
                "name": f"update:{u.contributor}",
                "uri": f"ipfs://{u.cid}",
                "digest": _digest(u.cid, u.sha256),
                "annotations": annotations,
            }
        )
    external: dict[str, Any] = {
        "task": p.task_id,
        "recipe": p.recipe if p.recipe is not None else "no recipe recorded",
        "hyperparameters": p.hyperparameters,
    }
    if p.spec_cid is not None:
        external["spec"] = f"ipfs://{p.spec_cid}"
    metadata: dict[str, Any] = {"invocationId": f"task/{p.task_id}/round/{p.round}"}
    builder: dict[str, Any] = {
        "id": f"eip155:{p.chain_id}:{p.contract}",
        "version": {"aggregator": p.aggregator},
    }
    run: dict[str, Any] = {"builder": builder, "metadata": metadata}
    if p.finalize_tx is not None:
        run["byproducts"] = [
            {"name": "finalize-transaction", "uri": f"eip155:{p.chain_id}:tx/{p.finalize_tx}"}
        ]
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": p.model_name, "digest": {"sha256": p.model_sha256}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": {"aggregationRule": p.aggregation_rule, "round": p.round},
                "resolvedDependencies": deps,
            },
            "runDetails": run,
        },
    }
