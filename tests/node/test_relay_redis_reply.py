"""The Redis relay queue: whoever can write to the Redis can write a member's reply. A forged "rejected" or
"closed" reply that the chain does not bear out does not stop the member (it re-queues its submission); one the
chain confirms does."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.content import digest_to_cid
from node.faults import RelayRejected
from node.relay import Relayer, queue_key, reply_key, submit_relayed
from tests.support.chain import fake_digest
from tests.support.node import NodeNet

pytestmark = [pytest.mark.anvil, pytest.mark.redis]


@pytest.fixture
def net(anvil: Any, tmp_path: Path, dev_keys: list[tuple[str, str]]) -> Iterator[NodeNet]:
    n = NodeNet.create(anvil.url, tmp_path, dev_keys, contributors=2)
    yield n
    n.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class Member(threading.Thread):
    def __init__(self, net: NodeNet, redis_client: Any, key: str) -> None:
        super().__init__(daemon=True)
        self.net, self.redis, self.key = net, redis_client, key
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = submit_relayed(
                self.net.client(),
                self.redis,
                self.key,
                task=self.net.task_id,
                round_=1,
                cid=digest_to_cid(fake_digest("update", self.key)),
                num_samples=100,
                poll_s=0.05,
            )
        except BaseException as exc:
            self.error = exc


@pytest.mark.parametrize("forged", ["rejected", "closed"])
def test_a_forged_reply_the_chain_does_not_bear_out_is_not_believed(
    net: NodeNet, redis_client: Any, dev_keys: list[tuple[str, str]], forged: str
) -> None:
    address, key = net.contributor_keys[0]
    ledger = net.client().address
    queue = queue_key(ledger)
    member = Member(net, redis_client, key)
    member.start()
    wait_until(lambda: redis_client.llen(queue) == 1)
    redis_client.lpop(queue)  # someone on the Redis drops the submission and answers for the relayer
    redis_client.set(reply_key(ledger, address, 0), json.dumps({"status": forged, "problem": "forged"}))
    wait_until(lambda: redis_client.llen(queue) == 1)  # the member did not believe it and queued it again
    relayer = Relayer(net.client(dev_keys[18][1]), redis_client, batch_wait_s=0.1, say=lambda _m: None)
    relayer.handle(relayer.next_batch(1.0))
    member.join(30)
    assert member.error is None, member.error
    assert member.result.status == "submitted"
    assert net.client().submission_of(net.task_id, 1, address).submitted


def test_a_rejection_the_chain_confirms_stops_the_member(
    net: NodeNet, redis_client: Any, dev_keys: list[tuple[str, str]]
) -> None:
    outsider, key = dev_keys[17]
    ledger = net.client().address
    member = Member(net, redis_client, key)
    member.start()
    wait_until(lambda: redis_client.llen(queue_key(ledger)) == 1)
    redis_client.set(
        reply_key(ledger, outsider, 0), json.dumps({"status": "rejected", "problem": "not a member"})
    )
    member.join(30)
    assert isinstance(member.error, RelayRejected)
    assert "the chain agrees" in str(member.error)
    assert "is not a contributor" in str(member.error)
