"""The validator and aggregator jobs in-process, on a real chain and Redis (protocol v2): commit, reveal,
finalize, carry over, and the edge cases.

Each job is run as a redelivered Celery message would run it (the same function, again): it must check the chain
first and never commit, reveal or finalize twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.chain.scores import REJECT
from ledger.chain.types import Phase
from ledger.checks import CheckLimits
from ledger.content import digest_to_cid
from ledger.reasons import Reason
from ledger.settings import Settings
from tests.support import malicious as corpus
from tests.support.worker import WorkerNet
from worker.aggregate import aggregate_round, carry_over
from worker.chain import WorkerChain
from worker.config import WorkerConfig
from worker.errors import ChainFault
from worker.runtime import Runtime
from worker.sheets import load_sheet, sheet_path
from worker.verify import verify_round

pytestmark = [pytest.mark.anvil, pytest.mark.redis]


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


def honest_round(net: WorkerNet, members: range, *, bad: dict[int, str] | None = None) -> int:
    """Members submit during the window, publish after the close (R1); returns the round."""
    round_ = net.current_round()
    files = {}
    for i in members:
        ctx = net.context(i, round_)
        name = (bad or {}).get(i)
        files[i] = corpus.case(name).build(ctx) if name else corpus.honest_update(ctx)
        net.submit(i, files[i], round_=round_, publish=False)
    net.close_submissions(round_)
    for data in files.values():
        net.publish(data)
    return round_


def test_a_validator_commits_then_reveals_each_once(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(validators=3, contributors=3)
    v0, v1, v2 = validators(net, tmp_path)
    round_ = net.current_round()
    ctx = net.context(0, round_)
    net.submit(0, corpus.honest_update(ctx), round_=round_, publish=False)
    assert verify_round(v0, net.task_id, round_) == {"status": "submissions-open"}
    net.submit(1, corpus.honest_update(net.context(1, round_)), round_=round_)
    net.submit(2, corpus.case("nan").build(net.context(2, round_)), round_=round_)
    net.close_submissions(round_)
    net.publish(corpus.honest_update(ctx))

    first = verify_round(v0, net.task_id, round_)
    assert first["status"] == "committed"
    scores, reasons = first["scores"], first["reasons"]
    assert scores[0] > 0
    assert scores[1] > 0
    assert (scores[2], reasons[2]) == (REJECT, int(Reason.NON_FINITE))
    assert reasons[:2] == [0, 0]
    # Redelivered while the others have not committed: nothing is sent again.
    assert verify_round(v0, net.task_id, round_) == {"status": "committed-awaiting-reveal"}
    assert len(net.commits(round_, 0)) == 1

    assert verify_round(v1, net.task_id, round_)["status"] == "committed"
    # The last commit ends the commit phase early: the same job reveals at once.
    last = verify_round(v2, net.task_id, round_)
    assert last["status"] == "revealed"
    assert verify_round(v0, net.task_id, round_)["status"] == "revealed"
    assert verify_round(v0, net.task_id, round_) == {"status": "already-revealed"}
    assert net.revealed_scores(round_, 0) == scores
    assert len(net.reveals(round_, 0)) == 1
    assert not (
        v0.cache_dir / "rounds" / f"{net.task_id}-{round_}"
    ).exists()  # the round's downloads are gone


def test_a_validator_restarted_between_commit_and_reveal_still_reveals(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(validators=3, contributors=2)
    v0, v1, _v2 = validators(net, tmp_path)
    round_ = honest_round(net, range(2))
    committed = verify_round(v0, net.task_id, round_)
    assert committed["status"] == "committed"
    sheet, commitment = load_sheet(v0.cache_dir, net.task_id, round_) or pytest.fail("no sheet on disk")
    assert (
        net.commits(round_, 0)[0].args["commitment"] == commitment
    )  # the sheet on disk is the one committed
    assert len(sheet.salt) == 32
    assert verify_round(v1, net.task_id, round_)["status"] == "committed"
    net.end_commits(round_)

    # A new process: nothing in memory, the same data directory (and a fresh chain handle).
    again = runtime(net, "validator", net.validator(0)[1], tmp_path)
    assert again is not v0
    assert again.cache_dir == v0.cache_dir
    result = verify_round(again, net.task_id, round_)
    assert result["status"] == "revealed"
    assert net.revealed_scores(round_, 0) == committed["scores"]


def test_without_its_sheet_a_committed_validator_cannot_reveal(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(validators=3, contributors=2)
    v0, *_ = validators(net, tmp_path)
    round_ = honest_round(net, range(2))
    assert verify_round(v0, net.task_id, round_)["status"] == "committed"
    sheet_path(v0.cache_dir, net.task_id, round_).unlink()
    net.end_commits(round_)
    assert verify_round(v0, net.task_id, round_) == {"status": "sheet-lost"}
    assert net.reveals(round_, 0) == []
    faults = v0.state().faults()
    assert any(f["kind"] == "sheet" and f"round {round_}" in f["detail"] for f in faults)


def test_a_validator_outside_the_rounds_set_skips_politely(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(validators=2, contributors=2)
    round_ = honest_round(net, range(2))
    outsider = runtime(net, "validator", net.aggregator[1], tmp_path)
    assert verify_round(outsider, net.task_id, round_) == {"status": "not-in-validator-set"}
    assert net.validator_set(round_).committed == 0


def test_content_not_published_by_the_commit_deadline_scores_zero(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(validators=2, contributors=2, commit_window=40)
    v0, _ = validators(net, tmp_path)
    round_ = net.current_round()
    net.submit(0, corpus.honest_update(net.context(0, round_)), round_=round_, publish=False)
    net.submit(1, corpus.honest_update(net.context(1, round_)), round_=round_)
    view = net.client().round_view(net.task_id, round_)
    from tests.support.chain import warp_past

    warp_past(net.client(), view.commit_end - 8)  # inside the commit window, past the content deadline
    result = verify_round(v0, net.task_id, round_)
    assert result["status"] == "committed"
    assert result["scores"][0] == 0  # never published: no contribution measured, no hard reject
    assert result["reasons"][0] == 0
    assert result["scores"][1] > 0


def test_a_copier_of_the_authors_digest_is_rejected_and_the_author_accepted(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(validators=3, contributors=3)
    vals = validators(net, tmp_path)
    aggregator = runtime(net, "aggregator", net.aggregator[1], tmp_path)
    round_ = net.current_round()
    authored = corpus.honest_update(net.context(0, round_))
    # The copier front-runs with the author's digest (seen in the mempool): it is update 0, the author update 1.
    copier = net.submit(1, authored, round_=round_, publish=False)
    author = net.submit(0, authored, round_=round_, publish=False)
    other = net.submit(2, corpus.honest_update(net.context(2, round_)), round_=round_, publish=False)
    net.close_submissions(round_)
    net.publish(authored)
    net.publish(corpus.honest_update(net.context(2, round_)))
    for v in vals:
        assert verify_round(v, net.task_id, round_)["status"] in ("committed", "revealed")
    for v in vals:
        verify_round(v, net.task_id, round_)
    for k in range(3):
        scores = net.revealed_scores(round_, k)
        assert scores is not None
        assert scores[copier] == REJECT
        assert scores[author] > 0
    assert aggregate_round(aggregator, net.task_id, round_)["status"] == "finalized"
    final = net.client().finalizations(net.task_id, round_)[0]
    assert final.accepted_bitmap >> author & 1
    assert final.accepted_bitmap >> other & 1
    assert not final.accepted_bitmap >> copier & 1
    reasons = {e.args["validator"]: bytes(e.args["reasons"]) for e in net.events("ScoresRevealed")}
    assert all(r[copier] == int(Reason.METADATA_MISMATCH) for r in reasons.values())


def test_one_validator_down_of_three_the_round_still_finalizes(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(validators=3, contributors=3, quorum=2)
    v0, v1, _down = validators(net, tmp_path)
    aggregator = runtime(net, "aggregator", net.aggregator[1], tmp_path)
    round_ = honest_round(net, range(3), bad={2: "nan"})
    for v in (v0, v1):
        assert verify_round(v, net.task_id, round_)["status"] == "committed"
    assert aggregate_round(aggregator, net.task_id, round_) == {"status": "not-finalizable-yet"}
    net.end_commits(round_)
    for v in (v0, v1):
        assert verify_round(v, net.task_id, round_)["status"] == "revealed"
    net.end_reveals(round_)
    done = aggregate_round(aggregator, net.task_id, round_)
    assert done["status"] == "finalized"
    assert done["accepted"] == 0b011
    final = net.client().finalizations(net.task_id, round_)[0]
    absent = {s.account: s.absent for s in final.validators}
    assert absent == {net.validator(0)[0]: False, net.validator(1)[0]: False, net.validator(2)[0]: True}
    assert done["aggregate"] != net.base_cid  # the accepted updates made a new model
    # Redelivered: nothing is finalized twice.
    assert aggregate_round(aggregator, net.task_id, round_)["status"] == "finalized-already"
    assert len(net.finalizations(round_)) == 1


def test_with_the_aggregator_down_anyone_carries_the_round_over_after_the_grace(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(validators=2, contributors=2, quorum=2)
    vals = validators(net, tmp_path)
    round_ = honest_round(net, range(2))
    for v in vals:
        verify_round(v, net.task_id, round_)
    for v in vals:
        assert verify_round(v, net.task_id, round_)["status"] in ("revealed", "already-revealed")
    net.end_reveals(round_)
    # The aggregator never comes; before the grace is over nobody else may end the round.
    anyone = runtime(net, "anyone", net.contributor(0)[1], tmp_path)
    early = carry_over(anyone, net.task_id, round_)
    assert early["status"] == "grace-not-over"
    assert early["seconds_left"] > 0
    assert net.finalizations(round_) == []

    net.end_grace(round_)
    done = net.run_cli("--json", "worker", "carry-over", key=net.contributor(1)[1])
    assert done.returncode == 0, done.stderr
    assert '"carried-over"' in done.stdout
    final = net.client().finalizations(net.task_id, round_)[0]
    assert final.carried_over
    assert final.aggregate_digest == net.client().base_digest(net.task_id, round_ + 1)
    assert digest_to_cid(final.aggregate_digest) == net.base_cid
    assert net.client().round_view(net.task_id, round_).phase is Phase.FINALIZED
    assert carry_over(anyone, net.task_id, round_)["status"] == "finalized-already"


def test_the_watcher_enqueues_commits_then_reveals_and_carries_over(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    from worker.state import WorkerState
    from worker.tasks import validator_queue
    from worker.watcher import Watcher

    net = worker_net(validators=2, contributors=2, quorum=1)
    v0, _v1 = validators(net, tmp_path)
    config = WorkerConfig(job_ttl_s=60)
    state = WorkerState.from_url(net.redis_url, "watcher-test")
    sent: list[tuple[str, str]] = []

    class App:
        def send_task(self, name: str, args: list[int], queue: str) -> None:
            sent.append((name, queue))

    watcher = Watcher(
        WorkerChain(net.client(net.contributor(0)[1])), App(), state, config, [net.task_id],  # type: ignore[arg-type]
        carry_over=True,
    )  # fmt: skip
    round_ = honest_round(net, range(2))
    watcher.poll_once()
    queues = sorted(q for _, q in sent)
    assert queues == sorted(validator_queue(net.validator(k)[0]) for k in range(2))
    sent.clear()
    watcher.poll_once()
    assert sent == []  # once per TTL
    assert verify_round(v0, net.task_id, round_)["status"] == "committed"
    net.end_commits(round_)
    watcher.poll_once()
    # v0 committed: its reveal is a new job (not held off by the commit job's TTL); v1 is absent.
    assert sent == [("meshprov.verify_round", validator_queue(net.validator(0)[0]))]
    net.end_reveals(round_)
    net.end_grace(round_)
    sent.clear()
    enqueued = watcher.poll_once()
    assert any(job["job"] == "finalizeCarryOver" for job in enqueued)
    assert net.finalizations(round_)[0].args["carriedOver"]


def test_an_unreachable_chain_is_a_retried_chain_fault(worker_net: Callable[..., WorkerNet]) -> None:
    from ledger.chain.client import LedgerClient, connect_web3

    net = worker_net(contributors=2)
    client = LedgerClient.connect(connect_web3("http://127.0.0.1:9"), net.consortium.record.ledger)
    with pytest.raises(ChainFault, match="roundView"):
        WorkerChain(client).round_view(net.task_id, 1)
    with pytest.raises(ChainFault, match="validatorSet"):
        WorkerChain(client).validator_set(net.task_id, 1)


def _trainer(weights: Any, *, seed: int, steps: int) -> dict[str, Any]:
    """A reference trainer for the corpus' linear model: one gradient step on a validator's own data."""
    return corpus.honest_delta(50 + seed % 3, weights)


def test_with_a_reference_trainer_honest_updates_score_positive_and_a_sign_flip_negative(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(validators=2, contributors=3)
    v0, _ = validators(net, tmp_path)
    v0.reference_trainer = _trainer
    round_ = honest_round(net, range(3), bad={2: "sign flipped"})
    result = verify_round(v0, net.task_id, round_)
    assert result["status"] == "committed"
    honest, flipped = result["scores"][:2], result["scores"][2]
    # pointing the reference's way; the 4th-power magnitude discount (docs/scoring.md) keeps them well above UNSURE
    assert all(s > 2_000 for s in honest), result
    assert flipped < -5_000, (
        result
    )  # no loss evaluator here: it is the score, not a hard reject, that says no
    assert result["reasons"] == [0, 0, 0]
    assert (v0.cache_dir / "rounds" / f"{net.task_id}-{round_}" / "reference.npy").is_file()  # trained once


def test_a_noisy_scaled_copy_of_last_rounds_accepted_update_is_a_near_copy(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    import numpy as np

    net = worker_net(validators=2, contributors=3, quorum=2)
    vals = validators(net, tmp_path)
    aggregator = runtime(net, "aggregator", net.aggregator[1], tmp_path)
    first = honest_round(net, range(3))
    for v in vals:
        verify_round(v, net.task_id, first)
    for v in vals:
        verify_round(v, net.task_id, first)
    assert aggregate_round(aggregator, net.task_id, first)["status"] == "finalized"

    # Round 2: member 2 republishes member 0's (public, accepted) round-1 delta, scaled and with a little noise.
    second = net.current_round()
    assert second == first + 1
    ctx = net.context(2, second)
    rng = np.random.default_rng(7)
    stolen = {
        k: (1.1 * v + rng.normal(0, 0.01 * float(np.abs(v).mean()), v.shape)).astype(v.dtype)
        if v.dtype.kind == "f"
        else v
        for k, v in corpus.honest_delta(0).items()
    }
    files = [corpus.honest_update(net.context(i, second)) for i in range(2)]
    files.append(corpus.encode(stolen, ctx.meta()))
    for i, data in enumerate(files):
        net.submit(i, data, round_=second, publish=False)
    net.close_submissions(second)
    for data in files:
        net.publish(data)
    result = verify_round(vals[0], net.task_id, second)
    assert result["status"] == "committed"
    assert result["reasons"] == [0, 0, int(Reason.NEAR_COPY)]
    assert result["scores"][2] == REJECT
    assert result["scores"][0] > 0  # the author, who resubmits its own direction, is no copy of itself
