"""The worker's handle on the ledger: a :class:`~ledger.chain.client.LedgerClient` whose infrastructure failures
become the worker's retried :class:`~worker.errors.ChainFault`.

Everything comes back as the values of :mod:`ledger.chain.types` (the one vocabulary of the contract); this module
only picks the block views are read at and sorts failures. Views are read at the ``pending`` block: a round's
phase depends on ``block.timestamp``, and on an idle chain (anvil mines only on demand) the ``latest`` block can be
minutes old, so "pending" is what the next transaction will actually see.

Reverts are not infrastructure: they pass through as the named exceptions of :mod:`ledger.chain.errors`, which the
jobs catch by class (an ``AlreadyCommitted`` on a retried commit means the job is done, not failed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from worker.errors import ChainFault

if TYPE_CHECKING:
    from ledger.chain.client import LedgerClient
    from ledger.chain.types import (
        AccountView,
        Clock,
        Finalization,
        RoundView,
        Submission,
        Tally,
        Task,
        TxResult,
        ValidatorSet,
    )
    from ledger.settings import Settings

R = TypeVar("R")


def _transient_errors() -> tuple[type[BaseException], ...]:
    import requests
    from web3.exceptions import ProviderConnectionError, TimeExhausted, Web3RPCError

    from ledger.chain.client import LogsBehind
    from ledger.chain.sender import TxRejected, TxTimeout
    from ledger.errors import ServiceUnavailable

    return (
        requests.exceptions.RequestException,
        ProviderConnectionError,
        TimeExhausted,
        TxTimeout,
        TxRejected,
        LogsBehind,
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


class WorkerChain:
    """The reads and writes of the worker's jobs and watcher over one LedgerClient (one per process: it holds an
    HTTP session and the signer's nonces)."""

    def __init__(self, client: LedgerClient, *, view_block: int | str = "pending") -> None:
        self.client = client
        self.view_block = view_block

    @classmethod
    def from_settings(cls, settings: Settings, key: str | None = None) -> WorkerChain:
        """The configured ledger, signing with ``key`` (None: the settings' key, if any)."""
        from ledger.chain.client import LedgerClient

        with _guard("connect"):
            client = LedgerClient.from_settings(settings, key=key)
        return cls(client)

    @property
    def address(self) -> str | None:
        """The signer's address, or None for a read-only handle."""
        return self.client.sender_address

    def _read(self, what: str, thunk: Callable[[], R]) -> R:
        with _guard(what):
            return thunk()

    # --- views (at ``view_block``) ----------------------------------------------------------------------
    def task(self, task_id: int) -> Task:
        return self._read("task", lambda: self.client.task(task_id, block=self.view_block))

    def round_view(self, task_id: int, round_: int) -> RoundView:
        return self._read("roundView", lambda: self.client.round_view(task_id, round_, block=self.view_block))

    def validator_set(self, task_id: int, round_: int) -> ValidatorSet:
        """The live round's frozen validator set, with who has committed and revealed."""
        return self._read(
            "validatorSet", lambda: self.client.validator_set(task_id, round_, block=self.view_block)
        )

    def tally(self, task_id: int, round_: int) -> Tally:
        """The consensus of each update from the reveals so far and the accepted bitmap finalization records."""
        return self._read("tally", lambda: self.client.tally(task_id, round_, block=self.view_block))

    def clock(self) -> Clock:
        """Ledger time (round deadlines are in it, not in wall time: a pause stops it)."""
        return self._read("clock", lambda: self.client.clock(block=self.view_block))

    def chain_id(self) -> int:
        return self._read("chainId", self.client.chain_id)

    def validators(self) -> list[str]:
        return self._read("validators", lambda: self.client.validators(block=self.view_block))

    def account(self, address: str) -> AccountView:
        return self._read("account", lambda: self.client.account(address, block=self.view_block))

    # --- logs -------------------------------------------------------------------------------------------
    def submissions(self, task_id: int, round_: int) -> list[Submission]:
        """Every update submitted to the live round so far, by index."""
        return self._read("UpdateSubmitted logs", lambda: self.client.submissions(task_id, round_))

    def finalizations(self, task_id: int, round_: int | None = None) -> list[Finalization]:
        return self._read("RoundFinalized logs", lambda: self.client.finalizations(task_id, round_))

    # --- writes -----------------------------------------------------------------------------------------
    def commit_scores(self, task_id: int, round_: int, commitment: bytes) -> TxResult[None]:
        return self._read("commitScores", lambda: self.client.commit_scores(task_id, round_, commitment))

    def reveal_scores(
        self, task_id: int, round_: int, scores: Sequence[int], reasons: Sequence[int], salt: bytes
    ) -> TxResult[None]:
        return self._read(
            "revealScores", lambda: self.client.reveal_scores(task_id, round_, scores, reasons, salt)
        )

    def finalize_round(self, task_id: int, round_: int, aggregate_digest: bytes) -> TxResult[None]:
        return self._read(
            "finalizeRound", lambda: self.client.finalize_round(task_id, round_, aggregate_digest)
        )

    def finalize_carry_over(self, task_id: int, round_: int) -> TxResult[None]:
        return self._read("finalizeCarryOver", lambda: self.client.finalize_carry_over(task_id, round_))
