"""The validator and aggregator jobs in-process, on a real chain and Redis: idempotency and the edge cases.

Each job is run as a redelivered Celery message would run it (the same function, again): it must check the
chain first and never vote or finalize twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.chain.client import LedgerClient, connect_web3
from ledger.chain.types import Phase
from ledger.checks import CheckLimits, Verdict
from ledger.content import cid_to_digest, digest_to_cid
from ledger.reasons import Reason
from ledger.settings import Settings
from tests.support import malicious as corpus
from tests.support.chain import advance_time
from tests.support.worker import WorkerNet
from worker.aggregate import _finalize, aggregate_round
from worker.chain import WorkerChain
from worker.config import WorkerConfig
from worker.errors import ChainFault, NotReady
from worker.runtime import Runtime
from worker.verify import _cast, verify_round

pytestmark = [pytest.mark.anvil, pytest.mark.redis]


# fixtures
def runtime(net: WorkerNet, role: str, key: str, tmp_path: Path) -> Runtime:
    settings = Settings(
        data_dir=tmp_path / f"data-{role}-{key[-6:]}",
        chain_rpc_url=net.anvil_url,
        store_dir=net.root / "blocks",
        deployment_file=net.deployment_file,
        task_id=net.task_id,
    )
    rt = Runtime(
        settings=settings,
        config=WorkerConfig(lock_lease_s=5),
        role=role,
        redis_url=net.redis_url,
        private_key=key,
        limits=CheckLimits(max_norm=corpus.max_norm()),
    )
    rt._chain = WorkerChain(net.client(key))
    return rt


def validators(net: WorkerNet, tmp_path: Path) -> list[Runtime]:
    return [runtime(net, "validator", net.validator(v)[1], tmp_path) for v in range(net.validators)]


def test_a_redelivered_verification_never_votes_twice(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(contributors=2)
    v0, v1 = validators(net, tmp_path)
    round_ = net.current_round()
    net.submit(0, corpus.honest_update(net.context(0, round_)), round_=round_)
    assert verify_round(v0, net.task_id, round_) == {"status": "submissions-open"}
    assert net.votes(round_, 0) == []
    net.submit(1, corpus.case("nan").build(net.context(1, round_)), round_=round_)

    first = verify_round(v0, net.task_id, round_)
    assert first["status"] == "voted"
    assert (first["indexes"], first["accepts"], first["reasons"]) == (0b11, 0b01, [0, int(Reason.NON_FINITE)])
    assert verify_round(v0, net.task_id, round_) == {"status": "already-voted"}
    assert len(net.votes(round_, 0)) == 1
    assert not (
        v0.cache_dir / "rounds" / f"{net.task_id}-{round_}"
    ).exists()  # the round's downloads are gone

    # A job that finds the round's lock held (another delivery of it is running) steps aside.
    with v1.state().round_lock("verify", v1.address, net.task_id, round_, 5) as held:
        assert held is not None
        assert verify_round(v1, net.task_id, round_) == {"status": "busy"}
    assert verify_round(v1, net.task_id, round_)["status"] == "voted"


def test_a_redelivered_aggregation_never_finalizes_twice(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(contributors=2)
    aggregator = runtime(net, "aggregator", net.aggregator[1], tmp_path)
    round_ = net.current_round()
    assert aggregate_round(aggregator, net.task_id, round_) == {"status": "not-finalizable-yet"}
    for i in range(2):
        net.submit(i, corpus.honest_update(net.context(i, round_)), round_=round_)
    assert aggregate_round(aggregator, net.task_id, round_) == {
        "status": "not-finalizable-yet"
    }  # votes missing
    for rt in validators(net, tmp_path):
        assert verify_round(rt, net.task_id, round_)["status"] == "voted"

    view = aggregator.chain().round_view(net.task_id, round_)
    assert view.finalizable
    done = aggregate_round(aggregator, net.task_id, round_)
    assert done["status"] == "finalized"
    assert done["accepted"] == 0b11
    again = aggregate_round(aggregator, net.task_id, round_)
    assert again == {"status": "finalized-already", "aggregate": done["aggregate"]}

    # A second aggregator that computed the same round from a stale view loses the race: that counts as done.
    other = runtime(net, "aggregator", net.aggregator[1], tmp_path / "other")
    lost = _finalize(other, view, b"\x33" * 32, 0b11)
    assert lost == {"status": "finalized-by-another", "aggregate": done["aggregate"]}
    (final,) = net.finalizations(round_)
    assert digest_to_cid(final.args["aggregateDigest"]) == done["aggregate"]
    assert aggregator.chain().round_view(net.task_id, round_ + 1).phase is Phase.OPEN


def test_with_nothing_accepted_the_aggregate_is_the_base(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(contributors=2)
    round_ = net.current_round()
    for i, case in enumerate(["inf", "wrong dtype"]):
        net.submit(i, corpus.case(case).build(net.context(i, round_)), round_=round_)
    for rt in validators(net, tmp_path):
        result = verify_round(rt, net.task_id, round_)
        assert result["accepts"] == 0
    aggregator = runtime(net, "aggregator", net.aggregator[1], tmp_path)
    done = aggregate_round(aggregator, net.task_id, round_)
    assert done["status"] == "finalized"
    assert done["accepted"] == 0
    assert done["aggregate"] == net.base_cid  # the model carries over; no file is written
    (final,) = net.finalizations(round_)
    assert final.args["acceptedBitmap"] == 0
    assert net.client().base_digest(net.task_id, round_ + 1) == final.args["aggregateDigest"]


def test_a_second_round_builds_on_the_first_aggregate(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(contributors=2)
    vals = validators(net, tmp_path)
    aggregator = runtime(net, "aggregator", net.aggregator[1], tmp_path)
    aggregates = []
    for _ in range(2):
        round_ = net.current_round()
        for i in range(2):
            net.submit(i, corpus.honest_update(net.context(i, round_)), round_=round_)
        for rt in vals:
            assert verify_round(rt, net.task_id, round_)["accepts"] == 0b11
        aggregates.append(aggregate_round(aggregator, net.task_id, round_)["aggregate"])
    assert net.current_round() == 3
    assert digest_to_cid(net.client().base_digest(net.task_id, 2)) == aggregates[0]
    assert aggregates[0] != aggregates[1]


def test_the_watcher_enqueues_what_the_chain_shows_undone_once_per_ttl(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    import json

    import redis

    from worker.celery_app import make_app
    from worker.state import WorkerState
    from worker.tasks import validator_queue
    from worker.watcher import Watcher

    net = worker_net(contributors=2)
    config = WorkerConfig(poll_interval_s=0.2, job_ttl_s=30)
    watcher = Watcher(
        WorkerChain(net.client()),
        make_app(net.redis_url, config, with_tasks=False),
        WorkerState.from_url(net.redis_url, "watcher"),
        config,
        [net.task_id],
    )
    queues = redis.Redis.from_url(net.redis_url)
    round_ = net.current_round()
    assert watcher.poll_once() == []  # nothing submitted yet
    net.submit(0, corpus.honest_update(net.context(0, round_)), round_=round_)
    assert watcher.poll_once() == []  # submissions still open: nobody votes yet
    net.submit(1, corpus.honest_update(net.context(1, round_)), round_=round_)

    jobs = watcher.poll_once()
    assert sorted(j["queue"] for j in jobs) == sorted(validator_queue(net.validator(v)[0]) for v in range(2))
    assert all(
        (j["job"], j["task"], j["round"]) == ("meshprov.verify_round", net.task_id, round_) for j in jobs
    )
    message = json.loads(queues.lindex(validator_queue(net.validator(0)[0]), 0))  # type: ignore[arg-type]
    assert message["headers"]["task"] == "meshprov.verify_round"
    assert message["headers"]["argsrepr"] == f"[{net.task_id}, {round_}]"
    assert watcher.poll_once() == []  # claimed for the job TTL: not enqueued on every poll

    vals = validators(net, tmp_path)
    verify_round(vals[0], net.task_id, round_)
    assert watcher.poll_once() == []  # validator 1 still owes its vote (claimed), not finalizable yet
    verify_round(vals[1], net.task_id, round_)
    (job,) = watcher.poll_once()
    assert (job["job"], job["queue"]) == ("meshprov.aggregate_round", "aggregator")

    # The CLI's one-shot poll: the claims above still hold, so nothing new.
    done = net.run_cli("--json", "worker", "watch", "--once")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    queues.close()


# --- reverts the jobs expect, caught by their named classes ---------------------------------------------------


def _accept_all(n: int) -> list[Verdict]:
    return [Verdict(Reason.ACCEPTED)] * n


def test_a_ballot_cast_after_the_vote_window_is_vote_window_closed(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(contributors=2, vote_window=30)
    v0, _ = validators(net, tmp_path)
    round_ = net.current_round()
    for i in range(2):
        net.submit(i, corpus.honest_update(net.context(i, round_)), round_=round_)
    view = v0.chain().round_view(net.task_id, round_)
    assert view.phase is Phase.VOTING
    advance_time(connect_web3(net.anvil_url), 31)
    # The job judged the round while votes were open; its voteBatch reverts with VotingClosed.
    assert _cast(v0, view, _accept_all(2), view.all_indexes) == {"status": "vote-window-closed"}
    assert net.votes(round_, 0) == []
    assert verify_round(v0, net.task_id, round_) == {"status": "vote-window-closed"}


def test_a_ballot_another_run_already_cast_is_already_voted(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(contributors=2)
    v0, _ = validators(net, tmp_path)
    round_ = net.current_round()
    for i in range(2):
        net.submit(i, corpus.honest_update(net.context(i, round_)), round_=round_)
    view = v0.chain().round_view(net.task_id, round_)
    assert verify_round(v0, net.task_id, round_)["status"] == "voted"
    # A second run that judged from the same view: the chain says AlreadyVoted, the ballot shows nothing left.
    assert _cast(v0, view, _accept_all(2), view.all_indexes) == {"status": "already-voted"}
    assert len(net.votes(round_, 0)) == 1


def test_a_finalize_too_early_is_retried_not_given_up(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(contributors=2)
    aggregator = runtime(net, "aggregator", net.aggregator[1], tmp_path)
    round_ = net.current_round()
    net.submit(0, corpus.honest_update(net.context(0, round_)), round_=round_)
    view = aggregator.chain().round_view(net.task_id, round_)
    with pytest.raises(NotReady, match="MeshLedger_FinalizeTooEarly"):
        _finalize(aggregator, view, view.base_digest, 0)
    assert net.finalizations(round_) == []


def test_an_unreachable_chain_is_a_retried_chain_fault(worker_net: Callable[..., WorkerNet]) -> None:
    net = worker_net(contributors=2)
    client = LedgerClient.connect(connect_web3("http://127.0.0.1:9"), net.consortium.record.ledger)
    with pytest.raises(ChainFault, match="roundView"):
        WorkerChain(client).round_view(net.task_id, 1)
    with pytest.raises(ChainFault, match="UpdateSubmitted logs"):
        WorkerChain(client).submissions(net.task_id, 1)


def test_the_worker_reads_the_rounds_submissions_as_typed_records(
    worker_net: Callable[..., WorkerNet],
) -> None:
    net = worker_net(contributors=2)
    chain = WorkerChain(net.client())
    assert chain.view_block == "pending"
    round_ = net.current_round()
    digests = []
    for i in range(2):
        data = corpus.honest_update(net.context(i, round_))
        net.submit(i, data, round_=round_)
        digests.append(cid_to_digest(net.store.put_bytes(data)))
    subs = chain.submissions(net.task_id, round_)
    assert [(s.index, s.contributor, s.digest, s.num_samples) for s in subs] == [
        (i, net.contributor(i)[0], digests[i], 100 + i) for i in range(2)
    ]
    assert chain.account(net.validator(0)[0]).has_role("validator")
    assert not chain.account(net.validator(0)[0]).has_role("aggregator")
    assert chain.tally(net.task_id, round_).accepted_bitmap == 0
    assert chain.finalizations(net.task_id) == []
