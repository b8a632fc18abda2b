"""Faults the worker pipeline must survive, with real processes: `kill -9` of the aggregator mid-aggregation
(repeated), Redis restarted mid-round (with and without its data), the content store unavailable, and a key
without the role.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.chain.scores import decode_scores
from ledger.chain.types import Phase
from ledger.dev.services import RedisProcess, free_port
from ledger.exit_codes import ExitCode
from ledger.settings import Settings
from tests.support import malicious as corpus
from tests.support.worker import FakeKubo, WorkerNet, wait_until
from worker.state import WorkerState, worker_id

pytestmark = [pytest.mark.anvil, pytest.mark.redis, pytest.mark.slow]


# fixtures
def submit_honest(net: WorkerNet, round_: int, members: range) -> list[bytes]:
    """Submit the digests only (content is published after the close, R1); returns the files."""
    files = [corpus.honest_update(net.context(i, round_)) for i in members]
    for i, data in zip(members, files, strict=True):
        net.submit(i, data, round_=round_, publish=False)
    return files


def publish_after_close(net: WorkerNet, round_: int, files: list[bytes]) -> None:
    phase = lambda: net.client().round_view(net.task_id, round_).phase  # noqa: E731
    wait_until(lambda: phase() is not Phase.OPEN, 30, "submissions to close")
    for data in files:
        net.publish(data)


def one_reveal_each_accepting_all(net: WorkerNet, round_: int, n: int) -> None:
    for v in range(net.validators):
        (reveal,) = net.reveals(round_, v)  # one each: none twice, none missing
        assert list(reveal.args["reasons"]) == [0] * n
        assert all(score > 0 for score in decode_scores(bytes(reveal.args["scores"])))
        assert len(net.commits(round_, v)) == 1


# --- kill -9 of the aggregator ------------------------------------------------------------------------------


def test_kill9_of_the_aggregator_repeatedly_still_finalizes_exactly_once(
    worker_net: Callable[..., WorkerNet], redis_url: str
) -> None:
    """Killed after fetching the inputs, after storing the aggregate, after the finalize was mined: every
    restart picks the job up again from the chain, and the round is finalized once, with the same aggregate."""
    net = worker_net(contributors=4)
    for v in range(2):
        net.start_validator(v)
    state = WorkerState.from_url(redis_url)
    me = worker_id("aggregator", net.aggregator[0])
    round_ = net.current_round()
    seen: set[int] = set()
    stored: str | None = None

    for n, stage in enumerate(("fetched", "stored", "finalized")):
        aggregator = net.start_aggregator("--failpoint", f"aggregate.{stage}=120")
        if n == 0:
            net.wait_ready(aggregator)
            publish_after_close(net, round_, submit_honest(net, round_, range(4)))

        def held(stage: str = stage) -> dict[str, Any] | None:
            record = state.progress("aggregate", net.task_id, round_, me)
            fresh = record is not None and record["stage"] == stage and record["pid"] not in seen
            return record if fresh else None

        try:
            record = wait_until(held, 60, f"the aggregator to be held at {stage}")
        except AssertionError:
            raise AssertionError(net.diagnostics()) from None
        seen.add(record["pid"])
        if stage == "stored":
            stored = record["aggregate"]
        assert len(net.finalizations(round_)) == (1 if stage == "finalized" else 0)
        aggregator.kill9()
        assert not aggregator.alive()

    # A last, unhindered aggregator: the round is done, so it must not finalize anything again.
    last = net.start_aggregator()
    net.wait_ready(last)
    time.sleep(3)  # several watcher polls and a job TTL
    (final,) = net.finalizations(round_)
    assert stored is not None
    from ledger.content import digest_to_cid

    assert digest_to_cid(final.args["aggregateDigest"]) == stored  # every run made the same bytes
    assert final.args["acceptedBitmap"] == 0b1111
    assert net.current_round() == round_ + 1
    assert len(seen) == 3


# --- Redis restarted mid-round ------------------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A redis-server child this test may kill and restart on the same port; stopped afterwards."""
    box: dict[str, Any] = {"proc": RedisProcess.start(tmp_path / "redis-1")}
    box["port"] = box["proc"].port
    try:
        yield box
    finally:
        box["proc"].stop()


def restart_redis(box: dict[str, Any], data_dir: Path) -> None:
    """Start redis-server again on the same port (its socket may still be in TIME_WAIT, which redis tolerates but
    ``RedisProcess.start``'s free-port check does not)."""
    settings = Settings(data_dir=data_dir)
    service_dir = (data_dir / "redis").resolve()
    service_dir.mkdir(parents=True, exist_ok=True)
    log = service_dir / "redis.log"
    port = box["port"]
    with log.open("ab") as out:
        popen = subprocess.Popen(
            RedisProcess.command(RedisProcess.binary(settings), port, service_dir, settings),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=service_dir,
        )
    proc = RedisProcess(popen, port, RedisProcess.url_for(port), log)
    box["proc"] = proc
    proc.wait_ready(15)


def outage(box: dict[str, Any], data_dir: Path, during: Callable[[], None] = lambda: None) -> None:
    box["proc"].kill()
    during()
    time.sleep(1)
    restart_redis(box, data_dir)


@pytest.mark.parametrize("keep_data", [True, False], ids=["append-only-file-kept", "data-lost"])
def test_redis_restarted_mid_round_loses_no_submission(
    worker_net: Callable[..., WorkerNet], own_redis: dict[str, Any], tmp_path: Path, keep_data: bool
) -> None:
    net = worker_net(contributors=4, redis_url=own_redis["proc"].url)
    slow = net.start_validator(0, "--failpoint", "verify.before_commit=3")
    others = [net.start_validator(1), net.start_aggregator()]
    for proc in [slow, *others]:
        net.wait_ready(proc)
    round_ = net.current_round()
    files = submit_honest(net, round_, range(3))

    def data_dir(n: int) -> Path:
        return tmp_path / ("redis-1" if keep_data else f"redis-{n}")

    # Outage 1: the last submission (which closes the round) lands while the broker is down.
    outage(own_redis, data_dir(2), during=lambda: files.extend(submit_honest(net, round_, range(3, 4))))
    publish_after_close(net, round_, files)

    # Outage 2: while validator 0 holds its scoring job (scored, about to commit).
    state = WorkerState.from_url(own_redis["proc"].url)
    me = worker_id("validator", net.validator(0)[0])

    def judging() -> bool:
        try:
            record = state.progress("verify", net.task_id, round_, me)
        except Exception:
            return False
        return record is not None and record["stage"] == "scored"

    try:
        wait_until(judging, 45, "validator 0 to hold its job")
    except AssertionError:
        raise AssertionError(net.diagnostics()) from None
    outage(own_redis, data_dir(3))

    final = net.wait_finalized(round_, timeout=90)
    assert final.args["acceptedBitmap"] == 0b1111
    assert len(net.finalizations(round_)) == 1
    one_reveal_each_accepting_all(net, round_, 4)
    assert all(p.alive() for p in [slow, *others]), net.diagnostics()


# --- the store unavailable ----------------------------------------------------------------------------------


def test_store_unavailable_is_retried_then_a_visible_fault_never_a_reject(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    net = worker_net(contributors=4, commit_window=600)  # the round waits for validator 0 within it
    kubo_port = free_port()  # nothing listens there (yet)
    cut_off = net.start_validator(0, store="kubo", kubo_api_url=f"http://127.0.0.1:{kubo_port}")
    others = [net.start_validator(1), net.start_aggregator()]
    for proc in [cut_off, *others]:
        net.wait_ready(proc)
    round_ = net.current_round()
    publish_after_close(net, round_, submit_honest(net, round_, range(4)))
    me = worker_id("validator", net.validator(0)[0])

    state = WorkerState.from_url(net.redis_url)

    def gave_up() -> dict[str, Any] | None:
        found = [f for f in state.faults() if f["worker"] == me and f["kind"] == "store" and f["gave_up"]]
        return found[0] if found else None

    try:
        wait_until(gave_up, 60, "validator 0 to give up on the store")
    except AssertionError:
        raise AssertionError(net.diagnostics()) from None
    code, report = net.status()  # what an operator sees
    assert code == ExitCode.UNAVAILABLE
    (record,) = [f for f in report["faults"] if f["worker"] == me]
    assert record["kind"] == "store"
    assert record["count"] >= 3  # the first attempt and two retries (--max-retries 2)
    assert "content store" in record["detail"]
    assert net.commits(round_, 0) == []  # no score at all: above all, no reject
    assert len(net.commits(round_, 1)) == 1
    assert (
        net.finalizations(round_) == []
    )  # the round waits for validator 0 (or the end of the commit window)
    assert cut_off.alive()

    # The store comes back: the watcher's next enqueue succeeds, the scores accept everything, the fault clears.
    kubo = FakeKubo(net.root / "blocks", kubo_port)
    try:
        net.wait_finalized(round_, timeout=60)
        one_reveal_each_accepting_all(net, round_, 4)
        code, report = net.status()
        assert code == ExitCode.OK
        assert [f for f in report["faults"] if f["worker"] == me] == []
        assert report["metrics"]["faults_store_total"] >= 3
    finally:
        kubo.close()


# --- a key without the role -----------------------------------------------------------------------------------


def test_a_key_without_the_role_is_refused_with_not_member(worker_net: Callable[..., WorkerNet]) -> None:
    net = worker_net(contributors=1)
    validator_key = net.validator(0)[1]
    done = net.run_cli("worker", "run", "--role", "aggregator", key=validator_key)
    assert done.returncode == ExitCode.NOT_MEMBER, done.stderr
    assert "aggregator role" in done.stderr
    done = net.run_cli("worker", "run", "--role", "validator", key=net.contributor(0)[1])
    assert done.returncode == ExitCode.NOT_MEMBER, done.stderr
