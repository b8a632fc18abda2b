"""The Byzantine experiment computes what it claims: hard-check verdicts, every validator's scores, the consensus,
accepted sets, rewards and reputations by the contract's rules, aggregates from the ledger's rules, and the metrics
over them; and protocol v2 holds against the members' and the validators' attacks.

Small federations (4–6 members, 1–3 rounds) keep each run around a second."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from lab.experiment import (
    ABSENT,
    HONEST,
    LAZY_SCORE,
    ExperimentConfig,
    ExperimentResult,
    Pipeline,
    RoundResult,
    ValidatorAttack,
    byzantine_scores,
    malicious_members,
    run_experiment,
    sweep_configs,
    validator_heldout,
)
from lab.experiment_report import GOAL_REWARD_SHARE, goal, goal_f, summarise, validator_goal
from ledger.chain.scores import SCORE_ONE
from ledger.reasons import Reason
from node.errors import InvalidParameter

SMALL = {"num_nodes": 6, "rounds": 2, "tolerated": 2}
BUDGET = 10**18
CONTRIBUTOR_SHARE = BUDGET - BUDGET * 1_000 // 10_000
NEAR_COPY = Reason.NEAR_COPY


def run(attack: str, f: int, pipeline: Pipeline = Pipeline.FEDAVG, **overrides: object) -> ExperimentResult:
    return run_experiment(ExperimentConfig(attack, f, pipeline, **{**SMALL, **overrides}))  # type: ignore[arg-type]


def malicious_reasons(result: ExperimentResult) -> list[int]:
    bad = set(result.malicious)
    return [
        reason
        for r in result.rounds
        for node, reason in zip(r.submitted, r.reasons, strict=True)
        if node in bad
    ]


def test_a_scale_attacker_is_rejected_by_every_validator_earns_nothing_and_loses_reputation() -> None:
    result = run("scale", 2)
    assert len(result.malicious) == 2
    # Round 1's x10 is out of proportion to the random initial base on its own; round 2's only next to the others.
    assert malicious_reasons(result) == [Reason.SCALE_OUT_OF_PROPORTION] * 2 + [Reason.NORM_OUTLIER] * 2
    for r in result.rounds:
        assert r.submitted[-2:] == result.malicious  # attackers submit after the honest members
        assert len(r.scores) == 3  # the default validator set
        assert r.consensus[-2:] == [-SCORE_ONE] * 2
        assert all(scores[-2:] == [-SCORE_ONE] * 2 for scores in r.scores)
        assert all(reasons[-2:] == r.reasons[-2:] for reasons in r.revealed_reasons)  # each reveals the code
        assert not set(r.accepted) & set(result.malicious)
        assert sum(r.rewards.values()) <= CONTRIBUTOR_SHARE
        assert sum(r.rewards.values()) > CONTRIBUTOR_SHARE - len(r.accepted)  # only rounding dust is kept
    assert result.malicious_rewards == 0
    assert result.malicious_reputation() == [3_500.0, 2_000.0]  # -1500 per consensus of -1, from 5000


def test_accepted_updates_are_paid_by_the_square_of_their_consensus() -> None:
    result = run(HONEST, 0, rounds=1)
    (r,) = result.rounds
    assert r.reasons == [0] * 6
    assert all(c > 0 for c in r.consensus)
    weights = [c * c for c in r.consensus]  # every reputation is 5000 in round 1
    for node, c in zip(r.submitted, r.consensus, strict=True):
        assert r.rewards[node] == CONTRIBUTOR_SHARE * c * c // sum(weights)
        assert r.reputations[node] == 5_000 + 500 * c // SCORE_ONE
    # Honest validators with disjoint held-out slices disagree a little, and are paid by how little.
    assert all(0 < d < 2_500 for d in r.distances)
    assert sum(r.validator_pay) <= BUDGET // 10
    assert r.validator_reputations == [5_200] * 3


def test_without_checks_everything_is_accepted_with_equal_weight() -> None:
    result = run("scale", 2, Pipeline.FEDAVG_UNCHECKED, rounds=1)
    (r,) = result.rounds
    assert r.reasons == [0] * 6
    assert r.consensus == [SCORE_ONE] * 6
    assert sorted(r.accepted) == list(range(6))
    assert set(r.rewards.values()) == {CONTRIBUTOR_SHARE // 6}
    assert result.malicious_reward_share == pytest.approx(2 / 6)


def test_sample_inflation_earns_no_more_than_the_same_members_honest_share() -> None:
    inflated = run("sample-inflation", 2)
    honest = run(HONEST, 0)
    # The claim reaches the chain record and the file (so the checks see it), and weighs nothing.
    assert malicious_reasons(inflated) == [0] * 4
    assert inflated.malicious_accepted() == 4
    for r, h in zip(inflated.rounds, honest.rounds, strict=True):
        for m in inflated.malicious:
            assert r.rewards[m] <= h.rewards[m] * 1.05, (r.round, m)
    honest_share = sum(sum(h.rewards[m] for m in inflated.malicious) for h in honest.rounds)
    assert inflated.malicious_reward_share <= honest_share / honest.contributor_rewards + 0.005


def test_noisy_copies_are_rejected_while_their_authors_are_accepted() -> None:
    result = run("noisy-copy", 2, rounds=3)
    # Round 1: nothing published yet, so the copy is of this round's content (a leak): the later one goes.
    assert malicious_reasons(result)[:2] == [Reason.DUPLICATE] * 2
    # Later rounds: a copy of a previous round's published update.
    assert malicious_reasons(result)[2:] == [NEAR_COPY] * 4
    for r in result.rounds:
        honest = [m for m in r.submitted if m not in result.malicious]
        assert sorted(r.accepted) == honest  # every author kept
        assert all(
            c == -SCORE_ONE for m, c in zip(r.submitted, r.consensus, strict=True) if m in result.malicious
        )
    assert result.malicious_rewards == 0
    assert result.malicious_reputation() == [3_500.0, 2_000.0, 500.0]


def test_front_runners_are_rejected_and_the_authors_accepted() -> None:
    result = run("front-run", 2)
    for r in result.rounds:
        # Each front-runner submits first, with the digest of the author it copies.
        assert r.submitted[:2] == result.malicious
        victims = r.submitted[2:4]
        assert r.cids[:2] == r.cids[2:4]
        assert r.reasons[:2] == [Reason.METADATA_MISMATCH] * 2  # the file names its author
        assert set(victims) <= set(r.accepted)
        assert not set(result.malicious) & set(r.accepted)
    assert result.malicious_rewards == 0


def test_absent_members_neither_submit_nor_settle() -> None:
    result = run(ABSENT, 2, rounds=1)
    (r,) = result.rounds
    assert len(r.submitted) == 4
    assert not set(r.submitted) & set(result.malicious)
    assert result.malicious_reputation() == []
    assert all(r.reputations[m] == 5_000 for m in result.malicious)


# --- Byzantine validators ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attack", [ValidatorAttack.ALWAYS_REJECT, ValidatorAttack.ALWAYS_ACCEPT, ValidatorAttack.COLLUDE]
)
def test_a_byzantine_minority_of_validators_changes_no_outcome(attack: ValidatorAttack) -> None:
    result = run("noise", 2, byzantine_validators=1, validator_attack=attack)
    for r in result.rounds:
        # Where the two honest validators agree, that is the outcome.
        for node, verdict in zip(r.submitted, r.honest_verdicts, strict=True):
            if verdict:
                assert (node in r.accepted) == (verdict > 0), (r.round, node)
        if attack is ValidatorAttack.COLLUDE:
            bad = set(result.malicious)
            assert r.scores[2] == [SCORE_ONE if m in bad else -SCORE_ONE for m in r.submitted]
        # Its scores are far from the consensus: it loses reputation, the honest validators gain.
        assert r.distances[2] > max(r.distances[:2])
    assert result.byzantine_flips() == (0, 0)
    assert result.rounds[-1].validator_reputations[2] < 5_000 < result.rounds[-1].validator_reputations[0]
    assert result.byzantine_validator_reward_share <= 0.05


def test_a_byzantine_majority_of_validators_does_change_outcomes() -> None:
    # The bound is tight: with two colluders of three, the malicious members are in and the honest ones out.
    result = run("sign-flip", 2, rounds=1, byzantine_validators=2, validator_attack=ValidatorAttack.COLLUDE)
    (r,) = result.rounds
    assert sorted(r.accepted) == result.malicious
    rejected, accepted = result.byzantine_flips()
    # The lone honest validator scores the honest updates > 0 and the flipped ones ≤ 0: all four and both flipped.
    bad = set(result.malicious)
    assert [v for m, v in zip(r.submitted, r.honest_verdicts, strict=True) if m not in bad] == [1] * 4
    assert [v for m, v in zip(r.submitted, r.honest_verdicts, strict=True) if m in bad] == [-1] * 2
    assert (rejected, accepted) == (4, 2)


def test_a_lazy_validator_copies_the_previous_consensus() -> None:
    result = run("noise", 2, byzantine_validators=1, validator_attack=ValidatorAttack.LAZY)
    first, second = result.rounds
    assert first.scores[2] == [LAZY_SCORE] * 6
    previous = dict(zip(first.submitted, first.consensus, strict=True))
    assert second.scores[2] == [previous[m] for m in second.submitted]
    assert result.byzantine_flips() == (0, 0)
    # docs/protocol.md R5 anti-lazy: a copy of the public record lands exactly at the record's distance, so its pay
    # agreement is 0 (the tolerance rule alone paid it while the copy lay within 3 x the median distance).
    assert second.validator_pay[2] == 0
    assert sum(second.validator_pay[:2]) > 0


def test_byzantine_scores() -> None:
    authors, bad = [0, 1, 2], [2]
    assert byzantine_scores(ValidatorAttack.ALWAYS_REJECT, authors, bad, {}, seed=0) == [-SCORE_ONE] * 3
    assert byzantine_scores(ValidatorAttack.ALWAYS_ACCEPT, authors, bad, {}, seed=0) == [SCORE_ONE] * 3
    assert byzantine_scores(ValidatorAttack.COLLUDE, authors, bad, {}, seed=0) == [
        -SCORE_ONE,
        -SCORE_ONE,
        SCORE_ONE,
    ]
    assert byzantine_scores(ValidatorAttack.LAZY, authors, bad, {1: 42}, seed=0) == [
        LAZY_SCORE,
        42,
        LAZY_SCORE,
    ]
    noise = byzantine_scores(ValidatorAttack.RANDOM, list(range(200)), bad, {}, seed=5)
    assert all(-SCORE_ONE <= s <= SCORE_ONE for s in noise)
    assert len(set(noise)) > 150
    assert noise == byzantine_scores(ValidatorAttack.RANDOM, list(range(200)), bad, {}, seed=5)


def test_validators_hold_disjoint_slices_of_the_held_out_half() -> None:
    slices = [validator_heldout(0, v, 3) for v in range(3)]
    sizes = [len(s) for s in slices]
    assert sum(sizes) == 225
    assert max(sizes) - min(sizes) <= 1
    rows = [{s.x[i].tobytes() for i in range(len(s))} for s in slices]
    assert all(not a & b for a, b in itertools.combinations(rows, 2))


def test_the_validators_trainer_and_evaluator_are_the_demos_plug_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker loads node.heldout:reference / :slice_loss with HELDOUT_SLICE=v/V (seed 0's split); the pure
    # pipeline takes the slice of the run's seed, which for seed 0 must give the same bytes.
    import numpy as np

    from lab.experiment import data_loss, data_trainer
    from node import heldout
    from node.models import genesis_state

    monkeypatch.setenv("HELDOUT_SLICE", "1/3")
    weights = genesis_state("mlp", 0)
    slice_ = validator_heldout(0, 1, 3)
    mine = data_trainer("mlp", slice_)(weights, seed=7, steps=20)
    theirs = heldout.reference(weights, seed=7, steps=20)
    assert sorted(mine) == sorted(theirs)
    assert all(np.array_equal(mine[k], theirs[k]) for k in mine)
    assert data_loss(slice_)(weights) == heldout.slice_loss(weights)


def test_byzantine_configs_are_checked() -> None:
    with pytest.raises(InvalidParameter, match="validator_attack"):
        ExperimentConfig(HONEST, 0, Pipeline.FEDAVG, byzantine_validators=1)
    with pytest.raises(InvalidParameter, match="validator_attack"):
        ExperimentConfig(HONEST, 0, Pipeline.FEDAVG, validator_attack="lazy")
    with pytest.raises(InvalidParameter, match="byzantine_validators"):
        ExperimentConfig(HONEST, 0, Pipeline.FEDAVG, byzantine_validators=3, validator_attack="lazy")
    with pytest.raises(ValueError, match="sleepy"):
        ExperimentConfig(HONEST, 0, Pipeline.FEDAVG, byzantine_validators=1, validator_attack="sleepy")
    config = ExperimentConfig(
        HONEST, 0, Pipeline.FEDAVG, validators=5, byzantine_validators=2, validator_attack="lazy"
    )
    assert config.byzantine_set == [3, 4]
    assert ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


# --- the pipeline as a whole ---------------------------------------------------------------------------------


def test_the_pure_pipeline_is_deterministic_and_trains() -> None:
    a = run(HONEST, 0, num_nodes=5)
    b = run(HONEST, 0, num_nodes=5)
    assert [r.aggregate_cid for r in a.rounds] == [r.aggregate_cid for r in b.rounds]
    assert [r.scores for r in a.rounds] == [r.scores for r in b.rounds]
    assert a.genesis_cid != a.rounds[0].aggregate_cid != a.rounds[1].aggregate_cid
    assert a.initial_accuracy < 0.3 < 0.85 < a.final_accuracy


def test_an_explicit_malicious_set_and_the_update_cids_are_recorded() -> None:
    result = run("free-rider", 2, rounds=1, malicious=(5, 4))
    assert result.malicious == [4, 5]
    (r,) = result.rounds
    assert r.submitted[-2:] == [4, 5]
    assert len(r.cids) == len(set(r.cids)) == 6
    assert all(cid.startswith("Qm") for cid in r.cids)
    assert malicious_reasons(result) == [Reason.NORM_TOO_SMALL] * 2
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


def test_sweep_with_byzantine_validators_keeps_the_honest_validator_runs() -> None:
    configs = sweep_configs(
        attacks=["noise"],
        fractions=[0.3],
        pipelines=[Pipeline.FEDAVG],
        seeds=[0],
        validator_attacks=[None, "collude"],
        byzantine_validators=1,
    )
    assert [(c.validator_attack, c.byzantine_validators) for c in configs] == [(None, 0), ("collude", 1)]


# --- metrics on hand-made results ----------------------------------------------------------------------------


def _result(
    accuracies: list[float],
    attack: str = "noise",
    seed: int = 0,
    pipeline: Pipeline = Pipeline.FEDAVG,
    rewards: tuple[int, int] = (0, 0),
    validator_attack: str | None = None,
    validator_pay: tuple[int, int, int] = (0, 0, 0),
    honest_verdicts: tuple[int, int] = (1, -1),
    accepted: tuple[int, ...] = (0,),
) -> ExperimentResult:
    """Two members, member 1 malicious (unless honest or absent); each round pays ``rewards`` to members 0 and 1."""
    f = 0 if attack == HONEST else 1
    config = ExperimentConfig(
        attack,
        f,
        pipeline,
        seed=seed,
        num_nodes=2,
        rounds=len(accuracies),
        byzantine_validators=1 if validator_attack else 0,
        validator_attack=validator_attack,
    )
    rounds = [
        RoundResult(
            round=i + 1,
            accuracy=a,
            loss=0.0,
            submitted=[0, 1],
            reasons=[0, 16],
            accepted=list(accepted),
            rewards={0: rewards[0], 1: rewards[1]},
            reputations={0: 5_000 + 500 * (i + 1), 1: 100 * (i + 1)},
            validator_rewards=sum(validator_pay),
            aggregate_cid="Qm",
            seconds=0.0,
            consensus=[5_000, -SCORE_ONE],
            validator_pay=list(validator_pay),
            honest_verdicts=list(honest_verdicts),
        )
        for i, a in enumerate(accuracies)
    ]
    return ExperimentResult(config, [1] if f else [], 0.1, "Qm", rounds)


def test_rounds_to_target_final_accuracy_and_shares() -> None:
    r = _result(
        [0.5, 0.899, 0.9, 0.95], rewards=(90, 10), validator_attack="lazy", validator_pay=(45, 45, 10)
    )
    assert r.rounds_to(0.9) == 3
    assert r.rounds_to(0.96) is None
    assert r.final_accuracy == 0.95
    assert r.malicious_reward_share == pytest.approx(0.1)
    assert r.byzantine_validator_reward_share == pytest.approx(0.1)
    assert r.validator_reward_shares() == pytest.approx([0.45, 0.45, 0.1])
    assert r.malicious_reputation() == [100.0, 200.0, 300.0, 400.0]
    assert r.honest_rejected() == 0
    assert r.malicious_accepted() == 0
    assert r.byzantine_flips() == (0, 0)
    assert ExperimentResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    split = _result([0.5], validator_attack="collude", honest_verdicts=(0, 0), accepted=(1,))
    assert split.honest_rejected() == 1
    assert split.byzantine_flips() == (0, 0)  # the honest validators differed: theirs to split, no flip
    flipped = _result([0.5], validator_attack="collude", accepted=(1,))
    assert flipped.byzantine_flips() == (1, 1)


def test_summary_spreads_over_seeds_and_the_goal_check_against_the_absent_run() -> None:
    runs = [
        _result([0.9, 0.99], attack=HONEST, seed=0),
        _result([0.9, 0.97], attack=HONEST, seed=1),
        _result([0.9, 0.95], attack=ABSENT, seed=0),
        _result([0.9, 0.97], attack=ABSENT, seed=1),
        _result([0.5, 0.93], seed=0, rewards=(96, 4)),
        _result([0.5, 0.95], seed=1, rewards=(90, 10)),
        _result([0.5, 0.94], attack="scale", seed=0, rewards=(100, 0)),
        _result([0.5, 0.90], attack="sign-flip", seed=0, rewards=(100, 0)),
    ]
    cells = summarise(runs)
    noise = next(c for c in cells if c.attack == "noise")
    assert noise.accuracy == pytest.approx(0.94)
    assert noise.accuracy_spread == (0.93, 0.95)
    assert noise.rounds_to_target == (2, 2)
    assert noise.rounds_text() == "2.0"
    assert noise.share == pytest.approx(0.07)
    assert noise.reputation == (100.0, 200.0)
    assert goal_f(cells) == 1
    rows = {row.attack: row for row in goal(cells, f=1)}
    assert rows["noise"].reference == pytest.approx(0.96)  # the absent run, not the honest one (0.98)
    assert rows["noise"].drop == pytest.approx(0.02)
    assert rows["noise"].accuracy_ok  # 2 points is within the goal
    assert not rows["noise"].reward_ok  # one seed paid the attacker 10 % > 5 %
    assert rows["scale"].reward_ok
    assert rows["scale"].share_max <= GOAL_REWARD_SHARE
    assert not rows["sign-flip"].accuracy_ok


def test_the_validator_goal() -> None:
    runs = [
        _result([0.9], validator_attack="collude", validator_pay=(50, 50, 0)),
        _result([0.9], attack="scale", validator_attack="lazy", validator_pay=(40, 40, 20)),
        _result([0.9], attack="sign-flip", validator_attack="always-accept", honest_verdicts=(1, 1)),
    ]
    rows = {row.validator_attack: row for row in validator_goal(summarise(runs))}
    assert rows["collude"].ok
    assert not rows["lazy"].reward_ok
    assert rows["lazy"].rejection_ok
    # The malicious member 1 is rejected although the honest validators accepted it: no harm, no flip.
    assert rows["always-accept"].flips == (0.0, 0.0)
    assert rows["always-accept"].ok
    flipped = _result([0.9], validator_attack="random", accepted=(1,))
    (row,) = validator_goal(summarise([flipped]))
    assert not row.rejection_ok
    assert not row.acceptance_ok


def test_cli_runs_a_tiny_sweep_and_writes_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    from ledger.cli.app import main

    out = tmp_path / "out"
    code = main(
        [
            "experiment", "byzantine", "--attack", "front-run", "--fraction", "0,0.25", "--pipeline", "fedavg",
            "--seeds", "1", "--rounds", "1", "--nodes", "4", "--tolerated", "1", "--jobs", "1", "--json",
            "--byzantine-validators", "1", "--validator-attack", "always-reject",
            "--out", str(out), "--results", str(tmp_path / "runs.json"),
        ]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["runs"] == 5  # honest, front-run, absent; honest and front-run with a Byzantine validator
    assert summary["default_pipeline"] == "fedavg"
    assert summary["goal_f"] == 1
    cells = {(c["attack"], c["f"], c["validator_attack"]): c for c in summary["cells"]}
    front = cells[("front-run", 1, None)]
    assert front["pipeline"] == "fedavg"
    assert front["reward_share"] == [0.0]
    assert front["malicious_accepted"] == 0
    assert len(front["final_accuracy"]) == 1
    assert ("absent", 1, None) in cells
    byzantine = cells[("front-run", 1, "always-reject")]
    assert byzantine["byzantine_flips"] == [0.0, 0.0]
    assert byzantine["validator_reward_share"] == [0.0]
    (row,) = [g for g in summary["goal"] if g["attack"] == "front-run"]
    assert row["reward_ok"]
    assert {g["validator_attack"] for g in summary["validator_goal"]} == {"always-reject"}
    assert {p.name for p in out.glob("*.png")} == {
        "accuracy-vs-malicious.png",
        "rewards-vs-malicious.png",
        "reputation-over-rounds.png",
        "accuracy-over-rounds.png",
    }
    assert len(json.loads((tmp_path / "runs.json").read_text())) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--validator-attack", "lazy"], "--byzantine-validators"),
        (["--byzantine-validators", "1", "--validator-attack", "sleepy"], "sleepy: --validator-attack takes"),
        (["--attack", "bribe"], "bribe: --attack takes"),
        (["--byzantine-validators", "3"], "--byzantine-validators < --validators"),
    ],
)
def test_cli_refuses_what_it_cannot_run(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ledger.cli.app import main

    code = main(["experiment", "byzantine", "--fraction", "0", "--seeds", "1", "--rounds", "1", *args])
    assert code != 0
    assert message in " ".join(capsys.readouterr().err.replace("│", " ").split())  # unwrapped from its box


@pytest.mark.anvil
@pytest.mark.redis
@pytest.mark.slow
def test_the_pure_pipeline_is_what_the_chain_and_the_workers_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One front-running member of four through anvil, redis-server, three real validators (the demo's reference
    # trainer and slices, commit-reveal) and a real aggregator, against the pure pipeline: every field of the round.
    import importlib.util
    import sys

    monkeypatch.setattr(
        sys, "path", sys.path.copy()
    )  # the script puts benchmarks/ first: not for other tests
    where = Path(__file__).resolve().parents[2] / "benchmarks" / "byzantine.py"
    spec = importlib.util.spec_from_file_location("benchmarks_byzantine", where)
    assert spec is not None
    assert spec.loader is not None
    e2e = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(e2e)
    config = ExperimentConfig(
        "front-run", 1, Pipeline.FEDAVG, num_nodes=4, rounds=1, tolerated=1, max_samples=e2e.MESH_MAX_SAMPLES
    )
    pure = run_experiment(config)
    real = e2e.run_on_mesh(config, tmp_path, log=lambda line: None)
    report = e2e.compare(pure, real)
    (r,) = real.rounds
    assert r.revealed_reasons[0][0] == Reason.METADATA_MISMATCH  # the chain saw the front-run rejected
    # Every field agrees, validator pay included: the contract and ledger.consensus follow the same R5.
    assert report["mismatches"] == []
