"""The in-toto/SLSA statement: shape checked against a schema written from the two specs, digests against files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import jsonschema

from ledger.audit.intoto import InputUpdate, ModelProvenance, file_sha256, statement

_DIGEST = {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}}
_RESOURCE = {
    "type": "object",
    "properties": {
        "uri": {"type": "string"},
        "digest": _DIGEST,
        "name": {"type": "string"},
        "downloadLocation": {"type": "string"},
        "mediaType": {"type": "string"},
        "annotations": {"type": "object"},
    },
    "additionalProperties": False,
}
SCHEMA = {
    "type": "object",
    "required": ["_type", "subject", "predicateType", "predicate"],
    "additionalProperties": False,
    "properties": {
        "_type": {"const": "https://in-toto.io/Statement/v1"},
        "predicateType": {"const": "https://slsa.dev/provenance/v1"},
        "subject": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "digest"],
                "properties": {"name": {"type": "string"}, "digest": _DIGEST},
            },
        },
        "predicate": {
            "type": "object",
            "required": ["buildDefinition", "runDetails"],
            "additionalProperties": False,
            "properties": {
                "buildDefinition": {
                    "type": "object",
                    "required": ["buildType", "externalParameters"],
                    "additionalProperties": False,
                    "properties": {
                        "buildType": {"type": "string"},
                        "externalParameters": {"type": "object"},
                        "internalParameters": {"type": "object"},
                        "resolvedDependencies": {"type": "array", "items": _RESOURCE},
                    },
                },
                "runDetails": {
                    "type": "object",
                    "required": ["builder"],
                    "additionalProperties": False,
                    "properties": {
                        "builder": {
                            "type": "object",
                            "required": ["id"],
                            "additionalProperties": False,
                            "properties": {
                                "id": {"type": "string"},
                                "version": {"type": "object", "additionalProperties": {"type": "string"}},
                                "builderDependencies": {"type": "array", "items": _RESOURCE},
                            },
                        },
                        "metadata": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "invocationId": {"type": "string"},
                                "startedOn": {"type": "string"},
                                "finishedOn": {"type": "string"},
                            },
                        },
                        "byproducts": {"type": "array", "items": _RESOURCE},
                    },
                },
            },
        },
    },
}


def _provenance(tmp_path: Path, recipe: bool = True) -> tuple[ModelProvenance, Path]:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"model bytes" * 1000)
    archive = b"recipe archive"
    return (
        ModelProvenance(
            model_name=model.name,
            model_sha256=file_sha256(model),
            model_cid="QmModel",
            task_id=1,
            round=2,
            chain_id=31337,
            contract="0x" + "ab" * 20,
            aggregator="0x" + "cd" * 20,
            aggregation_rule="fedavg",
            finalize_tx="0x" + "ee" * 32,
            recipe={"name": "digits", "version": "1", "cid": "QmRecipe"} if recipe else None,
            recipe_sha256=hashlib.sha256(archive).hexdigest() if recipe else None,
            hyperparameters={"epochs": 1, "lr": 0.1},
            spec_cid="QmSpec",
            base_cid="QmBase",
            base_sha256="00" * 32,
            updates=(
                InputUpdate("QmU1", "11" * 32, "0x" + "01" * 20, "0x" + "aa" * 32),
                InputUpdate("QmU2", "22" * 32, "0x" + "02" * 20, None),
            ),
        ),
        model,
    )


def test_statement_matches_the_spec_schema_and_the_model_file(tmp_path: Path) -> None:
    prov, model = _provenance(tmp_path)
    doc = statement(prov)
    jsonschema.validate(doc, SCHEMA)
    assert doc["subject"][0] == {
        "name": "model.safetensors",
        "digest": {"sha256": hashlib.sha256(model.read_bytes()).hexdigest()},
    }
    definition = doc["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["recipe"] == {"name": "digits", "version": "1", "cid": "QmRecipe"}
    assert definition["externalParameters"]["hyperparameters"] == {"epochs": 1, "lr": 0.1}
    assert definition["internalParameters"]["aggregationRule"] == "fedavg"
    deps = definition["resolvedDependencies"]
    assert deps[0]["digest"] == {"sha256": hashlib.sha256(b"recipe archive").hexdigest(), "cid": "QmRecipe"}
    assert [d["name"] for d in deps] == [
        "recipe:digits@1",
        "base-model",
        "update:0x" + "01" * 20,
        "update:0x" + "02" * 20,
    ]
    assert deps[2]["annotations"]["datasetCommitment"] == "0x" + "aa" * 32
    assert "datasetCommitment" not in deps[3]["annotations"]
    assert doc["predicate"]["runDetails"]["builder"]["id"] == "eip155:31337:0x" + "ab" * 20


def test_a_legacy_spec_says_no_recipe_recorded(tmp_path: Path) -> None:
    prov, _ = _provenance(tmp_path, recipe=False)
    doc = statement(prov)
    jsonschema.validate(doc, SCHEMA)
    assert doc["predicate"]["buildDefinition"]["externalParameters"]["recipe"] == "no recipe recorded"
    assert not any(
        d["name"].startswith("recipe:") for d in doc["predicate"]["buildDefinition"]["resolvedDependencies"]
    )
