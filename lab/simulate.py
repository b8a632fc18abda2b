"""An in-memory FedAvg simulation over the nodes' deltas: no chain, no store, no workers.

It answers "do these defaults train?" in seconds, and is the reference curve the full pipeline should match.
Aggregation is FedAvg by num_samples over the ledger's deterministic sum (``rules.weighted_sum`` of
``ledger.aggregation``): inputs in a fixed order, float64 accumulation, cast to the base's dtype. This is
protocol v1's weighting, which a member's claim steers: a ``sample-inflation`` node claims ``max_samples`` here,
to show what R2 (docs/protocol.md) takes away; the v2 pipeline (``lab.experiment``) weights by consensus instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from node.behaviours import Behaviour, apply_behaviour
from node.data import DEFAULT_ALPHA, make_federation
from node.errors import InvalidParameter
from node.models import DEFAULT_MODEL, StateDict, genesis_state
from node.privacy import DPConfig, privatize
from node.training import TrainConfig, apply_delta, default_config, evaluate, local_train, round_seed


def fedavg(deltas: Sequence[Mapping[str, np.ndarray]], weights: Sequence[int]) -> StateDict:
    """FedAvg of ``deltas`` weighted by sample counts (protocol v1's weighting, which the ledger's rule no longer
    takes: it weighs by consensus, 1..10,000), with the ledger's deterministic sum (float64, list order), cast to
    the dtype of the first delta."""
    from ledger.aggregation.rules import weighted_sum

    if not deltas:
        raise InvalidParameter("deltas", [], "fedavg needs at least one update")
    if len(weights) != len(deltas):
        raise InvalidParameter("weights", list(weights), "need one weight per delta")
    counts = [int(w) for w in weights]
    if any(c < 1 for c in counts) or sum(counts) >= 2**53:
        raise InvalidParameter("weights", counts, "sample counts are positive and sum below 2**53")
    total = float(sum(counts))
    return {
        key: (weighted_sum([d[key] for d in deltas], [float(c) for c in counts]) / total).astype(first.dtype)
        for key, first in deltas[0].items()
    }


Aggregator = Callable[[Sequence[Mapping[str, np.ndarray]], Sequence[int]], StateDict]
"""(deltas, num_samples per delta) -> aggregated delta: ``fedavg`` or a robust rule for experiments."""


@dataclass(frozen=True)
class RoundRecord:
    round: int
    """1-based: the model evaluated is the aggregate after this many rounds."""
    accuracy: float
    loss: float
    train_seconds: list[float]
    """Wall-clock seconds of each node's local round."""
    epsilon: float | None = None
    """With DP: the ε each honest node has spent after this many updates (None without DP)."""


@dataclass(frozen=True)
class SimulationResult:
    model: str
    num_nodes: int
    alpha: float
    config: TrainConfig
    initial_accuracy: float
    rounds: list[RoundRecord] = field(default_factory=list)
    shard_sizes: list[int] = field(default_factory=list)

    def rounds_to(self, accuracy: float) -> int | None:
        """The first round whose aggregate reaches ``accuracy``, or None."""
        return next((r.round for r in self.rounds if r.accuracy >= accuracy), None)

    @property
    def final_accuracy(self) -> float:
        return self.rounds[-1].accuracy if self.rounds else self.initial_accuracy


def simulate_fedavg(
    *,
    model: str = DEFAULT_MODEL,
    num_nodes: int = 5,
    alpha: float = DEFAULT_ALPHA,
    rounds: int = 10,
    config: TrainConfig | None = None,
    seed: int = 0,
    behaviours: Mapping[int, Behaviour] | None = None,
    aggregate: Aggregator = fedavg,
    dp: DPConfig | None = None,
    max_samples: int = 2**32,
) -> SimulationResult:
    """Run ``rounds`` of FedAvg over ``num_nodes`` non-IID nodes and evaluate every aggregate on the test set.

    ``config`` defaults to ``default_config(model)``; each node's seed is replaced by ``round_seed(…)``.

    ``behaviours`` maps node indices to a non-honest behaviour (all others are honest); copycats copy the first
    honest node, and little-is-enough attackers use every honest delta of the round. ``aggregate`` replaces
    FedAvg, e.g. by a robust rule. With ``dp``, honest nodes privatize every update (their ε composes over
    the rounds); attackers do not. Sample inflaters send their honest delta and claim ``max_samples``; noisy
    copiers and front-runners copy the first honest node's delta (a noisy copy with noise, a front-run as is).
    """
    config = config if config is not None else default_config(model)
    behaviours = {index: Behaviour(kind) for index, kind in (behaviours or {}).items()}
    if any(not 0 <= index < num_nodes for index in behaviours):
        raise InvalidParameter("behaviours", sorted(behaviours), f"node indices must be in [0, {num_nodes})")
    num_lie = max(1, sum(b is Behaviour.LITTLE_IS_ENOUGH for b in behaviours.values()))
    federation = make_federation(num_nodes, alpha, seed)
    shards = [federation.node_data(i) for i in range(num_nodes)]
    base = genesis_state(model, seed)
    initial = evaluate(model, base, federation.test, threads=config.threads)
    result = SimulationResult(
        model=model,
        num_nodes=num_nodes,
        alpha=alpha,
        config=config,
        initial_accuracy=initial.accuracy,
        shard_sizes=[len(s) for s in shards],
    )
    for round_index in range(1, rounds + 1):
        deltas: list[StateDict] = []
        sizes: list[int] = []
        seconds: list[float] = []
        for node_index, shard in enumerate(shards):
            started = time.perf_counter()
            local = local_train(
                model, base, shard, replace(config, seed=round_seed(seed, round_index, node_index))
            )
            seconds.append(time.perf_counter() - started)
            deltas.append(local.delta)
            sizes.append(local.num_samples)
        epsilon: float | None = None
        if dp is not None:
            for i in range(num_nodes):
                if behaviours.get(i, Behaviour.HONEST) is Behaviour.HONEST:
                    private = privatize(
                        deltas[i], dp, seed=round_seed(seed, round_index, i), steps=round_index
                    )
                    deltas[i] = private.delta
                    epsilon = private.params["epsilon"]
        honest = [d for i, d in enumerate(deltas) if behaviours.get(i, Behaviour.HONEST) is Behaviour.HONEST]
        published = [
            apply_behaviour(
                behaviours.get(i, Behaviour.HONEST),
                delta,
                seed=round_seed(seed, round_index, i),
                copy_from=honest[0] if honest else None,
                benign=honest,
                lie_num_nodes=num_nodes,
                lie_num_malicious=num_lie,
            )
            for i, delta in enumerate(deltas)
        ]
        claims = [
            max_samples if behaviours.get(i) is Behaviour.SAMPLE_INFLATION else size
            for i, size in enumerate(sizes)
        ]
        base = apply_delta(base, aggregate(published, claims))
        evaluation = evaluate(model, base, federation.test, threads=config.threads)
        result.rounds.append(
            RoundRecord(
                round=round_index,
                accuracy=evaluation.accuracy,
                loss=evaluation.loss,
                train_seconds=seconds,
                epsilon=epsilon,
            )
        )
    return result
