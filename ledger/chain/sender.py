"""Sending transactions from one key: nonces, EIP-1559 fees, receipts, and reverts as named exceptions.

Several threads of one process may send from the same key: a nonce is reserved and the transaction handed to the
node under one lock, so no nonce is skipped or used twice; receipts are awaited outside the lock. Another process
using the same key shows up as a "nonce too low" answer, which resynchronises from the node and retries. Gas is
estimated before a nonce is reserved, so a call that would revert raises its named exception and uses no nonce.
A transaction that reverts anyway once mined (something changed between the estimate and its block, e.g. a window
ended) raises its named exception too: its revert data comes from the node's trace of it, or from a replay on its
block's state where the node has no debug API (:meth:`TxSender.explain_failure`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import Hash32
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError
from web3.types import Nonce, TxParams, TxReceipt, Wei

from ledger.chain.revert import ChainError, ContractRevert, RevertDecoder, UnknownRevert, revert_bytes
from ledger.errors import ServiceUnavailable

if TYPE_CHECKING:
    from web3 import Web3

log = logging.getLogger(__name__)

_NONCE_ERRORS = ("nonce too low", "already known", "nonce too high", "replacement transaction underpriced")


class Transactable(Protocol):
    """What the sender needs of a call: a web3 ContractFunction or ContractConstructor."""

    def estimate_gas(
        self, transaction: TxParams | None = None, block_identifier: Literal["pending"] | None = None
    ) -> int: ...

    def build_transaction(self, transaction: TxParams | None = None) -> TxParams: ...


class TxTimeout(ChainError):
    def __init__(self, tx_hash: str, timeout: float) -> None:
        self.tx_hash = tx_hash
        self.timeout = timeout
        super().__init__(
            f"transaction {tx_hash} was not mined within {timeout:g} s",
            hint="the node may be congested or stopped; raise MESHPROV_TX_TIMEOUT_S or check the RPC endpoint",
        )


class TxRejected(ChainError):
    """The node refused the transaction itself (not a revert): bad nonce, fee, funds."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        hint = None
        if "insufficient funds" in reason.lower():
            hint = "the sending account cannot pay for gas: fund it (on a dev chain, use one of anvil's accounts)"
        super().__init__(f"the node rejected the transaction: {reason}", hint=hint)


@dataclass(frozen=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


class TxSender:
    """Signs and sends transactions for one account; thread-safe."""

    def __init__(
        self,
        w3: Web3,
        private_key: str,
        *,
        decoder: RevertDecoder | None = None,
        timeout: float = 60.0,
        gas_margin: float = 1.2,
        poll_latency: float = 0.05,
    ) -> None:
        self.w3 = w3
        self.account: LocalAccount = Account.from_key(private_key)
        self.address = self.account.address
        self.decoder = decoder or RevertDecoder([])
        self.timeout = timeout
        self.gas_margin = gas_margin
        self.poll_latency = poll_latency
        self._lock = threading.Lock()
        self._next_nonce: int | None = None
        self._chain_id: int | None = None

    def __repr__(self) -> str:  # never show the key
        return f"TxSender({self.address})"

    @property
    def endpoint(self) -> str:
        return str(getattr(self.w3.provider, "endpoint_uri", "") or "the chain")

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    def resync(self) -> None:
        """Forget the cached nonce: the next send asks the node (after a chain revert, or another sender)."""
        with self._lock:
            self._next_nonce = None

    def fees(self) -> Fees:
        """EIP-1559 fees: twice the latest base fee plus the node's suggested tip, so a tx survives a few full
        blocks of base-fee growth."""
        block = self.w3.eth.get_block("latest")
        base = int(block.get("baseFeePerGas", 0) or 0)
        try:
            tip = int(self.w3.eth.max_priority_fee)
        except (Web3RPCError, ValueError):
            tip = 1_000_000_000
        return Fees(max_fee_per_gas=2 * base + tip, max_priority_fee_per_gas=tip)

    def _revert(self, exc: ContractLogicError) -> ContractRevert:
        return self.decoder.decode(exc.data, exc.message or "")

    def estimate(self, fn: Transactable) -> int:
        # At "pending", not "latest": on an idle chain the latest block's timestamp is old, so a call that a
        # window ended *by time* made possible (a reveal, a finalization, a carry-over) would revert in the
        # estimate and never be sent, although the block it is mined in has the current time.
        try:
            return int(fn.estimate_gas({"from": self.address}, block_identifier="pending"))
        except ContractLogicError as exc:
            raise self._revert(exc) from None
        except Web3RPCError as exc:  # not a revert: the node cannot run it at all (funds, code size, …)
            raise TxRejected(_rpc_message(exc)) from None

    def call(self, fn: Any) -> Any:
        try:
            return fn.call({"from": self.address}, block_identifier="pending")
        except ContractLogicError as exc:
            raise self._revert(exc) from None

    def send(self, fn: Transactable, *, gas: int | None = None) -> TxReceipt:
        """Estimate (a revert raises its named exception before any nonce is used), sign, send, await the receipt."""
        return self.wait(self.submit(fn, gas=gas))

    def submit(self, fn: Transactable, *, gas: int | None = None) -> bytes:
        """Estimate, sign and hand the transaction to the node; returns its hash without waiting."""
        gas_limit = gas if gas is not None else int(self.estimate(fn) * self.gas_margin) + 10_000
        return self._sign_and_send(lambda nonce, fees: self._build(fn, nonce, fees, gas_limit))

    def deploy(self, constructor: Transactable) -> tuple[str, TxReceipt]:
        """Deploy a contract; returns its address and the receipt."""
        receipt = self.send(constructor)
        address = receipt.get("contractAddress")
        if not address:
            raise ChainError("the deployment was mined but created no contract")
        return str(address), receipt

    def _build(self, fn: Transactable, nonce: int, fees: Fees, gas: int) -> TxParams:
        params: TxParams = {
            "from": self.address,
            "nonce": Nonce(nonce),
            "gas": gas,
            "maxFeePerGas": Wei(fees.max_fee_per_gas),
            "maxPriorityFeePerGas": Wei(fees.max_priority_fee_per_gas),
            "chainId": self.chain_id,
        }
        return fn.build_transaction(params)

    def _sign_and_send(self, build: Callable[[int, Fees], TxParams], attempts: int = 3) -> bytes:
        fees = self.fees()
        for attempt in range(attempts):
            with self._lock:
                if self._next_nonce is None:
                    self._next_nonce = int(self.w3.eth.get_transaction_count(self.address, "pending"))
                nonce = self._next_nonce
                signed = self.account.sign_transaction(cast(dict[str, Any], build(nonce, fees)))
                try:
                    tx_hash = bytes(self.w3.eth.send_raw_transaction(signed.raw_transaction))
                except Web3RPCError as exc:
                    text = str(exc).lower()
                    self._next_nonce = None
                    if any(marker in text for marker in _NONCE_ERRORS) and attempt + 1 < attempts:
                        log.info("nonce %d of %s was stale (%s); resynchronising", nonce, self.address, text)
                        continue
                    raise TxRejected(_rpc_message(exc)) from None
                except OSError as exc:
                    # The node may or may not have the transaction: ask it for the nonce next time.
                    self._next_nonce = None
                    raise ServiceUnavailable("chain RPC", self.endpoint, str(exc)) from None
                self._next_nonce = nonce + 1
                return tx_hash
        raise TxRejected("could not find a usable nonce")  # pragma: no cover - loop always returns or raises

    def wait(self, tx_hash: bytes) -> TxReceipt:
        """Await the receipt (``TxTimeout`` after ``timeout`` s); a mined revert raises its named exception."""
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(
                Hash32(tx_hash), timeout=self.timeout, poll_latency=self.poll_latency
            )
        except TimeExhausted:
            raise TxTimeout("0x" + tx_hash.hex(), self.timeout) from None
        if receipt["status"] != 1:
            raise self.explain_failure(receipt)
        return receipt

    def explain_failure(self, receipt: TxReceipt) -> ContractRevert:
        """The named exception of a mined-but-reverted transaction.

        A receipt carries no revert data. The node is first asked for the transaction's own execution
        (``debug_traceTransaction`` with the call tracer: anvil and geth answer it): its output is the exact revert
        data, and its error says whether it ran out of gas. A node without the debug API (most public endpoints)
        gets the transaction (same sender, target, input, value and gas limit) replayed with ``eth_call`` on the
        state its block left, where a transaction mined before it in the same block (a conflicting submission, a
        vote that closed the round) has taken effect, then on the state before its block. Only when all of that
        answers nothing is the failure reported without a name, with the gas used beside the limit and what the
        node said."""
        block = int(receipt["blockNumber"])
        used = int(receipt["gasUsed"])
        tx_hash = bytes(receipt["transactionHash"])
        traced = self._trace(tx_hash)
        if traced is not None and traced.data:
            return self.decoder.decode(traced.data)
        tx = self.w3.eth.get_transaction(receipt["transactionHash"])
        limit = int(tx["gas"])
        gas = f"it used {used} of its {limit} gas limit"
        if traced is not None and traced.error == "out of gas":
            return UnknownRevert(
                b"", f"in block {block}, without revert data (out of gas? {gas}: the node's trace says so)"
            )
        call: TxParams = {"from": tx["from"], "data": tx["input"], "value": tx["value"], "gas": tx["gas"]}
        if tx.get("to"):
            call["to"] = tx["to"]
        notes: list[str] = []
        for at in (block, block - 1):
            data = self._replay(call, at, notes)
            if data is not None:
                return self.decoder.decode(data)
        if traced is not None:  # the trace ran it: not gas, a revert that gave no data (a bare `revert()`)
            notes.insert(0, f"the node's trace says {traced.error or 'nothing more'}")
            why = gas
        else:
            why = f"out of gas? {gas}"
        return UnknownRevert(b"", f"in block {block}, without revert data ({'; '.join([why, *notes])})")

    def _trace(self, tx_hash: bytes) -> _Trace | None:
        """The mined transaction's own revert data and error from the node's call tracer; None when the node has
        no debug API (or answers something else)."""
        try:
            reply = self.w3.provider.make_request(
                "debug_traceTransaction",  # type: ignore[arg-type]
                ["0x" + tx_hash.hex(), {"tracer": "callTracer", "tracerConfig": {"onlyTopCall": True}}],
            )
        except (Web3RPCError, ValueError) as exc:
            log.debug("debug_traceTransaction failed: %s", exc)
            return None
        result = reply.get("result") if isinstance(reply, dict) else None
        if not isinstance(result, dict):
            return None
        output = result.get("output")
        # The node is not trusted: revert data beyond any error our contracts declare is cut, not parsed.
        text = output[: 2 + 2 * MAX_REVERT_BYTES] if isinstance(output, str) else ""
        error = result.get("error")
        return _Trace(revert_bytes(text), str(error)[:200] if isinstance(error, str) else "")

    def _replay(self, call: TxParams, block: int, notes: list[str] | None = None) -> bytes | None:
        """The revert data of ``call`` run at ``block``: None when it succeeds or reverts without data (what the
        node said then goes to ``notes``)."""
        try:
            self.w3.eth.call(call, block_identifier=block)
        except ContractLogicError as exc:
            data = revert_bytes(exc.data)
            if not data and notes is not None:
                notes.append(f"its replay at block {block} reverted without data")
            return data or None
        except Web3RPCError as exc:  # out of gas, or a node that cannot replay that far back
            log.debug("replaying a reverted transaction at block %d failed: %s", block, exc)
            if notes is not None:
                notes.append(f"its replay at block {block} failed: {_rpc_message(exc)[:200]}")
            return None
        if notes is not None:
            notes.append(f"its replay at block {block} succeeds")
        return None


MAX_REVERT_BYTES = 16 * 1024
"""Revert data longer than this from a node's trace is cut before decoding (our errors are a few words)."""


@dataclass(frozen=True)
class _Trace:
    data: bytes
    error: str


def _rpc_message(exc: Web3RPCError) -> str:
    """The node's own message from a JSON-RPC error (web3.py wraps it in a repr of the whole error object)."""
    response = getattr(exc, "rpc_response", None)
    if isinstance(response, dict) and isinstance(response.get("error"), dict):
        return str(response["error"].get("message") or exc)
    return str(exc)


def wait_for_chain(url: str, timeout: float = 10.0) -> Web3:
    """A Web3 on ``url`` that has answered once (bounded wait, for freshly started nodes)."""
    from web3 import HTTPProvider, Web3

    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 30}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            _ = w3.eth.chain_id
            return w3
        except Exception as exc:
            if time.monotonic() > deadline:
                raise ServiceUnavailable("chain RPC", url, str(exc) or type(exc).__name__) from None
            time.sleep(0.1)
