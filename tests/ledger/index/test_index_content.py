"""Schema v3's content tables on SQLite and PostgreSQL: what a task's specification and each update's metadata say
is read from a real local store, bounded (an update's header only), recorded once, joined into the task and round
queries; a legacy spec reads as "no recipe", bad content as invalid with the reason, absent content is retried."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, select

from ledger.content import cid_of_file, cid_to_digest, digest_to_cid
from ledger.content.local_store import LocalStore
from ledger.index import schema
from ledger.index.content import ContentReader, enrich
from ledger.index.db import IndexDB
from ledger.index.queries import Queries
from ledger.recipe import RecipeRef, TaskSpec
from ledger.updatefile import GenesisMeta, UpdateMeta, write_aggregate, write_update
from tests.support.index import IndexFactory

ADDRESS = "0x" + "11" * 20
DATASET = "0x" + hashlib.sha256(b"manifest").hexdigest()


def hx(cid: str) -> str:
    return "0x" + cid_to_digest(cid).hex()


class CountingStore:
    """A LocalStore that counts the bytes handed out (to show an update is read up to its header only)."""

    def __init__(self, store: LocalStore) -> None:
        self.inner = store
        self.name = store.name
        self.handed = 0

    def get(self, cid: str, *, max_bytes: int | None = None) -> Iterator[memoryview]:
        for chunk in self.inner.get(cid, max_bytes=max_bytes):
            self.handed += len(chunk)
            yield chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _task(db: IndexDB, task_id: int, spec_digest: str, genesis: str) -> None:
    row = {
        "block_number": task_id,
        "log_index": 0,
        "tx_hash": "0x" + "aa" * 32,
        "task_id": task_id,
        "admin": ADDRESS,
        "spec_digest": spec_digest,
        "genesis_digest": genesis,
        "rule": 0,
        "rule_param": 0,
        "quorum": 2,
        "submission_window": 1,
        "commit_window": 1,
        "reveal_window": 1,
        "finalize_grace": 1,
        "max_samples": 100,
        "reward_per_round": "0",
    }
    with db.begin() as conn:
        conn.execute(insert(schema.tasks), [row])
        conn.execute(
            insert(schema.rounds),
            [
                {
                    "block_number": task_id,
                    "log_index": 1,
                    "tx_hash": "0x" + "aa" * 32,
                    "task_id": task_id,
                    "round": 1,
                    "opened_by": ADDRESS,
                    "base_digest": genesis,
                    "opened_at": 0,
                }
            ],
        )


def _submit(db: IndexDB, task_id: int, idx: int, digest: str) -> None:
    with db.begin() as conn:
        conn.execute(
            insert(schema.submissions),
            [
                {
                    "block_number": 10 + idx,
                    "log_index": 0,
                    "tx_hash": "0x" + "bb" * 32,
                    "task_id": task_id,
                    "round": 1,
                    "idx": idx,
                    "contributor": ADDRESS,
                    "digest": digest,
                    "num_samples": 5,
                    "relayer": ADDRESS,
                }
            ],
        )


def _update(tmp_path: Path, name: str, base: str, **meta: Any) -> Path:
    path = tmp_path / f"{name}.safetensors"
    m = UpdateMeta(task=1, round=1, base=base, contributor=ADDRESS, num_samples=5, **meta)
    # 4 MiB of tensors after the header: a header-only read must not touch them.
    write_update(path, {"w": np.ones(1 << 20, np.float32)}, m)
    return path


def test_specs_and_update_metadata_are_read_recorded_and_joined(
    new_index: IndexFactory, tmp_path: Path
) -> None:
    db = new_index()
    local = LocalStore(tmp_path / "blocks")
    genesis = tmp_path / "genesis.safetensors"
    write_aggregate(genesis, {"w": np.zeros(4, np.float32)}, GenesisMeta(model="m"))
    base = local.put_file(genesis)
    spec = TaskSpec(RecipeRef("my_recipe", "2.0", base), hyperparameters={"lr": 0.1, "epochs": 3}, seed=7)
    spec_cid = local.put_bytes(spec.to_json().encode())
    legacy_cid = local.put_bytes(json.dumps({"model": "mlp"}).encode())
    invalid_cid = local.put_bytes(b'{"schema": 2, "recipe": 1}')
    for task_id, cid in ((1, spec_cid), (2, legacy_cid), (3, invalid_cid)):
        _task(db, task_id, hx(cid), hx(base))
    committed = local.put_file(
        _update(tmp_path, "committed", base, dataset=DATASET, frameworks={"torch": "2.5.1"})
    )
    plain = local.put_file(_update(tmp_path, "plain", base))
    garbage = local.put_bytes((1 << 40).to_bytes(8, "little") + b"{}")  # announces a 1 TiB header
    absent_path = _update(tmp_path, "absent", base, dataset=DATASET)
    absent = cid_of_file(absent_path)
    for idx, cid in enumerate((committed, plain, garbage, absent)):
        _submit(db, 1, idx, hx(cid))

    store = CountingStore(local)
    first = enrich(db, store)  # type: ignore[arg-type]
    assert (first.specs, first.updates, first.missing) == (3, 3, [absent])
    # Three specs whole (a few hundred bytes each) and three update headers: far less than one update's tensors.
    assert store.handed < 3 * 300 * 1024

    queries = Queries(db)
    t1 = queries.task(1).spec
    assert (t1.status, t1.recipe, t1.hyperparameters, t1.seed) == (
        "ok",
        {"name": "my_recipe", "version": "2.0", "cid": base},
        {"epochs": 3, "lr": 0.1},
        7,
    )
    assert t1.recipe_summary == f"my_recipe 2.0 ({base})"
    t2 = queries.task(2).spec
    assert (t2.status, t2.recipe, t2.hyperparameters) == ("legacy", None, {})
    assert t2.recipe_summary.startswith("none (legacy spec")
    t3 = queries.task(3).spec
    assert t3.status == "invalid"
    assert "is missing checks, hyperparameters" in (t3.problem or "")
    updates = queries.round(1, 1).updates
    assert [(u.metadata, u.dataset, u.frameworks) for u in updates] == [
        ("ok", DATASET, {"torch": "2.5.1"}),
        ("ok", None, None),
        ("invalid", None, None),
        ("unread", None, None),
    ]
    with db.connect() as conn:
        um = schema.update_meta.c
        problems = {str(d): p for d, p in conn.execute(select(um.digest, um.problem))}
    assert "header of 1099511627776 bytes" in problems[hx(garbage)]

    # Nothing is read twice; the absent update is read once it arrives.
    assert enrich(db, store).missing == [absent]  # type: ignore[arg-type]
    local.put_file(absent_path)
    again = enrich(db, store)  # type: ignore[arg-type]
    assert (again.specs, again.updates, again.missing) == (0, 1, [])
    assert queries.round(1, 1).updates[3].dataset == DATASET
    local.close()


def test_a_follower_reader_does_not_ask_again_at_once_for_what_the_store_lacks(
    new_index: IndexFactory, tmp_path: Path
) -> None:
    db = new_index()
    local = LocalStore(tmp_path / "blocks")
    genesis = tmp_path / "genesis.safetensors"
    write_aggregate(genesis, {"w": np.zeros(4, np.float32)}, GenesisMeta(model="m"))
    base = local.put_file(genesis)
    path = _update(tmp_path, "late", base, dataset=DATASET)
    cid = cid_of_file(path)
    _task(db, 1, hx(base), hx(base))  # the genesis file as a "spec": invalid, but read
    _submit(db, 1, 0, hx(cid))
    reader = ContentReader(local, retry_after=3600)
    assert reader.read(db).missing == [cid]
    local.put_file(path)
    assert reader.read(db).updates == 0  # remembered as missing: not asked again yet
    reader.retry_after = 0
    assert reader.read(db).updates == 1
    reader.close()


class OfflineKubo:
    """A Kubo store that holds nothing: reading from it would search the network (here: fail the test)."""

    name = "kubo"

    def has(self, cid: str) -> bool:
        return False

    def get(self, cid: str, *, max_bytes: int | None = None) -> Iterator[memoryview]:
        raise AssertionError(f"{cid} was fetched although Kubo said offline it does not hold it")


def test_kubo_is_asked_offline_before_anything_is_fetched(new_index: IndexFactory) -> None:
    db = new_index()
    spec, update = "0x" + "01" * 32, "0x" + "02" * 32
    _task(db, 1, spec, "0x" + "03" * 32)
    _submit(db, 1, 0, update)
    result = enrich(db, OfflineKubo())  # type: ignore[arg-type]
    assert (result.specs, result.updates) == (0, 0)
    assert sorted(result.missing) == sorted([digest_to_cid(spec), digest_to_cid(update)])
