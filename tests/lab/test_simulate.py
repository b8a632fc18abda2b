"""The FedAvg simulation: the training-quality target of issue 7, and the aggregation it uses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from lab.simulate import SimulationResult, fedavg, simulate_fedavg
from node.behaviours import Behaviour
from node.errors import InvalidParameter
from node.privacy import DPConfig, compute_epsilon


def _curve(result: SimulationResult) -> str:
    points = " ".join(f"{r.round}:{r.accuracy:.3f}" for r in result.rounds)
    return f"{result.model} α={result.alpha} nodes={result.num_nodes} start={result.initial_accuracy:.3f} {points}"


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_five_honest_non_iid_nodes_reach_95_percent_within_10_rounds(model: str) -> None:
    result = simulate_fedavg(model=model, num_nodes=5, alpha=0.5, rounds=10)
    print(_curve(result))  # the curve, visible with `pytest -s`
    assert result.initial_accuracy < 0.3
    reached = result.rounds_to(0.95)
    assert reached is not None, _curve(result)
    assert reached <= 10
    assert result.final_accuracy >= 0.95, _curve(result)
    assert sum(result.shard_sizes) == 1347


def test_simulation_is_reproducible() -> None:
    a = simulate_fedavg(rounds=2, seed=3)
    b = simulate_fedavg(rounds=2, seed=3)
    assert [r.accuracy for r in a.rounds] == [r.accuracy for r in b.rounds]
    assert [r.loss for r in a.rounds] == [r.loss for r in b.rounds]


def test_fedavg_weights_by_num_samples_in_float64() -> None:
    a = {"w": np.array([1.0, 2.0], np.float32)}
    b = {"w": np.array([5.0, -2.0], np.float32)}
    out = fedavg([a, b], [1, 3])
    assert out["w"].dtype == np.float32
    assert np.array_equal(out["w"], np.array([4.0, -1.0], np.float32))
    assert np.array_equal(fedavg([a], [7])["w"], a["w"])


@pytest.mark.parametrize(
    ("deltas", "weights"), [([], []), ([{"w": np.zeros(1, np.float32)}], [0]), ([{}], [1, 2])]
)
def test_fedavg_rejects_bad_inputs(deltas: list[dict[str, np.ndarray]], weights: list[int]) -> None:
    with pytest.raises(InvalidParameter):
        fedavg(deltas, weights)


def test_the_aggregation_rule_is_pluggable() -> None:
    def nothing(deltas: Sequence[Mapping[str, np.ndarray]], weights: Sequence[int]) -> dict[str, np.ndarray]:
        return {k: np.zeros_like(v) for k, v in deltas[0].items()}

    result = simulate_fedavg(rounds=2, aggregate=nothing)
    assert [r.accuracy for r in result.rounds] == [result.initial_accuracy] * 2


def test_a_scaling_attacker_hurts_plain_fedavg() -> None:
    honest = simulate_fedavg(rounds=3)
    attacked = simulate_fedavg(rounds=3, behaviours={0: Behaviour.SCALE})
    assert attacked.final_accuracy < honest.final_accuracy - 0.1


def test_a_sample_inflater_captures_plain_fedavg_with_honest_work() -> None:
    # v1's weighting: one member's claim of 2**32 samples makes the average its own (non-IID) update.
    honest = simulate_fedavg(rounds=2, alpha=0.3)
    inflated = simulate_fedavg(rounds=2, alpha=0.3, behaviours={0: Behaviour.SAMPLE_INFLATION})
    assert inflated.final_accuracy < honest.final_accuracy - 0.1
    modest = simulate_fedavg(rounds=2, alpha=0.3, behaviours={0: Behaviour.SAMPLE_INFLATION}, max_samples=1)
    assert modest.final_accuracy != inflated.final_accuracy


def test_every_behaviour_runs_in_the_simulation() -> None:
    for behaviour in (Behaviour.NOISY_COPY, Behaviour.FRONT_RUN):
        result = simulate_fedavg(rounds=1, num_nodes=3, behaviours={2: behaviour})
        assert 0.0 < result.final_accuracy <= 1.0


def test_behaviours_must_name_existing_nodes() -> None:
    with pytest.raises(InvalidParameter):
        simulate_fedavg(rounds=1, num_nodes=3, behaviours={3: Behaviour.SIGN_FLIP})


def test_dp_in_the_simulation_noises_honest_updates_and_composes_epsilon() -> None:
    plain = simulate_fedavg(rounds=2)
    assert [r.epsilon for r in plain.rounds] == [None, None]
    light = simulate_fedavg(rounds=2, dp=DPConfig(clip=3.0, noise_multiplier=0.03))
    assert [r.epsilon for r in light.rounds] == [compute_epsilon(0.03, 1.0, 1), compute_epsilon(0.03, 1.0, 2)]
    assert [r.accuracy for r in light.rounds] != [r.accuracy for r in plain.rounds]
    drowned = simulate_fedavg(rounds=2, dp=DPConfig(clip=1.0, noise_multiplier=5.0))
    assert drowned.final_accuracy < 0.4  # the noise (‖·‖ ≈ 5·√9738 ≈ 490) swamps every update
