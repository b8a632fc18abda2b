"""The worker's view of the ledger contract: the few reads and two writes the pipeline needs, typed.

:class:`ChainPort` is the interface the tasks and the watcher use; :class:`LedgerChainPort` implements it over
ledger's :class:`~ledger.chain.client.LedgerClient` (its sender, nonce manager and named reverts). Views are read at the ``pending`` block by
default: a round's phase depends on ``block.timestamp``, and on an idle chain (anvil mines only on demand) the
``latest`` block can be minutes old, so "pending" is what the next transaction will actually see.

Infrastructure failures become :class:`~worker.errors.ChainFault` (retried); reverts stay named
:class:`~ledger.chain.revert.ContractRevert` exceptions whose ``error_name`` the tasks inspect (an
``MeshLedger_AlreadyVoted`` on a retried vote means the job is done, not failed).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ledger.chain.types import Phase
from worker.errors import ChainFault

if TYPE_CHECKING:
    from ledger.chain.client import LedgerClient
    from ledger.settings import Settings


@dataclass(frozen=True)
class TaskInfo:
    task_id: int
    rule: int
    rule_param: int
    quorum: int
    submission_window: int
    vote_window: int
    genesis_digest: bytes
    current_round: int


@dataclass(frozen=True)
class RoundInfo:
    task_id: int
    round: int
    phase: Phase
    base_digest: bytes
    aggregate_digest: bytes
    opened_at: int
    submission_end: int
    vote_end: int
    submission_count: int
    finalizable: bool

    @property
    def all_indexes(self) -> int:
        """Bitmap with a bit for every submitted update."""
        return (1 << self.submission_count) - 1


@dataclass(frozen=True)
class Submission:
    index: int
    contributor: str
    digest: bytes
    num_samples: int


@dataclass(frozen=True)
class Ballot:
    indexes: int
    accepts: int


@dataclass(frozen=True)
class Roles:
    contributor: bool
    validator: bool
    aggregator: bool

    def has(self, role: str) -> bool:
        return bool(getattr(self, role))


@dataclass(frozen=True)
class Finalization:
    task_id: int
    round: int
    aggregator: str
    aggregate_digest: bytes
    accepted_bitmap: int
    tx_hash: str
    block_number: int


class ChainPort(Protocol):
    """What the worker reads and writes on the ledger (see the module docstring)."""

    @property
    def address(self) -> str | None:
        """The signer's address, or None for a read-only port."""
        ...

    def task(self, task_id: int) -> TaskInfo: ...

    def round_view(self, task_id: int, round_: int) -> RoundInfo: ...

    def submissions(self, task_id: int, round_: int) -> list[Submission]:
        """Every update submitted to the live round ``round_``, by index (all ``submission_count`` of them)."""
        ...

    def ballot(self, task_id: int, round_: int, validator: str) -> Ballot: ...

    def tally(self, task_id: int, round_: int) -> int:
        """The quorum outcome of the votes so far: the accepted bitmap finalization must pass."""
        ...

    def validators(self) -> list[str]: ...

    def roles(self, address: str) -> Roles: ...

    def vote_batch(self, task_id: int, round_: int, indexes: int, accepts: int, reasons: bytes) -> str: ...

    def finalize_round(self, task_id: int, round_: int, aggregate_digest: bytes, accepted: int) -> str: ...

    def finalizations(self, task_id: int, round_: int | None = None) -> list[Finalization]: ...


# --- implementation over ledger's LedgerClient ---------------------------------------------------------------


def _transient_errors() -> tuple[type[BaseException], ...]:
    import requests
    from web3.exceptions import ProviderConnectionError, TimeExhausted, Web3RPCError

    from ledger.chain.sender import TxRejected, TxTimeout
    from ledger.errors import ServiceUnavailable

    return (
        requests.exceptions.RequestException,
        ProviderConnectionError,
        TimeExhausted,
        TxTimeout,
        TxRejected,
        Web3RPCError,
        ServiceUnavailable,
        ConnectionError,
        TimeoutError,
    )


@contextmanager
def _guard(what: str) -> Iterator[None]:
    """Turn infrastructure failures into ChainFault; reverts and our own errors pass through."""
    from ledger.chain.revert import ContractRevert

    try:
        yield
    except ContractRevert:
        raise
    except _transient_errors() as exc:
        raise ChainFault(f"{what}: {type(exc).__name__}: {exc}") from None


class LedgerChainPort:
    """:class:`ChainPort` over :class:`ledger.chain.client.LedgerClient` (one per process: it holds an HTTP
    session and the signer's nonce)."""

    def __init__(
        self, client: LedgerClient, *, view_block: str = "pending", from_block: int | None = None
    ) -> None:
        self.client = client
        self.view_block = view_block
        deployment = getattr(client, "deployment", None)
        self.from_block = from_block if from_block is not None else int(getattr(deployment, "block", 0) or 0)
        self._opened_block: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, key: str | None = None) -> LedgerChainPort:
        from ledger.chain.client import LedgerClient

        with _guard("connect"):
            client = LedgerClient.from_settings(settings, key=key)
        return cls(client)

    @property
    def address(self) -> str | None:
        sender = self.client.sender
        return None if sender is None else str(sender.address)

    # --- reads ------------------------------------------------------------------------------------------
    def _view(self, name: str, *args: Any) -> Any:
        from web3.exceptions import ContractLogicError

        fn = getattr(self.client.contract.functions, name)(*args)
        with _guard(name):
            try:
                return fn.call(block_identifier=self.view_block)
            except ContractLogicError as exc:
                raise self.client.decoder.decode(exc.data, exc.message or "") from None

    def _checksum(self, address: str) -> str:
        from eth_utils.address import to_checksum_address

        return str(to_checksum_address(address))

    def task(self, task_id: int) -> TaskInfo:
        params, current = self._view("task", task_id)
        _spec, genesis, rule, rule_param, quorum, sub_window, vote_window, _reward = params
        return TaskInfo(
            task_id=task_id,
            rule=int(rule),
            rule_param=int(rule_param),
            quorum=int(quorum),
            submission_window=int(sub_window),
            vote_window=int(vote_window),
            genesis_digest=bytes(genesis),
            current_round=int(current),
        )

    def round_view(self, task_id: int, round_: int) -> RoundInfo:
        phase, base, agg, opened, sub_end, vote_end, count, finalizable = self._view(
            "roundView", task_id, round_
        )
        return RoundInfo(
            task_id=task_id,
            round=round_,
            phase=Phase(int(phase)),
            base_digest=bytes(base),
            aggregate_digest=bytes(agg),
            opened_at=int(opened),
            submission_end=int(sub_end),
            vote_end=int(vote_end),
            submission_count=int(count),
            finalizable=bool(finalizable),
        )

    def ballot(self, task_id: int, round_: int, validator: str) -> Ballot:
        indexes, accepts = self._view("ballot", task_id, round_, self._checksum(validator))
        return Ballot(int(indexes), int(accepts))

    def tally(self, task_id: int, round_: int) -> int:
        accepted, _votes = self._view("tally", task_id, round_)
        return int(accepted)

    def validators(self) -> list[str]:
        return [self._checksum(a) for a in self._view("validators")]

    def roles(self, address: str) -> Roles:
        # AccountView(nonce, contributorRep, validatorRep, memberNumber, contributor, validator, aggregator)
        view = self._view("account", self._checksum(address))
        return Roles(contributor=bool(view[4]), validator=bool(view[5]), aggregator=bool(view[6]))

    def _logs(self, event: str, from_block: int, **filters: Any) -> list[Any]:
        with _guard(f"{event} logs"):
            return list(
                getattr(self.client.contract.events, event)().get_logs(
                    from_block=from_block, argument_filters=filters
                )
            )

    def _round_opened_block(self, task_id: int, round_: int) -> int:
        key = (task_id, round_)
        with self._lock:
            if key in self._opened_block:
                return self._opened_block[key]
        logs = self._logs("RoundOpened", self.from_block, taskId=task_id, round=round_)
        if not logs:
            raise ChainFault(f"no RoundOpened log for task {task_id} round {round_} yet")
        block = int(logs[0]["blockNumber"])
        with self._lock:
            self._opened_block[key] = block
        return block

    def submissions(self, task_id: int, round_: int) -> list[Submission]:
        start = self._round_opened_block(task_id, round_)
        by_index: dict[int, Submission] = {}
        for log in self._logs("UpdateSubmitted", start, taskId=task_id, round=round_):
            a = log["args"]
            sub = Submission(
                index=int(a["index"]),
                contributor=self._checksum(str(a["contributor"])),
                digest=bytes(a["digest"]),
                num_samples=int(a["numSamples"]),
            )
            by_index[sub.index] = sub
        return [by_index[i] for i in sorted(by_index)]

    def finalizations(self, task_id: int, round_: int | None = None) -> list[Finalization]:
        filters: dict[str, Any] = {"taskId": task_id}
        if round_ is not None:
            filters["round"] = round_
        return [
            Finalization(
                task_id=int(log["args"]["taskId"]),
                round=int(log["args"]["round"]),
                aggregator=self._checksum(str(log["args"]["aggregator"])),
                aggregate_digest=bytes(log["args"]["aggregateDigest"]),
                accepted_bitmap=int(log["args"]["acceptedBitmap"]),
                tx_hash="0x" + bytes(log["transactionHash"]).hex(),
                block_number=int(log["blockNumber"]),
            )
            for log in self._logs("RoundFinalized", self.from_block, **filters)
        ]

    # --- writes -----------------------------------------------------------------------------------------
    def vote_batch(self, task_id: int, round_: int, indexes: int, accepts: int, reasons: bytes) -> str:
        with _guard("voteBatch"):
            return str(self.client.vote_batch(task_id, round_, indexes, accepts, reasons).tx_hash)

    def finalize_round(self, task_id: int, round_: int, aggregate_digest: bytes, accepted: int) -> str:
        with _guard("finalizeRound"):
            return str(self.client.finalize_round(task_id, round_, aggregate_digest, accepted).tx_hash)
