"""The member's round loop on a real anvil with a local store: train, submit the digest, publish after the close,
verdict, next round; and its bad inputs: a key that is not a member, a base it cannot fetch, a round that closed
while it trained, a restart that reuses what was trained, more samples than the task allows."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.chain.client import connect_web3
from ledger.chain.types import Phase
from ledger.content import cid_to_digest, digest_to_cid
from ledger.reasons import Reason
from ledger.settings import Settings
from ledger.updatefile import UpdateFile
from node.faults import BaseUnavailable, NotMember
from node.journal import RoundRecord
from node.runner import NodeOptions
from tests.support.chain import advance_time, fake_digest
from tests.support.node import NodeNet
from tests.support.worker import wait_until

pytestmark = [pytest.mark.anvil]

FAST = {"poll_s": 0.05, "max_poll_s": 0.2, "base_backoff_s": 0.01}


@pytest.fixture
def make_net(
    anvil: Any,
    tmp_path: Path,
    dev_keys: list[tuple[str, str]],
) -> Iterator[Any]:
    nets: list[NodeNet] = []

    def make(**kwargs: Any) -> NodeNet:
        net = NodeNet.create(anvil.url, tmp_path, dev_keys, **kwargs)
        nets.append(net)
        return net

    yield make
    for net in nets:
        net.close()


def test_members_train_publish_and_get_their_verdicts_over_two_rounds(make_net: Any) -> None:
    net: NodeNet = make_net(contributors=2)
    threads = [net.start(net.runner(i, NodeOptions(shard=i, shards=2, rounds=2, **FAST))) for i in range(2)]
    first = digest_to_cid(net.judge_round(1))
    # Round 2 trains on round 1's aggregate: the second update's metadata names it as the base.
    second_subs = net.wait_submissions(2, 2)
    net.judge_round(2, reasons=lambda i: int(Reason.NORM_OUTLIER) if i == 1 else 0)
    results: list[list[RoundRecord]] = [t.join_result() for t in threads]

    for i, records in enumerate(results):
        address = net.contributor_keys[i][0]
        assert [r.round for r in records] == [1, 2]
        r1, r2 = records
        assert r1.status == "accepted"
        assert r1.reward
        assert r1.reward > 0
        assert r1.base == net.genesis_cid
        assert r2.base == first
        for r in records:
            path = Path(r.file)
            assert path.is_file()  # the node keeps every update it trained
            with UpdateFile.open(path, kind="update") as f:
                meta = f.metadata
                assert (meta.task, meta.round, meta.base, meta.contributor) == (
                    net.task_id,
                    r.round,
                    r.base,
                    address,
                )
                assert meta.num_samples == r.num_samples
                assert meta.privacy is None
            assert net.store.has(r.cid)
    # The member whose round-2 update got index 1 was rejected with the validator's reason, and earned nothing.
    rejected_addr = second_subs[1].args["contributor"]
    by_addr = {net.contributor_keys[i][0]: results[i] for i in range(2)}
    r2 = by_addr[rejected_addr][1]
    assert r2.status == "rejected"
    assert r2.reasons == ["norm-outlier"]
    assert r2.reward == 0
    assert any("rejected (norm-outlier)" in m for m in net.messages[rejected_addr])


def test_a_key_without_the_contributor_role_is_refused(
    make_net: Any, dev_keys: list[tuple[str, str]]
) -> None:
    net: NodeNet = make_net(contributors=1)
    stranger_address, stranger = dev_keys[15]
    with pytest.raises(NotMember) as caught:
        net.runner(0, NodeOptions(rounds=1, **FAST), key=stranger).run()
    assert stranger_address in caught.value.message
    assert "contributor" in caught.value.message
    assert caught.value.exit_code == 9


def test_a_base_the_store_cannot_give_ends_the_node_with_a_clear_error(make_net: Any) -> None:
    missing = digest_to_cid(fake_digest("no such model"))
    net: NodeNet = make_net(contributors=1, genesis_cid=missing)
    runner = net.runner(0, NodeOptions(rounds=1, base_attempts=3, **FAST))
    with pytest.raises(BaseUnavailable) as caught:
        runner.run()
    assert caught.value.cid == missing
    assert caught.value.attempts == 3
    assert caught.value.exit_code == 6
    said = net.messages[runner.address]
    assert sum("retry" in m for m in said) == 2


class TimeTravel:
    """Progress bars that jump the chain past the submission window while the member trains."""

    def __init__(self, url: str, seconds: int, rounds: set[int]) -> None:
        self.w3 = connect_web3(url)
        self.seconds = seconds
        self.rounds = rounds

    @contextlib.contextmanager
    def task(self, description: str, total: int | None, *, unit: str = "") -> Iterator[Any]:
        if "training" in description and int(description.split()[1].rstrip(":")) in self.rounds:
            advance_time(self.w3, self.seconds)
        yield lambda _n: None


def test_a_round_that_closed_while_training_keeps_the_file_and_moves_on(make_net: Any) -> None:
    net: NodeNet = make_net(contributors=1, submission_window=30, commit_window=30, reveal_window=30)
    runner = net.runner(0, NodeOptions(rounds=2, **FAST), bars=TimeTravel(net.url, 31, {1}))
    thread = net.start(runner)
    wait_until(lambda: net.journal_status(runner, 1) == "missed", 30, "round 1 to be missed")
    advance_time(connect_web3(net.url), 61)  # the commit and reveal windows of the empty round end
    net.judge_round(1, wait_for=0)  # nothing submitted: finalized on its base
    net.judge_round(2)
    records = thread.join_result()
    assert [(r.round, r.status) for r in records] == [(1, "missed"), (2, "accepted")]
    missed = records[0]
    assert Path(missed.file).is_file()
    assert missed.detail
    assert any("round 1: missed" in m for m in net.messages[runner.address])


def test_a_restarted_member_reuses_its_stored_update_instead_of_retraining(make_net: Any) -> None:
    net: NodeNet = make_net(contributors=1)
    first = net.runner(0, NodeOptions(rounds=1, **FAST))
    round_ = net.current_round()
    view = net.view(round_)
    record = first._train(round_, digest_to_cid(view.base_digest), view.submission_end)
    # ...and the member crashed before submitting
    again = net.runner(0, NodeOptions(rounds=1, **FAST))
    thread = net.start(again)
    (sub,) = net.wait_submissions(round_, 1)
    assert digest_to_cid(sub.args["digest"]) == record.cid
    net.judge_round(round_)
    (done,) = thread.join_result()
    assert done.status == "accepted"
    assert done.cid == record.cid
    assert any("reusing the update trained earlier" in m for m in net.messages[again.address])


def test_dp_records_its_parameters_and_composes_epsilon_over_rounds(make_net: Any) -> None:
    net: NodeNet = make_net(contributors=1)
    options = NodeOptions(rounds=2, dp_clip=2.0, dp_noise=0.5, **FAST)
    thread = net.start(net.runner(0, options))
    net.judge_round(1)
    net.judge_round(2)
    records = thread.join_result()
    privacy = []
    for r in records:
        with UpdateFile.open(Path(r.file)) as f:
            privacy.append(dict(f.metadata.privacy or {}))
        assert r.norm is not None
    assert [p["steps"] for p in privacy] == [1, 2]
    assert {p["mechanism"] for p in privacy} == {"gaussian"}
    assert privacy[0]["clip"] == 2.0
    assert privacy[0]["noise_multiplier"] == 0.5
    assert privacy[0]["sample_rate"] == 1.0
    assert privacy[1]["epsilon"] > privacy[0]["epsilon"] > 0


def lag_logs(client: Any, method: str, reads: int = 2) -> list[int]:
    """Make ``client.<method>`` (a log read) find nothing for its first ``reads`` calls, as a node whose logs lag
    its state would; the returned counter shows how many empty answers are left."""
    read = getattr(client, method)
    lagging = [reads]

    def logs_behind(*args: Any, **kwargs: Any) -> Any:
        if lagging[0]:
            lagging[0] -= 1
            return []
        return read(*args, **kwargs)

    setattr(client, method, logs_behind)
    return lagging


def test_the_verdict_waits_for_logs_that_lag_the_finalized_state(make_net: Any) -> None:
    """A node can show a round finalized in its views before its logs hold the RoundFinalized event (anvil did,
    under CI's load): the member waits for the event instead of recording "rejected"."""
    net: NodeNet = make_net(contributors=1)
    runner = net.runner(0, NodeOptions(rounds=1, **FAST))
    lagging = lag_logs(runner.client, "finalizations")
    thread = net.start(runner)
    net.judge_round(1)
    (done,) = thread.join_result()
    assert lagging == [0]
    assert (done.status, done.detail) == ("accepted", "")
    assert done.score == 8_000
    assert any("logs do not show it yet" in m for m in net.messages[runner.address])


def test_a_submission_found_on_chain_without_a_record_waits_for_its_log(make_net: Any) -> None:
    """A member whose journal lost the round (its update was submitted by an earlier run) reads its digest from
    the round's logs; logs that lag the chain's views are waited for, not read as "no digest"."""
    net: NodeNet = make_net(contributors=1)
    runner = net.runner(0, NodeOptions(rounds=1, **FAST))
    round_ = net.current_round()
    digest = fake_digest("an update an earlier run submitted")
    index = runner.client.submit_update(net.task_id, round_, digest, 7).value
    lagging = lag_logs(runner.client, "submissions")
    record = runner._adopt(None, round_, index, 7)
    assert lagging == [0]
    assert (record.status, record.index, record.cid) == ("submitted", index, digest_to_cid(digest))
    assert any("logs do not show it yet" in m for m in net.messages[runner.address])


def test_a_members_content_is_not_in_the_store_before_submissions_close(make_net: Any) -> None:
    """R1: during the submission window only the digest is public, so nobody can copy the content and submit it
    as their own; the member publishes it once submissions close, and the round goes on."""
    net: NodeNet = make_net(contributors=2)
    first = net.start(net.runner(0, NodeOptions(shard=0, shards=2, rounds=1, **FAST)))
    (sub,) = net.wait_submissions(1, 1)
    cid = digest_to_cid(sub.args["digest"])
    runner = first.runner
    wait_until(
        lambda: any("waiting for the validators" in m for m in net.messages[runner.address]), 30, "a wait"
    )
    assert net.view(1).phase is Phase.OPEN
    assert not net.store.has(cid)  # the digest is on chain, the content nowhere a copier could read it
    record = runner.journal.load(net.task_id, 1)
    assert record is not None
    assert record.status == "submitted"
    assert not record.published
    second = net.start(net.runner(1, NodeOptions(shard=1, shards=2, rounds=1, **FAST)))
    net.judge_round(1)  # the last submission closes the round; the stand-in waits for the content
    (mine,), (other,) = first.join_result(), second.join_result()
    assert net.store.has(cid)
    assert (mine.status, other.status) == ("accepted", "accepted")
    assert mine.published
    assert mine.score == 8_000
    said = net.messages[runner.address]
    published = next(i for i, m in enumerate(said) if "published" in m)
    submitted = next(i for i, m in enumerate(said) if "submitted as update" in m)
    assert submitted < published


def test_a_copycat_finds_nothing_to_copy_before_the_close(make_net: Any) -> None:
    net: NodeNet = make_net(contributors=2)
    honest = net.start(net.runner(0, NodeOptions(shard=0, shards=2, rounds=1, **FAST)))
    net.wait_submissions(1, 1)
    options = NodeOptions(shard=1, shards=2, rounds=1, behaviour="copycat", copy_wait_s=1.0, **FAST)
    cat = net.start(net.runner(1, options))
    net.judge_round(1)
    (mine,), (copied,) = honest.join_result(), cat.join_result()
    assert any("no other update to copy" in m for m in net.messages[cat.runner.address])
    with UpdateFile.open(Path(mine.file)) as a, UpdateFile.open(Path(copied.file)) as b:
        assert any(not np.array_equal(a.tensor(k), b.tensor(k)) for k in a)


def test_more_samples_than_the_task_allows_is_refused_before_any_transaction(make_net: Any) -> None:
    from node.faults import TooManySamplesClaimed

    net: NodeNet = make_net(contributors=1, max_samples=10)
    runner = net.runner(0, NodeOptions(rounds=1, **FAST))
    with pytest.raises(TooManySamplesClaimed) as caught:
        runner.run()
    assert "at most 10" in caught.value.message
    assert "maxSamples" in caught.value.message
    assert caught.value.exit_code == 5
    assert net.submissions(1) == []


def test_score_reasons_read_each_validators_reveal() -> None:
    from ledger.chain.types import ScoresRevealed
    from node.runner import score_reasons

    def reveal(who: str, scores: tuple[int, ...], reasons: tuple[int, ...]) -> ScoresRevealed:
        return ScoresRevealed(1, 1, who, scores, reasons, "0x", 1)

    reveals = [reveal("0xA", (5000, -10000), (0, 16)), reveal("0xB", (4000, -10000), (0, 18))]
    assert score_reasons(reveals, 0) == [("0xA", 5000, 0), ("0xB", 4000, 0)]
    assert score_reasons(reveals, 1) == [("0xA", -10000, 16), ("0xB", -10000, 18)]
    assert score_reasons(reveals, -1) == []


def test_round_views_use_the_pending_block(make_net: Any) -> None:
    net: NodeNet = make_net(contributors=1)
    runner = net.runner(0, NodeOptions(rounds=1, **FAST))
    assert runner.client.view_block == "pending"
    assert net.view(1).phase is Phase.OPEN
    assert cid_to_digest(net.genesis_cid) == net.view(1).base_digest


def test_a_chain_that_restarts_is_waited_for_and_the_member_carries_on(
    tmp_path: Path, dev_keys: list[tuple[str, str]]
) -> None:
    from ledger.dev.services import AnvilProcess

    chain_dir = tmp_path / "chain"
    anvil = AnvilProcess.start(chain_dir)
    port = anvil.port
    net = NodeNet.create(anvil.url, tmp_path, dev_keys, contributors=1)
    try:
        runner = net.runner(0, NodeOptions(rounds=2, **FAST))
        said = net.messages[runner.address]
        thread = net.start(runner)
        net.wait_submissions(1, 1)
        wait_until(lambda: any("waiting for the validators" in m for m in said), 10, "the member to wait")
        anvil.stop()  # SIGTERM: anvil writes its state, as a restarted node would have it
        wait_until(lambda: any("waiting and retrying" in m for m in said), 20, "the member to notice")
        anvil = restart_anvil(chain_dir, port)
        net.resync()
        net.judge_round(1)
        net.judge_round(2)
        records = thread.join_result()
    finally:
        net.close()
        anvil.stop()
    assert [(r.round, r.status) for r in records] == [(1, "accepted"), (2, "accepted")]
    assert any(m.startswith("reconnected after") for m in said)


def test_a_chain_that_comes_back_without_the_ledger_ends_the_member(
    tmp_path: Path, dev_keys: list[tuple[str, str]]
) -> None:
    from ledger.chain.client import NoContract
    from ledger.dev.services import AnvilProcess

    anvil = AnvilProcess.start(tmp_path / "chain")
    net = NodeNet.create(anvil.url, tmp_path, dev_keys, contributors=1)
    try:
        runner = net.runner(0, NodeOptions(rounds=1, **FAST))
        said = net.messages[runner.address]
        thread = net.start(runner)
        net.wait_submissions(1, 1)
        anvil.stop()
        wait_until(lambda: any("waiting and retrying" in m for m in said), 20, "the member to notice")
        anvil = restart_anvil(tmp_path / "another-chain", anvil.port)  # a fresh chain: the ledger is gone
        with pytest.raises(NoContract) as caught:
            thread.join_result(30)
    finally:
        net.close()
        anvil.stop()
    assert caught.value.exit_code == 4
    assert net.consortium.ledger in caught.value.message


def restart_anvil(data_dir: Path, port: int) -> Any:
    """anvil again on the same port and state file. Not `AnvilProcess.start(port=…)`: its free-port probe binds
    without SO_REUSEADDR, so it refuses a port whose old connections are still in TIME_WAIT; anvil itself binds
    with SO_REUSEADDR and can take it at once."""
    import subprocess

    from ledger.dev.services import AnvilProcess

    settings = Settings(data_dir=data_dir)
    service_dir = (data_dir / "anvil").resolve()
    service_dir.mkdir(parents=True, exist_ok=True)
    log = service_dir / "anvil.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            AnvilProcess.command(AnvilProcess.binary(settings), port, service_dir, settings),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=service_dir,
        )
    anvil = AnvilProcess(process, port, AnvilProcess.url_for(port), log)
    try:
        anvil.wait_ready(15)
    except BaseException:
        anvil.stop()
        raise
    return anvil
