"""Where FedAvg's weights come from: the consensus score of each accepted update (protocol R5).

The aggregator (from ``tally``, before it finalizes) and an auditor replaying a finalized round (from the
``RoundFinalized`` settlements: ``Finalization.consensus`` and ``accepted_bitmap``) call :func:`consensus_weights`
on the same numbers, so they weigh alike and write the same bytes. A weight is an integer in 1..10,000: the
contract accepts an update only with a consensus above 0, and no score exceeds SCORE_ONE, so nothing a member
claims (a sample count included) can change a weight or make the rule refuse its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.aggregation.errors import BadWeight
from ledger.aggregation.rules import MAX_WEIGHT


def consensus_weights(consensus: Sequence[int], accepted_bitmap: int) -> dict[int, int]:
    """``{update index: FedAvg weight}`` for every accepted update: its consensus score.

    ``consensus`` holds one score per update of the round, in index order; bit ``i`` of ``accepted_bitmap`` is
    set when update ``i`` was accepted. An accepted update whose consensus is not in 1..10,000 (or an accepted
    index beyond the updates) cannot come from the contract: ``BadWeight`` names it rather than aggregating."""
    if accepted_bitmap < 0:
        raise BadWeight(list(consensus), f"the accepted bitmap {accepted_bitmap} is negative")
    out: dict[int, int] = {}
    index = 0
    bitmap = accepted_bitmap
    while bitmap:
        if bitmap & 1:
            if index >= len(consensus):
                raise BadWeight(
                    list(consensus), f"update {index} is accepted, but the round has {len(consensus)} updates"
                )
            score = consensus[index]
            if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= MAX_WEIGHT:
                raise BadWeight(
                    list(consensus),
                    f"update {index} is accepted with consensus {score!r}, not in 1..{MAX_WEIGHT}",
                )
            out[index] = score
        bitmap >>= 1
        index += 1
    return out
