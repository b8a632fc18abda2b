"""`ledger.rewards` against the real contracts: rounds with partial submissions, split and partial ballots,
silent validators, empty outcomes and reputations driven to both bounds; the mirror must predict every
``RoundFinalized`` settlement, every reputation and every token balance exactly. Plus the mirror's own rules.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from ledger.chain.types import Ballot, Role, SubmissionInfo
from ledger.rewards import (
    DEFAULT_CONSTANTS,
    RewardBook,
    RewardConstants,
    SettlementError,
    quorum_outcome,
)
from tests.support.chain import Consortium, advance_time, fake_digest

WINDOW = 3600
BUDGET = 999_999_999_999_999_937  # odd, so every division rounds


# --- the mirror alone -----------------------------------------------------------------------------------------


def test_contributor_rewards_split_by_samples_times_reputation_before_the_round() -> None:
    book = RewardBook()
    book.reputations[("0xb", Role.CONTRIBUTOR)] = 2_000
    subs = [SubmissionInfo("0xA", 100), SubmissionInfo("0xB", 300), SubmissionInfo("0xC", 50)]
    ballots = [Ballot.unanimous("0xV1", [True, True, False]), Ballot.unanimous("0xV2", [True, True, False])]
    result = book.settle(subs, ballots, quorum=2, budget=1_000)
    assert result.outcome == 0b011
    contributors = result.settlements[:3]
    # share 900 over weights 100*5000 and 300*2000: 900*500000//1100000 = 409, 900*600000//1100000 = 490
    assert [s.reward for s in contributors] == [409, 490, 0]
    assert [s.reputation for s in contributors] == [5_500, 2_500, 3_500]
    validators = result.settlements[3:]
    assert [(s.reputation, s.reward) for s in validators] == [(5_200, 50), (5_200, 50)]
    assert result.minted == 999  # one unit of dust is never minted
    assert book.balance("0xa") == 409


def test_a_validator_that_disagrees_or_skips_an_update_earns_nothing() -> None:
    book = RewardBook()
    subs = [SubmissionInfo("0xA", 10), SubmissionInfo("0xB", 10)]
    ballots = [
        Ballot.unanimous("0xV1", [True, False]),
        Ballot.unanimous("0xV2", [True, True]),  # disagrees on update 1
        Ballot(indexes=0b01, accepts=0b01, validator="0xV3"),  # agrees, but skipped update 1
        Ballot(indexes=0, accepts=0, validator="0xV4"),  # silent: no settlement at all
        Ballot.unanimous("0xV5", [True, False]),
    ]
    result = book.settle(subs, ballots, quorum=2, budget=10_000)
    assert result.outcome == 0b01
    validators = {s.account: s for s in result.settlements if s.role is Role.VALIDATOR}
    assert set(validators) == {"0xV1", "0xV2", "0xV3", "0xV5"}
    assert (validators["0xV2"].reputation, validators["0xV2"].reward) == (4_000, 0)
    assert (validators["0xV3"].reputation, validators["0xV3"].reward) == (5_200, 0)
    assert validators["0xV1"].reward == validators["0xV5"].reward == 500


def test_reputations_are_clamped_to_their_bounds() -> None:
    c = DEFAULT_CONSTANTS
    book = RewardBook()
    for _ in range(30):  # 5000 + 30·200 reaches the validator maximum too
        book.settle(
            [SubmissionInfo("0xgood", 1), SubmissionInfo("0xbad", 1)],
            [Ballot.unanimous("0xV", [True, False])],
            quorum=1,
            budget=100,
        )
    assert book.reputation("0xGOOD") == c.reputation_max
    assert book.reputation("0xbad") == c.reputation_min
    assert book.reputation("0xV", Role.VALIDATOR) == c.reputation_max
    assert book.reputation("0xnobody") == 0


def test_quorum_outcome_and_refusals() -> None:
    assert quorum_outcome([0b110, 0b011, 0b010], 2, 3) == 0b010
    assert quorum_outcome([0b111, 0b111], 3, 3) == 0
    with pytest.raises(SettlementError):
        quorum_outcome([0b1], 0, 1)
    with pytest.raises(SettlementError):
        RewardBook().settle([SubmissionInfo("0xA", 1)], [Ballot(0b10, 0, "0xV")], quorum=1, budget=1)
    with pytest.raises(SettlementError):
        RewardBook().settle([SubmissionInfo("0xA", 0)], [], quorum=1, budget=1)
    with pytest.raises(SettlementError, match="whose ballot"):
        RewardBook().settle([SubmissionInfo("0xA", 1)], [Ballot(0b1, 0b1)], quorum=1, budget=1)


def test_nothing_accepted_mints_nothing_to_contributors() -> None:
    result = RewardBook().settle(
        [SubmissionInfo("0xA", 10)], [Ballot.unanimous("0xV", [False])], quorum=1, budget=1_000
    )
    assert result.outcome == 0
    assert result.rewards(Role.CONTRIBUTOR) == {"0xA": 0}
    assert result.rewards(Role.VALIDATOR) == {"0xV": 100}


# --- differential: the mirror against MeshLedger on anvil -----------------------------------------------------


def _round_plan(rng: random.Random, r: int, contributors: int, validators: int) -> dict[str, Any]:
    """Who submits, with how many samples, and each validator's ballot for round ``r`` (1-based)."""
    submitters = [0, 1, 4] + [i for i in (2, 3) if rng.random() < 0.7]
    if r == 5:
        submitters = [0, 4]  # a round nobody else joins: the window has to run out
    samples = {i: rng.randrange(1, 2_000) for i in submitters}
    # contributor 0 always accepted (reaches the maximum), 4 always rejected (reaches the minimum)
    truth = {i: (i == 0) or (i != 4 and rng.random() < 0.6) for i in submitters}
    if r == 7:
        truth = dict.fromkeys(submitters, False)  # nothing accepted: the model carries over
    ballots: list[tuple[set[int], set[int]]] = []  # per validator: (voted positions, accepted positions)
    for v in range(validators):
        positions = set(range(len(submitters)))
        voted = set(positions)
        if v == 2 and rng.random() < 0.4:
            voted = set(rng.sample(sorted(positions), k=rng.randrange(0, len(positions))))  # partial/silent
        accepted = set()
        for k in voted:
            ok = truth[submitters[k]]
            if v == 1 and submitters[k] != 0 and rng.random() < 0.25:
                ok = not ok  # a sloppy validator (never on contributor 0, so it climbs to the maximum)
            if ok:
                accepted.add(k)
        ballots.append((voted, accepted))
    return {"submitters": submitters, "samples": samples, "ballots": ballots}


@pytest.mark.anvil
def test_the_mirror_predicts_every_settlement_reputation_and_balance(
    w3: Any, dev_keys: list[tuple[str, str]]
) -> None:
    quorum = 2
    h = Consortium.deploy(
        w3,
        dev_keys,
        validators=3,
        contributors=5,
        quorum=quorum,
        submission_window=WINDOW,
        vote_window=WINDOW,
        reward=BUDGET,
        genesis=fake_digest("g"),
    )
    task = h.task_id
    reader = h.client()
    assert RewardConstants.from_chain(reader.constants()) == DEFAULT_CONSTANTS
    book = RewardBook()
    for address, _ in h.contributors:
        book.grant(address, Role.CONTRIBUTOR)
    for address, _ in h.validators:
        book.grant(address, Role.VALIDATOR)
    token = reader.token_client()
    rng = random.Random(9)
    rounds = 16
    for r in range(1, rounds + 1):
        plan = _round_plan(rng, r, len(h.contributors), len(h.validators))
        submitters: list[int] = plan["submitters"]
        for k, i in enumerate(submitters):
            key = h.contributors[i][1]
            index = h.client(key).submit_update(task, r, fake_digest(task, r, i), plan["samples"][i]).value
            assert index == k
        # The mirror is fed what the chain recorded: the submissions' logs and the validators' ballots.
        logged = reader.submissions(task, r)
        assert [s.contributor for s in logged] == [h.contributors[i][0] for i in submitters]
        subs = [s.info for s in logged]
        if len(submitters) < len(h.contributors):
            advance_time(w3, WINDOW)  # submissions close when the window runs out
        ballots = []
        for v, (voted, accepted) in enumerate(plan["ballots"]):
            address, key = h.validators[v]
            indexes = sum(1 << k for k in voted)
            accepts = sum(1 << k for k in accepted)
            if indexes:
                reasons = bytes(0 if k in accepted else 18 for k in sorted(voted))
                h.client(key).vote_batch(task, r, indexes, accepts, reasons)
            ballots.append(reader.ballot(task, r, address))
            assert ballots[-1] == Ballot(indexes, accepts, address)
        if not reader.round_view(task, r).finalizable:
            advance_time(w3, WINDOW)  # someone did not vote on everything: wait out the vote window
        predicted = book.settle(subs, ballots, quorum=quorum, budget=BUDGET)
        tally = reader.tally(task, r)
        assert tally.accepted_bitmap == predicted.outcome
        aggregate = fake_digest("agg", r) if predicted.outcome else reader.base_digest(task, r)
        result = h.client(h.aggregator[1]).finalize_round(task, r, aggregate, predicted.outcome)
        (event,) = [e for e in result.events if e.name == "RoundFinalized"]
        assert event.args["acceptedBitmap"] == predicted.outcome
        assert event.args["settlements"] == [s.to_event() for s in predicted.settlements], f"round {r}"
        (final,) = reader.finalizations(task, r)
        assert (final.accepted_bitmap, final.settlements) == (predicted.outcome, predicted.settlements)

    for address, _ in [*h.contributors, *h.validators]:
        rep = reader.reputation(address)
        assert (rep.contributor, rep.validator) == (
            book.reputation(address, Role.CONTRIBUTOR),
            book.reputation(address, Role.VALIDATOR),
        )
        assert token.balance_of(address) == book.balance(address)
    assert token.total_supply() == sum(book.paid.values())
    # the scenario reached both bounds and settled an empty round, so the clamps and that path were compared
    assert book.reputation(h.contributors[0][0]) == DEFAULT_CONSTANTS.reputation_max
    assert book.reputation(h.contributors[4][0]) == DEFAULT_CONSTANTS.reputation_min
