"""Fixtures for the dashboard tests: a real consortium run, indexed, and the dashboard serving it.

`demo_run` (session) deploys the real contracts on the session's anvil, runs a demo-like history, indexes it into
a SQLite file and reverts the chain: the index (and the content store holding the update files) outlive the
chain state, which is all the dashboard reads. The history:

* task 1 (fedavg, quorum 2, 1 MESH per round), 3 validators, 5 contributors;
* round 1: every update accepted (scores differ by validator and update: `demo_score`);
* round 2: contributor 4 (the malicious one) sends NaNs: all three validators reject it (`non-finite`);
  contributor 2 is rejected by one validator (`loss-regression`) and still accepted (the median is positive);
* round 3: contributor 4's update is an outlier: two validators reject it (`norm-outlier`), one scores it
  positive: its consensus is a reject;
* contributor 0 claims its accrued rewards after round 3 (the others leave theirs accrued); the admin schedules
  granting contributor 3 the validator role (left pending);
* round 4: open, three updates submitted, no score yet.

Every update file is in a local content store (random bytes of known sizes), so the dashboard reports sizes.

`dashboard_url` (session) serves that index with uvicorn on 127.0.0.1 and a free port in a thread.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ledger.chain.client import connect_web3
from ledger.chain.scores import REJECT
from ledger.content import cid_to_digest
from ledger.content.local_store import LocalStore
from ledger.dev.services import AnvilProcess
from ledger.index.db import IndexDB
from ledger.reasons import Reason
from tests.support.chain import Consortium, RoundRecord, advance_time, chain_snapshot
from tests.support.index import follower_for

MALICIOUS = 4  # contributor index


def demo_score(v: int, i: int, r: int) -> int | tuple[int, int]:
    if r == 2 and i == MALICIOUS:
        return (REJECT, int(Reason.NON_FINITE))
    if r == 2 and i == 2 and v == 0:
        return (REJECT, int(Reason.LOSS_REGRESSION))
    if r == 3 and i == MALICIOUS and v in (0, 1):
        return (REJECT, int(Reason.NORM_OUTLIER))
    return 3_000 + 500 * v + 400 * i


def update_size(round_: int, i: int) -> int:
    return 1000 + 300 * i + 17 * round_


@dataclass
class DemoRun:
    index_url: str
    store_dir: Path
    task_id: int
    admin: str
    aggregator: str
    validators: list[str]
    contributors: list[str]
    rounds: list[RoundRecord]
    open_round: int
    open_cids: list[str]
    cids: dict[tuple[int, int], str] = field(default_factory=dict)  # (round, contributor index) -> CID
    claimed: int = 0  # what contributor 0 claimed after round 3
    role_change_after: int = 0  # the admin scheduled granting contributor 3 the validator role, from then
    sizes: dict[str, int] = field(default_factory=dict)  # CID -> bytes
    accrued_total: int = 0  # what the chain accrued to everyone over rounds 1-3 (before the claim), in wei

    @property
    def malicious(self) -> str:
        return self.contributors[MALICIOUS]

    def db(self) -> IndexDB:
        return IndexDB(self.index_url)


def _updates(store: LocalStore, run: DemoRun, round_: int, count: int) -> list[bytes]:
    import random

    rng = random.Random(round_)
    digests = []
    for i in range(count):
        data = rng.randbytes(update_size(round_, i))
        cid = store.put_bytes(data)
        run.cids[(round_, i)] = cid
        run.sizes[cid] = len(data)
        digests.append(cid_to_digest(cid))
    return digests


def build_demo_run(c: Consortium, store: LocalStore, run: DemoRun) -> None:
    task_id = run.task_id = c.task_id
    n = len(c.contributors)
    for round_ in (1, 2, 3):
        record = c.run_round(
            task_id,
            scores=demo_score,
            digests=_updates(store, run, round_, n),
            num_samples=[600 + 50 * i for i in range(n)],
            relayed=round_ == 2,
            finalize=False,
        )
        advance_time(c.w3, 240 + 60 * round_)  # rounds of a few minutes, as on a real consortium
        c.finalize(record)  # the record run_round appended to c.rounds gets its outcome
        advance_time(c.w3, 30)
    # What the chain itself accrued: a validator that does not beat the public record is not paid (R5), so a
    # round need not pay out its whole budget.
    everyone = [address for address, _ in c.contributors] + [v for v in c.rounds[0].validators]
    run.accrued_total = sum(c.admin_client.accrued(address) for address in everyone)
    run.claimed = c.client(c.contributors[0][1]).claim_rewards().value
    run.role_change_after = c.admin_client.schedule_role_change("validator", c.contributors[3][0], True).value
    digests = _updates(store, run, 4, 3)
    for i, (_, key) in enumerate(c.contributors[:3]):
        c.client(key).submit_update(task_id, 4, digests[i], 600 + 50 * i)
    run.open_round = 4
    run.open_cids = [run.cids[(4, i)] for i in range(3)]
    run.rounds = list(c.rounds)


@pytest.fixture(scope="session")
def demo_run(
    anvil: AnvilProcess,
    dev_keys: list[tuple[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> DemoRun:
    work = tmp_path_factory.mktemp("dashboard-run")
    store = LocalStore(work / "blocks")
    w3 = connect_web3(anvil.rpc_url)
    with chain_snapshot(w3):
        c = Consortium.deploy(w3, dev_keys, validators=3, contributors=5, quorum=2, reward=10**18)
        run = DemoRun(
            index_url=f"sqlite:///{work / 'index.sqlite'}",
            store_dir=work / "blocks",
            task_id=0,
            admin=c.admin[0],
            aggregator=c.aggregator[0],
            validators=[a for a, _ in c.validators],
            contributors=[a for a, _ in c.contributors],
            rounds=[],
            open_round=0,
            open_cids=[],
        )
        build_demo_run(c, store, run)
        db = run.db()
        follower_for(db, c).sync()
        db.dispose()
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving an ASGI app on 127.0.0.1 in a thread (started, then stopped by the caller)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", ws="none"
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="dashboard-test-server", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the dashboard did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)


@pytest.fixture(scope="session")
def dashboard_url(demo_run: DemoRun) -> Iterator[str]:
    from ledger.content.local_store import LocalStore
    from ledger.dashboard import create_app

    app = create_app(demo_run.index_url, store=LocalStore(demo_run.store_dir))
    with LiveServer(app) as server:
        yield server.url
