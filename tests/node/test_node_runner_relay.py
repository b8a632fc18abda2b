"""Gasless submissions: a member signs (EIP-712), the relayer batches signed submissions from Redis into
`submitUpdatesFor`; bad messages are refused one by one without reverting the batch."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.content import cid_to_digest
from node.faults import InvalidRelayMessage
from node.relay import Relayer, RelayMessage, queue_key, reply_key
from node.runner import NodeOptions
from tests.support.chain import fake_digest
from tests.support.node import NodeNet

pytestmark = [pytest.mark.anvil, pytest.mark.redis]

FAST = {"poll_s": 0.05, "max_poll_s": 0.2, "base_backoff_s": 0.01}


@pytest.fixture
def net(
    anvil: Any,
    tmp_path: Path,
    dev_keys: list[tuple[str, str]],
) -> Iterator[NodeNet]:
    n = NodeNet.create(anvil.url, tmp_path, dev_keys, contributors=2)
    yield n
    n.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


class RelayerThread(threading.Thread):
    def __init__(self, relayer: Relayer) -> None:
        super().__init__(daemon=True)
        self.relayer = relayer
        self.stopping = threading.Event()

    def run(self) -> None:
        self.relayer.run(self.stopping.is_set, block_s=0.2)

    def close(self) -> None:
        self.stopping.set()
        self.join(10)


def relayer_for(net: NodeNet, redis_client: Any, key: str) -> Relayer:
    client = net.client(key)
    return Relayer(client, redis_client, max_batch=8, batch_wait_s=0.3, say=lambda _m: None)


def test_relayed_members_pay_no_gas_and_the_relayer_batches_them(
    net: NodeNet, redis_client: Any, dev_keys: list[tuple[str, str]]
) -> None:
    relayer_address, relayer_key = dev_keys[0]
    relay = RelayerThread(relayer_for(net, redis_client, relayer_key))
    relay.start()
    w3 = net.client().w3
    balances = [w3.eth.get_balance(a) for a, _ in net.contributor_keys]
    try:
        threads = [
            net.start(
                net.runner(
                    i,
                    NodeOptions(shard=i, shards=2, rounds=1, relay=True, **FAST),
                    read_only=True,
                    relay_redis=redis_client,
                )
            )
            for i in range(2)
        ]
        subs = net.wait_submissions(1, 2)
        net.judge_round(1)
        records = [t.join_result()[0] for t in threads]
    finally:
        relay.close()
    assert {s.args["relayer"] for s in subs} == {relayer_address}
    assert {s.args["contributor"] for s in subs} == {a for a, _ in net.contributor_keys}
    assert [r.status for r in records] == ["accepted", "accepted"]
    assert all(r.relayed for r in records)
    # The members' accounts paid nothing: their ETH balances did not move.
    assert [w3.eth.get_balance(a) for a, _ in net.contributor_keys] == balances
    assert relay.relayer.relayed == 2


def test_a_forged_signature_is_refused_without_reverting_the_others(
    net: NodeNet, redis_client: Any, dev_keys: list[tuple[str, str]]
) -> None:
    relayer = relayer_for(net, redis_client, dev_keys[0][1])
    reader = net.client()
    (good_addr, good_key), (victim, _) = net.contributor_keys
    good = reader.sign_submission(good_key, net.task_id, 1, fake_digest("good"), 100)
    # Someone signs a submission in the victim's name with their own key: the signature recovers to them.
    forged_sig = reader.sign_submission(dev_keys[15][1], net.task_id, 1, fake_digest("forged"), 100, nonce=0)
    forged = forged_sig.__class__(**{**forged_sig.__dict__, "contributor": victim})
    messages = [RelayMessage(net.task_id, 1, s).to_json().encode() for s in (forged, good)]
    messages.append(b'{"not": "a submission"}')
    verdicts = relayer.handle(messages)
    assert [v.status for v in verdicts] == ["rejected", "submitted"]
    assert "recovers to" in verdicts[0].problem
    assert reader.submission_of(net.task_id, 1, good_addr).submitted
    assert not reader.submission_of(net.task_id, 1, victim).submitted
    reply = json.loads(redis_client.get(reply_key(reader.address, victim, 0)))
    assert reply["status"] == "rejected"
    ok = json.loads(redis_client.get(reply_key(reader.address, good_addr, good.nonce)))
    assert ok == {"status": "submitted", "index": 0, "tx": verdicts[1].tx}
    assert redis_client.llen(queue_key(reader.address)) == 0


def test_a_replayed_or_expired_submission_is_refused(
    net: NodeNet, redis_client: Any, dev_keys: list[Any]
) -> None:
    relayer = relayer_for(net, redis_client, dev_keys[0][1])
    reader = net.client()
    address, key = net.contributor_keys[0]
    stale = reader.sign_submission(key, net.task_id, 1, fake_digest("a"), 100, nonce=5)
    now = int(reader.w3.eth.get_block("latest")["timestamp"])
    expired = reader.sign_submission(key, net.task_id, 1, fake_digest("b"), 100, deadline=now - 1)
    verdicts = relayer.handle([RelayMessage(net.task_id, 1, s).to_json().encode() for s in (stale, expired)])
    assert [v.status for v in verdicts] == ["rejected", "rejected"]
    assert "nonce 5, expected 0" in verdicts[0].problem
    assert "expired" in verdicts[1].problem
    assert not reader.submission_of(net.task_id, 1, address).submitted


def _valid() -> dict[str, Any]:
    return {
        "schema": 1, "task": 1, "round": 2, "contributor": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "digest": "0x" + cid_to_digest("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o").hex(),
        "num_samples": 10, "nonce": 0, "deadline": 2**40, "v": 27, "r": "0x" + "11" * 32, "s": "0x" + "22" * 32,
    }  # fmt: skip


def test_a_well_formed_message_round_trips() -> None:
    message = RelayMessage.parse(json.dumps(_valid()))
    assert RelayMessage.parse(message.to_json()) == message
    assert message.sub.num_samples == 10
    assert message.round == 2


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"v": 29}, "27 or 28"),
        ({"nonce": -1}, "nonce"),
        ({"nonce": True}, "nonce"),
        ({"digest": "0x1234"}, "64 hex"),
        ({"r": "0x" + "zz" * 32}, "not hex"),
        ({"contributor": "alice"}, "not an address"),
        ({"schema": 2}, "schema"),
        ({"extra": 1}, "fields"),
        ({"round": 2**32}, "round"),
    ],
)
def test_malformed_messages_are_refused(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidRelayMessage, match=problem):
        RelayMessage.parse(json.dumps({**_valid(), **change}))


def test_oversized_and_non_json_messages_are_refused() -> None:
    with pytest.raises(InvalidRelayMessage, match="bytes"):
        RelayMessage.parse(b"x" * 5000)
    with pytest.raises(InvalidRelayMessage, match="JSON"):
        RelayMessage.parse(b"\xff\xfe")
