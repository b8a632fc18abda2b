"""The relay wire format has one parser: the Redis relayer (`node relay`) and the HTTP relayer (`worker relay`)
accept and refuse the same items, for the same reasons, and every integer is bounded by the contract's type."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ledger.chain.relay_wire import MAX_ITEM_BYTES, MalformedItem, RelayItem
from node.faults import InvalidRelayMessage
from node.relay import RelayMessage
from worker.relay_http import Refusal, parse_item


def valid() -> dict[str, Any]:
    return {
        "schema": 1, "task": 1, "round": 2, "contributor": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "digest": "0x" + "ab" * 32, "num_samples": 10, "nonce": 0, "deadline": 2**40, "v": 27,
        "r": "0x" + "11" * 32, "s": "0x" + "22" * 32,
    }  # fmt: skip


MALFORMED = [
    ({"v": 29}, "27 or 28"),
    ({"nonce": -1}, "`nonce` must be an integer"),
    ({"nonce": 2**64}, "`nonce` must be an integer"),
    ({"num_samples": 2**64}, "`num_samples`"),
    ({"deadline": True}, "`deadline`"),
    ({"task": 2**256}, "`task`"),
    ({"round": 2**32}, "`round`"),
    ({"digest": "0x1234"}, "64 hex"),
    ({"digest": 7}, "`digest` must be a string"),
    ({"r": "0x" + "zz" * 32}, "not hex"),
    ({"contributor": "alice"}, "not an address"),
    ({"contributor": 5}, "not an address"),
    ({"schema": 2}, "unknown schema 2"),
    ({"extra": 1}, "expected the fields"),
]


@pytest.mark.parametrize(("change", "problem"), MALFORMED)
def test_both_relayers_refuse_a_malformed_item_for_the_same_reason(
    change: dict[str, Any], problem: str
) -> None:
    raw = json.dumps({**valid(), **change}).encode()
    with pytest.raises(MalformedItem, match=problem) as wire:
        RelayItem.parse(raw)
    assert not wire.value.too_large
    with pytest.raises(InvalidRelayMessage) as queued:
        RelayMessage.parse(raw)
    with pytest.raises(Refusal) as http:
        parse_item(raw)
    assert (http.value.status, http.value.code) == (400, "malformed")
    assert http.value.problem == str(wire.value)
    assert str(queued.value).endswith(str(wire.value))  # a node fault names its kind first


def test_every_uint64_nonce_the_contract_takes_is_accepted_by_both_relayers() -> None:
    # The HTTP relayer used to refuse nonces from 2**48 on, which the contract (uint64) and the queue accepted.
    raw = json.dumps({**valid(), "nonce": 2**64 - 1, "num_samples": 2**64 - 1}).encode()
    item = parse_item(raw)
    assert item == RelayItem.parse(raw)
    assert RelayMessage.parse(raw).sub == item.sub
    assert item.sub.nonce == 2**64 - 1


def test_an_item_round_trips_and_an_oversized_one_is_refused_before_it_is_parsed() -> None:
    item = RelayItem.parse(json.dumps(valid()))
    assert RelayItem.parse(item.to_json()) == item
    assert (item.task, item.round, item.sub.digest) == (1, 2, bytes.fromhex("ab" * 32))
    oversized = b"{" + b" " * MAX_ITEM_BYTES + b"}"  # valid JSON shape, never parsed
    with pytest.raises(MalformedItem, match=f"over {MAX_ITEM_BYTES}") as wire:
        RelayItem.parse(oversized)
    assert wire.value.too_large
    with pytest.raises(Refusal) as http:
        parse_item(oversized)
    assert (http.value.status, http.value.code) == (413, "too_large")
