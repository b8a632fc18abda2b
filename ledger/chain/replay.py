"""Recompute every finalized round's settlement from the logs alone, and compare it with what the chain recorded.

What an auditor needs to trust settlement without trusting the contract's arithmetic: each round's inputs come from
its logs (``RoundOpened``: the validator set and its frozen weights; ``UpdateSubmitted``: the contributors in index
order; ``ScoresRevealed``: who revealed what; the task's quorum and budget from ``task()``), and
:class:`~ledger.consensus.ConsensusBook` settles them in chain order, across every task (reputations are per
account, shared by tasks). A round whose recorded ``RoundFinalized`` differs from the prediction is reported with
both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ledger.chain.types import Finalization, Role, TaskParams
from ledger.consensus import ConsensusBook, ConsensusConstants, RoundSettlement

if TYPE_CHECKING:
    from ledger.chain.client import LedgerClient


@dataclass(frozen=True)
class RoundInputs:
    """What settling round ``round`` of ``task_id`` takes, as its logs record it."""

    task_id: int
    round: int
    contributors: tuple[str, ...]
    validators: tuple[str, ...]
    weights: tuple[int, ...]
    scores: tuple[tuple[int, ...] | None, ...]
    """Per set member (set order): its revealed scores, or None when it did not reveal."""
    quorum: int
    budget: int
    carried_over: bool


@dataclass(frozen=True)
class SettlementCheck:
    """One finalized round: what the chain recorded and what the mirror predicts from the round's logs."""

    inputs: RoundInputs
    recorded: Finalization
    predicted: RoundSettlement

    @property
    def matches(self) -> bool:
        return (
            self.recorded.settlements == self.predicted.settlements
            and self.recorded.accepted_bitmap == self.predicted.accepted_bitmap
        )


def round_inputs(client: LedgerClient, final: Finalization, params: TaskParams) -> RoundInputs:
    """The inputs of the round ``final`` ended, read from its logs."""
    (opened,) = client.round_openings(final.task_id, final.round)
    revealed = {r.validator: r.scores for r in client.reveals(final.task_id, final.round)}
    subs = client.submissions(final.task_id, final.round)
    return RoundInputs(
        task_id=final.task_id,
        round=final.round,
        contributors=tuple(s.contributor for s in subs),
        validators=opened.validators,
        weights=opened.weights,
        scores=tuple(revealed.get(v) for v in opened.validators),
        quorum=params.quorum,
        budget=params.reward_per_round,
        carried_over=final.carried_over,
    )


def replay_settlements(
    client: LedgerClient,
    *,
    constants: ConsensusConstants | None = None,
    granted: Sequence[tuple[str, Role]] = (),
) -> list[SettlementCheck]:
    """Every finalized round of every task since the deployment, settled by the mirror in chain order.

    ``constants`` default to the contract's own; ``granted`` lists (account, role) pairs to start at the starting
    reputation before the first round (accounts first seen in a round are granted then, which is the same)."""
    book = ConsensusBook(constants or ConsensusConstants.from_chain(client.constants()))
    for account, role in granted:
        book.grant(account, role)
    params: dict[int, TaskParams] = {}
    out: list[SettlementCheck] = []
    for final in client.finalizations(None):
        if final.task_id not in params:
            params[final.task_id] = client.task(final.task_id).params
        inputs = round_inputs(client, final, params[final.task_id])
        predicted = book.settle(
            inputs.contributors,
            inputs.validators,
            inputs.weights,
            inputs.scores,
            quorum=inputs.quorum,
            budget=inputs.budget,
            carried_over=inputs.carried_over,
        )
        out.append(SettlementCheck(inputs, final, predicted))
    return out
