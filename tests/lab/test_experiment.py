"""The Byzantine experiment computes what it claims: verdicts, accepted sets, rewards and reputations from the
real checks and the contract's formulas, aggregates from the ledger's rules, and the metrics over them.

Small federations (4–6 members, 1–3 rounds) keep each run under a second."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from lab.experiment import (
    ABSENT,
    HONEST,
    ExperimentConfig,
    ExperimentResult,
    Pipeline,
    RoundResult,
    malicious_members,
    run_experiment,
    sweep_configs,
)
from lab.experiment_report import GOAL_REWARD_SHARE, goal, summarise
from ledger.reasons import Reason
from ledger.rewards import DEFAULT_CONSTANTS
from node.errors import InvalidParameter

SMALL = {"num_nodes": 6, "rounds": 2, "tolerated": 2}
BUDGET = 10**18
CONTRIBUTOR_SHARE = BUDGET - BUDGET * DEFAULT_CONSTANTS.validator_share_bps // 10_000


def run(attack: str, f: int, pipeline: Pipeline, **overrides: object) -> ExperimentResult:
    return run_experiment(ExperimentConfig(attack, f, pipeline, **{**SMALL, **overrides}))  # type: ignore[arg-type]


def malicious_reasons(result: ExperimentResult) -> list[int]:
    bad = set(result.malicious)
    return [
        reason
        for r in result.rounds
        for node, reason in zip(r.submitted, r.reasons, strict=True)
        if node in bad
    ]


def test_a_scale_attacker_is_rejected_as_an_outlier_earns_nothing_and_loses_reputation() -> None:
    result = run("scale", 2, Pipeline.FEDAVG)
    assert len(result.malicious) == 2
    # Round 1's x10 is out of proportion to the random initial base on its own; round 2's only next to the others.
    assert malicious_reasons(result) == [Reason.SCALE_OUT_OF_PROPORTION] * 2 + [Reason.NORM_OUTLIER] * 2
    for r in result.rounds:
        assert not set(r.accepted) & set(result.malicious)
        assert r.submitted[-2:] == result.malicious  # attackers submit after the honest members
        assert sum(r.rewards.values()) <= CONTRIBUTOR_SHARE
        assert sum(r.rewards.values()) > CONTRIBUTOR_SHARE - len(r.accepted)  # only rounding dust is kept
    assert result.malicious_rewards == 0
    assert result.malicious_reward_share == 0.0
    assert result.malicious_reputation() == [3_500.0, 2_000.0]  # -1500 per rejected update, from 5000
    assert result.rounds[-1].accuracy > 0.7


def test_without_checks_the_same_attacker_is_paid_by_its_claimed_samples() -> None:
    result = run("scale", 2, Pipeline.FEDAVG_UNCHECKED, rounds=1)
    (r,) = result.rounds
    assert r.reasons == [0] * 6
    assert sorted(r.accepted) == list(range(6))
    # Round 1: every reputation is 5000, so rewards are proportional to the claimed sample counts.
    from node.data import make_federation

    shards = make_federation(6, 0.5, 0).shards
    total = sum(len(s) for s in shards)
    for node, reward in r.rewards.items():
        assert reward == CONTRIBUTOR_SHARE * len(shards[node]) * 5_000 // (total * 5_000)
    assert result.malicious_reward_share == pytest.approx(
        sum(len(shards[m]) for m in result.malicious) / total, rel=1e-9
    )
    assert result.malicious_reputation() == [5_500.0]


def test_little_is_enough_passes_every_check_and_is_paid() -> None:
    result = run("little-is-enough", 2, Pipeline.FEDAVG)
    assert malicious_reasons(result) == [0] * 4
    for r in result.rounds:
        assert set(result.malicious) <= set(r.accepted)
    assert result.malicious_rewards > 0
    assert result.malicious_reputation() == [5_500.0, 6_000.0]


def test_free_riders_and_copycats_get_their_reason_codes() -> None:
    free = run("free-rider", 2, Pipeline.MEDIAN, rounds=1)
    assert malicious_reasons(free) == [Reason.NORM_TOO_SMALL] * 2
    copy = run("copycat", 2, Pipeline.MULTI_KRUM, rounds=1)
    assert malicious_reasons(copy) == [Reason.DUPLICATE] * 2
    (r,) = copy.rounds
    assert r.reasons[0] == 0  # the copied (earliest) update is kept
    assert copy.malicious_rewards == 0


def test_sign_flip_passes_the_norm_checks_and_only_the_held_out_loss_catches_some() -> None:
    unseen = run("sign-flip", 2, Pipeline.FEDAVG, rounds=3, loss_delta=None)
    assert malicious_reasons(unseen) == [0] * 6
    flip = run("sign-flip", 2, Pipeline.FEDAVG, rounds=3)
    reasons = malicious_reasons(flip)
    assert Reason.LOSS_REGRESSION in reasons
    assert set(reasons) <= {0, Reason.LOSS_REGRESSION}
    median = run("sign-flip", 2, Pipeline.MEDIAN, rounds=3, loss_delta=None)
    assert median.final_accuracy > unseen.final_accuracy


def test_absent_members_neither_submit_nor_settle() -> None:
    result = run(ABSENT, 2, Pipeline.FEDAVG, rounds=1)
    (r,) = result.rounds
    assert len(r.submitted) == 4
    assert not set(r.submitted) & set(result.malicious)
    assert result.malicious_reputation() == []
    assert all(r.reputations[m] == 5_000 for m in result.malicious)


def test_the_pure_pipeline_is_deterministic_and_trains_like_the_reference_simulation() -> None:
    from lab.simulate import simulate_fedavg

    a = run(HONEST, 0, Pipeline.FEDAVG_UNCHECKED, num_nodes=5, rounds=2)
    b = run(HONEST, 0, Pipeline.FEDAVG_UNCHECKED, num_nodes=5, rounds=2)
    assert [r.aggregate_cid for r in a.rounds] == [r.aggregate_cid for r in b.rounds]
    assert a.genesis_cid != a.rounds[0].aggregate_cid != a.rounds[1].aggregate_cid
    reference = simulate_fedavg(num_nodes=5, rounds=2, seed=0)
    for mine, theirs in zip(a.rounds, reference.rounds, strict=True):
        assert mine.accuracy == pytest.approx(theirs.accuracy, abs=0.01)


def test_an_explicit_malicious_set_and_the_update_cids_are_recorded() -> None:
    result = run("free-rider", 2, Pipeline.FEDAVG, rounds=1, malicious=(5, 4))
    assert result.malicious == [4, 5]
    (r,) = result.rounds
    assert r.submitted[-2:] == [4, 5]
    assert len(r.cids) == len(set(r.cids)) == 6
    assert all(cid.startswith("Qm") for cid in r.cids)
    with pytest.raises(InvalidParameter):
        ExperimentConfig("scale", 2, Pipeline.FEDAVG, malicious=(1,))


def test_malicious_sets_are_nested_and_seeded() -> None:
    sets = [malicious_members(10, f, seed=1) for f in range(5)]
    for smaller, larger in itertools.pairwise(sets):
        assert set(smaller) < set(larger)
    assert malicious_members(10, 3, seed=0) != malicious_members(10, 3, seed=2)


def test_sweep_has_one_honest_run_per_pipeline_and_seed_and_refuses_fractional_members() -> None:
    configs = sweep_configs(
        attacks=["scale", "noise"], fractions=[0, 0.3], pipelines=[Pipeline.FEDAVG], seeds=[0, 1]
    )
    assert [(c.attack, c.num_malicious, c.seed) for c in configs] == [
        (HONEST, 0, 0),
        (HONEST, 0, 1),
        ("scale", 3, 0),
        ("scale", 3, 1),
        ("noise", 3, 0),
        ("noise", 3, 1),
    ]
    with pytest.raises(InvalidParameter):
        sweep_configs(fractions=[0.25])
    with pytest.raises(InvalidParameter):
        ExperimentConfig(HONEST, 2, Pipeline.FEDAVG)


# --- metrics on hand-made results ----------------------------------------------------------------------------


def _result(
    accuracies: list[float],
    attack: str = "noise",
    seed: int = 0,
    pipeline: Pipeline = Pipeline.FEDAVG,
    rewards: tuple[int, int] = (0, 0),
) -> ExperimentResult:
    """Two members, member 1 malicious (unless honest); each round pays ``rewards`` to members 0 and 1."""
    f = 0 if attack == HONEST else 1
    config = ExperimentConfig(
        attack, f, pipeline, seed=seed, num_nodes=2, rounds=len(accuracies), validators=1, quorum=1
    )
    rounds = [
        RoundResult(
            round=i + 1,
            accuracy=a,
            loss=0.0,
            submitted=[0, 1],
            reasons=[0, 16],
            accepted=[0],
            rewards={0: rewards[0], 1: rewards[1]},
            reputations={0: 5_000 + 500 * (i + 1), 1: 100 * (i + 1)},
            validator_rewards=0,
            aggregate_cid="Qm",
            seconds=0.0,
        )
        for i, a in enumerate(accuracies)
    ]
    return ExperimentResult(config, [1] if f else [], 0.1, "Qm", rounds)


def test_rounds_to_target_final_accuracy_and_shares() -> None:
    r = _result([0.5, 0.899, 0.9, 0.95], rewards=(90, 10))
    assert r.rounds_to(0.9) == 3
    assert r.rounds_to(0.96) is None
    assert r.final_accuracy == 0.95
    assert r.malicious_reward_share == pytest.approx(0.1)
    assert r.malicious_reputation() == [100.0, 200.0, 300.0, 400.0]
    assert r.honest_rejected() == 0
    assert r.malicious_accepted() == 0
    assert ExperimentResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_summary_spreads_over_seeds_and_the_goal_check() -> None:
    runs = [
        _result([0.9, 0.95], attack=HONEST, seed=0),
        _result([0.9, 0.97], attack=HONEST, seed=1),
        _result([0.5, 0.93], seed=0, rewards=(96, 4)),
        _result([0.5, 0.95], seed=1, rewards=(90, 10)),
        _result([0.5, 0.94], attack="scale", seed=0, rewards=(100, 0)),
    ]
    cells = summarise(runs)
    noise = next(c for c in cells if c.attack == "noise")
    assert noise.accuracy == pytest.approx(0.94)
    assert noise.accuracy_spread == (0.93, 0.95)
    assert noise.rounds_to_target == (2, 2)
    assert noise.rounds_text() == "2.0"
    assert noise.share == pytest.approx(0.07)
    assert noise.reputation == (100.0, 200.0)
    rows = {row.attack: row for row in goal(cells, f=1)}
    assert rows["noise"].drop == pytest.approx(0.02)
    assert rows["noise"].accuracy_ok  # 2 points is within the goal
    assert not rows["noise"].reward_ok  # one seed paid the attacker 10 % > 5 %
    assert rows["scale"].reward_ok
    assert rows["scale"].share_max <= GOAL_REWARD_SHARE


def test_cli_runs_a_tiny_sweep_and_writes_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    from ledger.cli.app import main

    out = tmp_path / "out"
    code = main(
        [
            "experiment", "byzantine", "--attack", "free-rider", "--fraction", "0,0.25", "--pipeline", "fedavg",
            "--seeds", "1", "--rounds", "1", "--nodes", "4", "--tolerated", "1", "--jobs", "1", "--json",
            "--out", str(out), "--results", str(tmp_path / "runs.json"),
        ]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["runs"] == 3  # honest, free-rider, absent
    cells = {(c["attack"], c["f"]): c for c in summary["cells"]}
    assert cells[("free-rider", 1)]["reward_share"] == [0.0]
    assert cells[("free-rider", 1)]["malicious_accepted"] == 0
    assert {p.name for p in out.glob("*.png")} == {
        "accuracy-vs-malicious.png",
        "rewards-vs-malicious.png",
        "reputation-over-rounds.png",
        "accuracy-over-rounds.png",
    }
    assert len(json.loads((tmp_path / "runs.json").read_text())) == 3
