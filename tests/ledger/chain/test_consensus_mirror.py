"""ledger.consensus mirrors the contract: the lower weighted median and its Byzantine bound (pure), and random
rounds driven on the real MeshLedger whose every settlement, reputation and accrued reward the mirror predicts."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.chain.client import connect_web3
from ledger.chain.replay import replay_settlements
from ledger.chain.scores import REJECT, SCORE_ONE
from ledger.chain.types import Role
from ledger.consensus import (
    DEFAULT_CONSTANTS,
    ConsensusBook,
    ConsensusConstants,
    SettlementError,
    agreement,
    lower_weighted_median,
    tolerance,
    upper_weighted_median,
)
from ledger.dev.services import AnvilProcess
from tests.support.chain import Consortium, chain_snapshot

scores_st = st.integers(-SCORE_ONE, SCORE_ONE)
weights_st = st.integers(DEFAULT_CONSTANTS.reputation_min, DEFAULT_CONSTANTS.reputation_max)

# ─── the median ─────────────────────────────────────────────────────────────────────────────────────────────


def test_the_lower_weighted_median_by_hand() -> None:
    assert lower_weighted_median([5, 1, 3], [1, 1, 1]) == 3
    assert lower_weighted_median([1, 2], [1, 1]) == 1  # lower: exactly half the weight suffices
    assert lower_weighted_median([1, 2], [1, 2]) == 2
    assert lower_weighted_median([-10_000, 9_000, 8_000], [5_000, 2_600, 2_500]) == 8_000
    assert lower_weighted_median([-10_000, 9_000, 8_000], [5_100, 2_600, 2_500]) == -10_000
    assert lower_weighted_median([7, 7, 7], [0, 0, 0]) == 0  # no weight: the contract answers 0
    assert lower_weighted_median([], []) == 0
    with pytest.raises(SettlementError, match="one weight per value"):
        lower_weighted_median([1, 2], [1])


@given(st.lists(st.tuples(scores_st, weights_st), min_size=1, max_size=33))
def test_the_median_is_a_value_with_half_the_weight_on_each_side(pairs: list[tuple[int, int]]) -> None:
    values, weights = [v for v, _ in pairs], [w for _, w in pairs]
    m = lower_weighted_median(values, weights)
    total = sum(weights)
    assert m in values
    assert 2 * sum(w for v, w in pairs if v <= m) >= total
    assert 2 * sum(w for v, w in pairs if v < m) < total  # and it is the smallest such value


@given(
    honest=st.lists(st.tuples(scores_st, weights_st), min_size=1, max_size=16),
    byzantine=st.lists(st.tuples(scores_st, weights_st), max_size=16),
)
def test_a_byzantine_minority_cannot_move_the_median_outside_the_honest_scores(
    honest: list[tuple[int, int]], byzantine: list[tuple[int, int]]
) -> None:
    """docs/protocol.md R4: with Byzantine weight B < W/2 the consensus lies between two honest scores, so it is
    ≤ 0 when every honest score is, and > 0 when every honest score is."""
    h_weight = sum(w for _, w in honest)
    while byzantine and 2 * sum(w for _, w in byzantine) >= h_weight + sum(w for _, w in byzantine):
        byzantine = byzantine[:-1]  # keep the Byzantine weight a strict minority
    pairs = honest + byzantine
    m = lower_weighted_median([v for v, _ in pairs], [w for _, w in pairs])
    low, high = min(v for v, _ in honest), max(v for v, _ in honest)
    assert low <= m <= high
    if high <= 0:
        assert m <= 0
    if low > 0:
        assert m > 0


def test_agreement_is_linear_down_to_zero_at_the_tolerance() -> None:
    assert [agreement(d, 600) for d in (0, 1, 300, 599, 600, 10_000)] == [10_000, 9_983, 5_000, 16, 0, 0]


def test_the_upper_weighted_median_by_hand() -> None:
    assert upper_weighted_median([5, 1, 3], [1, 1, 1]) == 3
    assert upper_weighted_median([1, 2], [1, 1]) == 2  # upper: exactly half the weight suffices, from above
    assert upper_weighted_median([1, 2], [2, 1]) == 1
    assert upper_weighted_median([], []) == 0
    with pytest.raises(SettlementError, match="one weight per value"):
        upper_weighted_median([1, 2], [1])


def test_the_tolerance_is_three_times_the_upper_median_revealed_distance_and_at_least_600() -> None:
    assert tolerance([0, 0, None], [5_000, 5_000, 5_000]) == 600  # the floor: 3 x 200
    assert tolerance([1_000, 2_000, 9_000], [5_000, 5_000, 5_000]) == 6_000
    assert tolerance([1_000, 2_000, None], [5_000, 4_000, 9_000]) == 3_000  # the absent weight does not count
    assert tolerance([None, None], [5_000, 5_000]) == 600
    # One validator absent: the consensus is a revealer's own score (distance 0). The lower median of (0, 1000)
    # was 0, which left the other honest revealer outside the floor's 600; the upper median is 1000.
    assert tolerance([0, 1_000, None], [5_000, 5_000, 5_000]) == 3_000


def test_a_lazy_copy_of_the_last_consensus_earns_nothing() -> None:
    """docs/protocol.md R5 anti-lazy: copying each contributor's previous consensus earns no pay (it keeps its
    reputation while within the tolerance); the previous rule paid it (distance 500 within 3 x 200)."""
    book = ConsensusBook()
    vals, contribs = ["0xv0", "0xv1", "0xlazy"], ["0xc0", "0xc1"]
    book.settle(contribs, vals, book.freeze(vals), [[5_000, 4_000]] * 3, quorum=2, budget=10_000)
    assert book.last_consensus == {"0xc0": 5_000, "0xc1": 4_000}
    lazy_row = [book.predicted(c) for c in contribs]
    out = book.settle(
        contribs, vals, book.freeze(vals), [[5_600, 4_600], [5_500, 4_500], lazy_row], quorum=2, budget=10_000
    )
    assert out.consensus == (5_500, 4_500)
    v0, v1, lazy = out.settlements[2:]
    assert (lazy.distance, lazy.reward, lazy.reputation) == (500, 0, 5_400)  # within r = 600, paid nothing
    assert (v0.distance, v1.distance) == (100, 0)
    # r_p = min(600, 500): agreements 8000 and 10000 of the 1000 validator share.
    assert (v0.reward, v1.reward) == (1_000 * 8_000 // 18_000, 1_000 * 10_000 // 18_000)


# ─── settlement by hand ─────────────────────────────────────────────────────────────────────────────────────


def test_one_round_settled_by_hand() -> None:
    book = ConsensusBook()
    vals, contribs = ["0xv0", "0xv1", "0xv2"], ["0xc0", "0xc1"]
    weights = book.freeze(vals)
    assert weights == [5_000] * 3
    out = book.settle(
        contribs, vals, weights, [[8_000, REJECT], [6_000, REJECT], None], quorum=2, budget=10_000
    )
    # consensus: update 0 -> median of (0 absent, 6000, 8000) = 6000; update 1 -> -10000
    assert out.consensus == (6_000, REJECT)
    assert out.accepted == [0]
    c0, c1, v0, v1, v2 = out.settlements
    assert (c0.reputation, c0.reward, c0.score) == (5_000 + 300, 9_000, 6_000)
    assert (c1.reputation, c1.reward, c1.score) == (5_000 - 1_500, 0, REJECT)
    # Distances: v0 (2000, 0) -> 1000, v1 0; their upper median 1000, so r = 3000: both within (+200). Pay: no
    # contributor has a consensus yet (predicted 0): the record's distance (6000 + 10000) / 2 = 8000, r_p = 3000;
    # agreements 6666 and 10000 of the 1000 validator share.
    assert (v0.distance, v0.reputation, v0.reward, v0.absent) == (
        1_000,
        5_200,
        1_000 * 6_666 // 16_666,
        False,
    )
    assert (v1.distance, v1.reputation, v1.reward) == (0, 5_200, 1_000 * 10_000 // 16_666)
    assert (v2.absent, v2.reputation, v2.reward) == (True, 4_500, 0)
    assert book.accrued_of("0xC0") == 9_000
    assert book.claim("0xc0") == 9_000
    assert book.claim("0xc0") == 0


def test_below_quorum_no_contributor_moves_and_a_carry_over_pays_nothing() -> None:
    book = ConsensusBook()
    vals = ["0xv0", "0xv1"]
    out = book.settle(["0xc0"], vals, book.freeze(vals), [[9_000], None], quorum=2, budget=10**18)
    assert out.accepted == []
    assert out.settlements[0].reputation == 5_000  # the validators failed, not the member
    assert out.accrued == 0  # below the quorum nobody is paid
    revealer, absent = out.settlements[1:]
    assert (revealer.reputation, revealer.distance) == (5_000, 9_000)  # measured, but not moved
    assert absent.reputation == 4_500
    carried = book.settle(
        ["0xc0"], vals, book.freeze(vals), [[9_000], [9_000]], quorum=2, budget=10**18, carried_over=True
    )
    assert carried.accepted == []  # the base carries over: no update is used
    assert carried.consensus == (9_000,)
    assert carried.accrued == 0
    assert carried.settlements[0].reputation == 5_000 + 450  # reputations settle as usual
    assert book.last_consensus == {"0xc0": 9_000}  # every settled round records the public consensus


def test_the_mirror_refuses_what_the_contract_never_settles() -> None:
    book = ConsensusBook()
    with pytest.raises(SettlementError, match="one weight and one score row"):
        book.settle(["0xc"], ["0xv"], [5_000], [], quorum=1, budget=0)
    with pytest.raises(SettlementError, match="2 scores for 1 updates"):
        book.settle(["0xc"], ["0xv"], [5_000], [[1, 2]], quorum=1, budget=0)
    with pytest.raises(SettlementError, match="below 2\\*\\*96"):
        book.settle(["0xc"], ["0xv"], [5_000], [[1]], quorum=1, budget=2**96)


# ─── against the contract ───────────────────────────────────────────────────────────────────────────────────

VALIDATORS, CONTRIBUTORS, QUORUM, BUDGET = 4, 5, 2, 7 * 10**17 + 12_345


@pytest.fixture(scope="module")
def net(anvil: AnvilProcess, dev_keys: list[tuple[str, str]]) -> Iterator[Consortium]:
    w3 = connect_web3(anvil.rpc_url)
    with chain_snapshot(w3):
        yield Consortium.deploy(
            w3,
            dev_keys,
            validators=VALIDATORS,
            contributors=CONTRIBUTORS,
            quorum=QUORUM,
            reward=BUDGET,
            submission_window=600,
            commit_window=300,
            reveal_window=300,
            finalize_grace=300,
        )


def _scores(rng: random.Random, n: int, kind: str, truth: list[int]) -> list[tuple[int, int] | int]:
    if kind == "honest":
        return [max(-SCORE_ONE, min(SCORE_ONE, t + rng.randint(-1_500, 1_500))) for t in truth]
    if kind == "reject-all":
        return [(REJECT, 1)] * n
    if kind == "accept-all":
        return [SCORE_ONE] * n
    return [rng.randint(-SCORE_ONE, SCORE_ONE) for _ in range(n)]


@pytest.mark.anvil
def test_random_rounds_on_the_contract_are_predicted_exactly(net: Consortium) -> None:
    rng = random.Random(13)
    reader = net.client()
    book = ConsensusBook(ConsensusConstants.from_chain(reader.constants()))
    for address, _ in net.contributors:
        book.grant(address, Role.CONTRIBUTOR)
    for address, _ in net.validators:
        book.grant(address, Role.VALIDATOR)
    kinds = ["honest", "honest", "reject-all", "random"]
    plans: list[dict[str, Any]] = [
        {},
        {"absent": [3]},
        {"unrevealed": [1], "submitters": [0, 2, 4]},
        {"absent": [0, 1, 2]},  # one reveal: below the quorum of 2
        {"carry": True, "absent": [2]},
        {"submitters": []},  # no update at all
        {"absent": [1], "unrevealed": [0]},
        {},
    ]
    claimed: dict[str, int] = {}
    for plan in plans:
        round_ = reader.current_round(net.task_id, block="latest")
        n_sub = CONTRIBUTORS if plan.get("submitters") is None else len(plan["submitters"])
        truth = [rng.randint(-SCORE_ONE, SCORE_ONE) for _ in range(n_sub)]
        table = {v: _scores(rng, n_sub, kinds[v], truth) for v in range(VALIDATORS)}
        vset = reader.validator_set(net.task_id, round_, block="latest")
        assert list(vset.weights) == book.freeze(vset.members)  # frozen from the reputations at opening

        def scores(v: int, i: int, _r: int, table: dict[int, list[Any]] = table) -> int | tuple[int, int]:
            value: int | tuple[int, int] = table[v][i]
            return value

        record = net.run_round(
            net.task_id,
            scores=scores,
            absent=plan.get("absent", ()),
            unrevealed=plan.get("unrevealed", ()),
            submitters=plan.get("submitters"),
            finalize=False,
        )
        net.end_reveals(net.task_id, round_)
        predicted = book.settle(
            record.contributors,
            record.validators,
            record.weights,
            record.scores(),
            quorum=QUORUM,
            budget=BUDGET,
            carried_over=bool(plan.get("carry")),
        )
        tally = reader.tally(net.task_id, round_, block="latest")
        assert list(tally.consensus) == list(predicted.consensus)
        if not plan.get("carry"):
            assert tally.accepted_bitmap == predicted.accepted_bitmap
        if plan.get("carry"):
            net.carry_over(record)
        else:
            net.finalize(record)
        (final,) = reader.finalizations(net.task_id, round_)
        assert final.carried_over is bool(plan.get("carry"))
        assert final.accepted_bitmap == predicted.accepted_bitmap
        assert final.settlements == predicted.settlements, plan
        for address, _ in net.contributors + net.validators:
            account = reader.account(address, block="latest")
            assert account.contributor_reputation == book.reputation(address, Role.CONTRIBUTOR)
            assert account.validator_reputation == book.reputation(address, Role.VALIDATOR)
            assert account.accrued == book.accrued_of(address)
        # Someone claims now and then: the claim mints exactly what accrued.
        who, key = max(net.contributors + net.validators, key=lambda member: book.accrued_of(member[0]))
        expected = book.claim(who)
        if expected:
            assert net.client(key).claim_rewards().value == expected
            claimed[who] = claimed.get(who, 0) + expected
    token = reader.token_client()
    for who, amount in claimed.items():
        assert token.balance_of(who) == amount
    assert sum(claimed.values()) > 0
    # An auditor gets the same from the logs alone: every round's inputs, settled again in chain order.
    checks = replay_settlements(reader)
    assert [(x.inputs.round, x.inputs.carried_over) for x in checks] == [
        (r, bool(p.get("carry"))) for r, p in enumerate(plans, start=1)
    ]
    assert all(x.matches for x in checks)
    forged = replace(checks[0].recorded, settlements=checks[1].recorded.settlements)
    assert not replace(checks[0], recorded=forged).matches
