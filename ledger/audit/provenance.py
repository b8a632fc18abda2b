"""`audit export --format in-toto MODEL_CID`: gather what the chain and the content store say made one model and
shape it with :mod:`ledger.audit.intoto`.

From the chain's record (the index, or ``--trustless``): the task and the round whose finalization anchored the
model, its accepted updates with their contributors, the aggregation rule, the aggregator and the finalizing
transaction. From the content store, every file checked against its CID as it is read: the task's specification
(parsed strictly: recipe name, version and CID, hyperparameters; a legacy spec names no recipe), the model's, the
base's and every accepted update's sha-256 (streamed, one pass each), and each update's metadata (the member's
dataset commitment and framework versions).

Nothing is guessed: a specification, model, base or accepted update the store does not hold stops the export
(exit 4) rather than writing a statement with holes; a model that no round aggregated (a genesis model, an
update, a carried-over base) is refused with the reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.audit.intoto import InputUpdate, ModelProvenance, statement
from ledger.errors import Mismatch, NotFound
from ledger.exit_codes import ExitCode
from ledger.index.content import SPEC_INVALID, SPEC_OK, file_facts, read_spec

if TYPE_CHECKING:
    from ledger.audit.source import Source
    from ledger.content import ContentStore
    from ledger.index.models import Round


class NotABuiltModel(NotFound):
    """The CID is anchored, but not as a model some round aggregated: nothing was built to describe."""


class MissingContent(NotFound):
    def __init__(self, what: str, cid: str) -> None:
        self.cid = cid
        super().__init__(
            f"the content store does not hold the {what} {cid}: an in-toto statement needs its bytes",
            hint="point the command at a store that holds it (--data-dir, MESHPROV_STORE, MESHPROV_GATEWAYS), "
            "or put the file there (`meshprov store put FILE`)",
        )


class InvalidTaskSpec(Mismatch):
    """The spec the chain anchors is not a valid task specification: the statement cannot say what made it."""

    exit_code = ExitCode.MISMATCH


class RecipeFilesMismatch(Mismatch):
    exit_code = ExitCode.RECIPE_MISMATCH


@dataclass
class Exported:
    """The statement and what it was made from (for the command's message)."""

    document: dict[str, Any]
    task_id: int
    round: int
    updates: int
    recipe: str


def _producing_round(source: Source, digest: str) -> tuple[int, Round]:
    """(task id, round) whose finalization aggregated the model ``digest`` from accepted updates."""
    from ledger.audit.export import collect

    lineages = source.queries.lineage(digest)  # NotAnchored (exit 4) when nothing names it
    built = [lin for lin in lineages if lin.role == "aggregate"]
    if not built:
        role = lineages[0].role
        why = {
            "genesis": "it is a task's genesis model, the starting point no round built",
            "update": "it is a member's update, not a model a round aggregated",
        }.get(role, f"it is anchored as {role}")
        raise NotABuiltModel(
            f"no round aggregated {lineages[0].cid}: {why}",
            hint="give the CID of a round's aggregate (`meshprov audit lineage CID` shows what a CID is)",
        )
    task_id = built[0].task.task_id
    export = collect(source, task_id)
    for rd in export.rounds:
        if rd.finalized and rd.aggregate_digest == digest and rd.accepted_indexes and not rd.carried_over:
            return task_id, rd
    raise NotABuiltModel(f"no finalized round of task {task_id} aggregated {built[0].cid}")


def _sha256(store: ContentStore, what: str, cid: str) -> tuple[str, Any]:
    from ledger.content import ContentNotFound

    try:
        digest, _, facts = file_facts(store, cid)
    except ContentNotFound:
        raise MissingContent(what, cid) from None
    return digest, facts


def gather(
    source: Source,
    store: ContentStore,
    model_digest: str,
    *,
    subject_name: str | None = None,
    recipe_path: Path | None = None,
) -> Exported:
    """The in-toto Statement of the model whose digest is ``model_digest`` (0x-hex)."""
    from ledger.aggregation import AggregationSpec
    from ledger.content import ContentNotFound, digest_to_cid

    task_id, rd = _producing_round(source, model_digest)
    task = source.queries.task(task_id)
    spec_cid = digest_to_cid(task.spec_digest)
    try:
        spec = read_spec(store, spec_cid)
    except ContentNotFound:
        raise MissingContent(f"specification of task {task_id}", spec_cid) from None
    if spec.status == SPEC_INVALID:
        raise InvalidTaskSpec(
            f"the specification {spec_cid} that task {task_id} anchors is not a valid task specification: "
            f"{spec.problem}",
            hint="a statement would have to guess what made the model; `meshprov store get` it and inspect it",
        )
    recipe = spec.recipe if spec.status == SPEC_OK else None
    recipe_sha256 = None
    if recipe is not None and recipe_path is not None:
        from ledger.content import cid_of_bytes
        from ledger.recipe import recipe_archive

        archive = recipe_archive(recipe_path)
        if cid_of_bytes(archive) != recipe["cid"]:
            raise RecipeFilesMismatch(
                f"the recipe files at {recipe_path} hash to {cid_of_bytes(archive)}, but task {task_id}'s "
                f"specification names {recipe['name']} {recipe['version']} with hash {recipe['cid']}",
                hint="give the task's recipe files, or leave --recipe out (the statement then carries the CID only)",
            )
        recipe_sha256 = hashlib.sha256(archive).hexdigest()
    model_cid = digest_to_cid(model_digest)
    model_sha, _ = _sha256(store, "model", model_cid)
    base_cid = rd.base_cid or ""
    base_sha, _ = _sha256(store, "base model", base_cid)
    updates = []
    for u in rd.accepted_updates:
        cid = u.cid or ""
        sha, facts = _sha256(store, f"update #{u.index} of round {rd.round}", cid)
        updates.append(
            InputUpdate(
                cid,
                sha,
                u.contributor,
                facts.dataset,
                frameworks=facts.frameworks,
                num_samples=u.num_samples,
                consensus=u.consensus,
            )
        )
    assert rd.rule is not None
    assert rd.rule_param is not None
    assert rd.finalized_by is not None
    prov = ModelProvenance(
        model_name=subject_name or f"{model_cid}.safetensors",
        model_sha256=model_sha,
        model_cid=model_cid,
        task_id=task_id,
        round=rd.round,
        chain_id=source.info.chain_id,
        contract=source.info.ledger,
        aggregator=rd.finalized_by,
        aggregation_rule=str(AggregationSpec.decode(rd.rule, rd.rule_param)),
        finalize_tx=rd.finalized_tx,
        recipe=recipe,
        recipe_sha256=recipe_sha256,
        hyperparameters=dict(spec.hyperparameters),
        spec_cid=spec_cid,
        base_cid=base_cid,
        base_sha256=base_sha,
        updates=tuple(updates),
    )
    summary = (
        f"{recipe['name']} {recipe['version']} ({recipe['cid']})"
        if recipe is not None
        else "none (legacy spec)"
    )
    return Exported(statement(prov), task_id, rd.round, len(updates), summary)
