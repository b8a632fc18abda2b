"""A transaction that passes its gas estimate and reverts once mined is still raised by its named error, on a real
anvil: the receipt carries no revert data, so the sender asks the node for the transaction's own trace (and,
without a debug API, replays it). Issue 15: a member's mined revert was reported as "out of gas?" and the member
exited 1 instead of recording the round as missed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from web3 import HTTPProvider, Web3

from ledger.chain import errors
from ledger.chain.client import LedgerClient, connect_web3
from ledger.chain.revert import UnknownRevert
from ledger.chain.sender import TxSender
from ledger.content import digest_to_cid
from ledger.dev.services import AnvilProcess
from node.packaging import submit_direct
from tests.support.chain import Consortium, advance_time, chain_snapshot, fake_digest, rpc

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def consortium(anvil: AnvilProcess, dev_keys: list[tuple[str, str]]) -> Iterator[Consortium]:
    w3 = connect_web3(anvil.rpc_url)
    with chain_snapshot(w3):
        yield Consortium.deploy(w3, dev_keys, validators=2, contributors=3, quorum=1, submission_window=60)


@pytest.fixture
def c(consortium: Consortium, w3: Any) -> Iterator[Consortium]:
    consortium.reset_nonces()
    yield consortium
    consortium.reset_nonces()


class NoDebugProvider(HTTPProvider):
    """An endpoint without the debug API, as most public RPC endpoints are."""

    def make_request(self, method: Any, params: Any) -> Any:
        if str(method).startswith("debug_"):
            return {"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "method not found"}}
        return super().make_request(method, params)


def _sender(w3: Any, key: str, decoder_client: LedgerClient) -> TxSender:
    return TxSender(w3, key, decoder=decoder_client.decoder, timeout=30)


def test_a_submission_mined_after_the_window_closed_is_named_and_the_member_records_it_missed(
    c: Consortium, w3: Any
) -> None:
    """The member's estimate (at the pending block) passes; the window ends before its block is mined. The member
    gets ``closed`` (SubmissionsClosed, decoded from the mined transaction), not an unnamed revert."""
    address, key = c.contributors[0]
    client = c.client(key)
    rpc(w3, "evm_setAutomine", False)
    outcome: list[Any] = []

    def member() -> None:
        try:
            outcome.append(
                submit_direct(
                    client, task=c.task_id, round_=1, cid=digest_to_cid(fake_digest("late")), num_samples=5
                )
            )
        except Exception as exc:  # reported below, with the test's own assertion
            outcome.append(exc)

    thread = threading.Thread(target=member)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not int(rpc(w3, "eth_getBlockTransactionCountByNumber", "pending"), 16):
            assert time.monotonic() < deadline, "the member never sent its transaction"
            time.sleep(0.05)
        rpc(w3, "evm_increaseTime", 120)  # the window ends before the block that holds it
        rpc(w3, "evm_mine")
    finally:
        rpc(w3, "evm_setAutomine", True)
        thread.join(30)
    assert len(outcome) == 1, outcome
    submitted = outcome[0]
    assert not isinstance(submitted, Exception), submitted
    assert submitted.status == "closed"
    assert "MeshLedger_SubmissionsClosed" in submitted.detail
    assert not c.client().submission_of(c.task_id, 1, address).submitted


@pytest.mark.parametrize("debug_api", [True, False], ids=["trace", "replay"])
def test_a_mined_custom_error_is_raised_by_name(
    c: Consortium, w3: Any, anvil: AnvilProcess, debug_api: bool
) -> None:
    """A fixed gas limit skips the estimate: the submission after the window is mined and fails on chain."""
    key = c.contributors[1][1]
    node = Web3(NoDebugProvider(anvil.rpc_url)) if not debug_api else w3
    sender = _sender(node, key, c.client())
    advance_time(w3, 120)
    fn = c.client(key).contract.functions.submitUpdate(c.task_id, 1, fake_digest("fixed-gas"), 3)
    with pytest.raises(errors.SubmissionsClosed) as info:
        sender.send(fn, gas=300_000)
    assert info.value["round"] == 1
    assert "out of gas" not in str(info.value)


def test_a_too_early_commit_is_named_even_after_the_clock_moved_past_it(c: Consortium, w3: Any) -> None:
    """A validator's commit mined before submissions closed reverts with CommitNotOpen. It is explained after the
    clock moved on (the same call would now succeed): the name comes from the transaction's own execution (its trace,
    or a replay on its block's state and clock), not from the state now."""
    key = c.validators[0][1]
    sender = _sender(w3, key, c.client())
    fn = c.client(key).contract.functions.commitScores(c.task_id, 1, fake_digest("commit"))
    tx_hash = sender.submit(fn, gas=200_000)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 0
    advance_time(w3, 120)  # submissions have closed since: the same call would now succeed
    explained = sender.explain_failure(receipt)
    assert isinstance(explained, errors.CommitNotOpen)
    assert explained["round"] == 1


def test_out_of_gas_is_said_only_when_the_trace_says_so(c: Consortium, w3: Any) -> None:
    key = c.contributors[2][1]
    sender = _sender(w3, key, c.client())
    fn = c.client(key).contract.functions.submitUpdate(c.task_id, 1, fake_digest("starved"), 3)
    with pytest.raises(UnknownRevert) as info:
        sender.send(fn, gas=25_000)
    assert "the node's trace says so" in str(info.value)
    assert "it used 25000 of its 25000 gas limit" in str(info.value)


def test_a_deployment_refused_by_the_contract_names_the_error(anvil: AnvilProcess, w3: Any) -> None:
    """The deployer's path too: a 33rd validator is refused by MeshLedger_TooManyValidators, by name."""
    from lab.consortium import RoleKeys, deploy_consortium, task_table
    from ledger.chain.deploy import DeployFailed
    from ledger.dev.services import dev_accounts
    from ledger.settings import Settings

    keys = RoleKeys.laid_out(
        dev_accounts(Settings().anvil_mnemonic, 2 + 33 + 1), validators=33, contributors=1
    )
    task = task_table(spec=fake_digest("spec"), genesis=fake_digest("genesis"), quorum=1)
    with pytest.raises(DeployFailed) as info:
        deploy_consortium(w3, keys, task, source="test")
    assert "MeshLedger_TooManyValidators(max=32)" in str(info.value)
    assert info.value.step.startswith("grant validator")
