"""TxSender against a real anvil: one key from many threads, each kind of revert, nonces, timeouts."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ledger.chain import errors
from ledger.chain.artifacts import Artifact
from ledger.chain.revert import RevertDecoder, UnknownRevert
from ledger.chain.sender import TxRejected, TxSender, TxTimeout
from tests.support.chain import rpc

pytestmark = pytest.mark.anvil


@pytest.fixture
def reverter(
    w3: Any,
    dev_keys: list[tuple[str, str]],
    reverter_artifact: dict[str, Any],
    contracts: dict[str, Artifact],
) -> Any:
    sender = TxSender(w3, dev_keys[0][1])
    factory = w3.eth.contract(abi=reverter_artifact["abi"], bytecode=reverter_artifact["bytecode"])
    address, _ = sender.deploy(factory.constructor())
    contract = w3.eth.contract(address=address, abi=reverter_artifact["abi"])
    # Decode with the meshprov ABIs, as the ledger client does: NotInAnyAbi is then unknown.
    contract.decoder = RevertDecoder([contracts["MeshLedger"].abi, contracts["MeshToken"].abi])
    return contract


def _sender(w3: Any, key: str, reverter: Any, **kwargs: Any) -> TxSender:
    return TxSender(w3, key, decoder=reverter.decoder, **kwargs)


def test_concurrent_sends_from_one_key_use_every_nonce_once(
    w3: Any, dev_keys: list[tuple[str, str]], reverter: Any
) -> None:
    address, key = dev_keys[3]
    sender = _sender(w3, key, reverter)
    start = w3.eth.get_transaction_count(address)
    receipts: list[Any] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            for _ in range(6):
                receipt = sender.send(reverter.functions.bump())
                with lock:
                    receipts.append(receipt)
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    assert len(receipts) == 30
    assert all(r["status"] == 1 for r in receipts)
    nonces = sorted(w3.eth.get_transaction(r["transactionHash"])["nonce"] for r in receipts)
    assert nonces == list(range(start, start + 30))
    assert reverter.functions.counter().call() == 30


@pytest.mark.parametrize(
    ("call", "expected", "check"),
    [
        (lambda c: c.functions.custom(42), errors.UnknownTask, lambda e: e["taskId"] == 42),
        (
            lambda c: c.functions.message(),
            errors.SolidityError,
            lambda e: e["message"] == "counter must be zero",
        ),
        (lambda c: c.functions.panic(0), errors.Panic, lambda e: e["code"] == 0x12),
        (lambda c: c.functions.bare(), UnknownRevert, lambda e: e.data == b""),
        (lambda c: c.functions.unknown(), UnknownRevert, lambda e: e.data[:4] != b""),
    ],
    ids=["custom-error", "require-message", "panic", "bare-revert", "unknown-selector"],
)
def test_each_kind_of_revert_raises_its_class_before_using_a_nonce(
    w3: Any, dev_keys: list[tuple[str, str]], reverter: Any, call: Any, expected: type, check: Any
) -> None:
    address, key = dev_keys[4]
    sender = _sender(w3, key, reverter)
    before = w3.eth.get_transaction_count(address)
    with pytest.raises(expected) as info:
        sender.send(call(reverter))
    assert type(info.value) is expected
    assert check(info.value)
    assert w3.eth.get_transaction_count(address) == before  # estimated, refused, nothing sent
    # the sender is still usable and its nonce right
    assert sender.send(reverter.functions.bump())["status"] == 1


def test_a_revert_mined_in_a_block_is_decoded_from_a_replay(
    w3: Any, dev_keys: list[tuple[str, str]], reverter: Any
) -> None:
    sender = _sender(w3, dev_keys[5][1], reverter)
    # A fixed gas limit skips the estimate, so the transaction is mined and fails on chain.
    with pytest.raises(errors.UnknownTask) as info:
        sender.send(reverter.functions.custom(9), gas=100_000)
    assert info.value["taskId"] == 9
    assert "task 9" in (info.value.hint or "")


def test_out_of_gas_is_reported_without_a_selector(
    w3: Any, dev_keys: list[tuple[str, str]], reverter: Any
) -> None:
    sender = _sender(w3, dev_keys[5][1], reverter)
    with pytest.raises(UnknownRevert, match=r"out of gas\? it used 30000 of its 30000 gas limit"):
        sender.send(reverter.functions.burn(200), gas=30_000)


def test_a_mined_bare_revert_is_not_blamed_on_gas_it_did_not_run_out_of(
    w3: Any, dev_keys: list[tuple[str, str]], reverter: Any
) -> None:
    sender = _sender(w3, dev_keys[5][1], reverter)
    with pytest.raises(UnknownRevert) as info:
        sender.send(reverter.functions.bare(), gas=100_000)
    used = int(str(info.value).split("it used ")[1].split(" ")[0])
    assert used < 100_000  # the message shows the gas used beside the limit, so the reader can tell
    assert "of its 100000 gas limit" in str(info.value)


def test_another_sender_with_the_same_key_is_resynchronised(
    w3: Any, dev_keys: list[tuple[str, str]], reverter: Any
) -> None:
    key = dev_keys[6][1]
    first = _sender(w3, key, reverter)
    second = _sender(w3, key, reverter)
    first.send(reverter.functions.bump())  # first caches nonce n+1
    second.send(reverter.functions.bump())  # second uses n+1 behind first's back
    receipt = first.send(reverter.functions.bump())  # "nonce too low" -> resync -> n+2
    assert receipt["status"] == 1
    assert reverter.functions.counter().call() == 3


def test_a_transaction_not_mined_in_time_raises_tx_timeout(
    w3: Any, dev_keys: list[tuple[str, str]], reverter: Any
) -> None:
    sender = _sender(w3, dev_keys[7][1], reverter, timeout=0.5, poll_latency=0.05)
    rpc(w3, "evm_setAutomine", False)
    try:
        with pytest.raises(TxTimeout) as info:
            sender.send(reverter.functions.bump())
        assert info.value.tx_hash.startswith("0x")
        assert "MESHPROV_TX_TIMEOUT_S" in (info.value.hint or "")
    finally:
        rpc(w3, "anvil_dropAllTransactions")
        rpc(w3, "evm_setAutomine", True)


def test_the_node_refusing_a_transaction_raises_tx_rejected(
    w3: Any, dev_keys: list[tuple[str, str]], reverter: Any
) -> None:
    poor = "0x" + "42" * 32  # an account with no ether
    sender = _sender(w3, poor, reverter)
    with pytest.raises(TxRejected) as info:
        sender.send(reverter.functions.bump(), gas=60_000)
    assert "insufficient funds" in str(info.value).lower()
    assert info.value.hint is not None


def test_the_sender_never_shows_its_key(w3: Any, dev_keys: list[tuple[str, str]]) -> None:
    address, key = dev_keys[8]
    sender = TxSender(w3, key)
    assert key[2:] not in repr(sender)
    assert address in repr(sender)
