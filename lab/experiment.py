"""The Byzantine robustness experiment (protocol v2): N non-IID members, f of them malicious, each round scored
by V validators (K of them Byzantine), settled by the contract's consensus rules and aggregated by the ledger's.

It is the pipeline minus transport. Members train with ``node.training`` and publish with ``node.behaviours``;
every published delta is written as a real update file (``ledger.updatefile``) with the metadata the chain would
record. Each honest validator runs the validator's hard checks (``ledger.checks``, the same functions the worker
calls: −10,000 and a reason code for a hard reject) and otherwise scores the update with the worker's scorer
against its own reference update, trained on its own slice of the held-out data (validator ``v`` of ``V`` holds
every ``V``-th image of the even half of the test split, from the ``v``-th: disjoint slices). Byzantine
validators score as their attack says (:class:`ValidatorAttack`). The consensus per update (the lower weighted
median by validator reputation), the accepted set, rewards, reputations and validator distances come from
``ledger.consensus``, the contract's integer-exact mirror; the aggregate of the accepted updates (FedAvg
weighted by consensus, or a robust rule) is written by ``ledger.aggregation`` exactly as the aggregator writes
it. So an update's CID, every score, the aggregate's CID and every settlement are the ones the real system
produces for the same inputs.

    config = ExperimentConfig(attack="sign-flip", num_malicious=3, pipeline=Pipeline.FEDAVG, seed=0)
    result = run_experiment(config)
    result.final_accuracy, result.malicious_reward_share, result.malicious_reputation()

Malicious members submit after the honest ones (a little-is-enough attacker is omniscient: it uses the honest
deltas of the round), except front-runners, which put another member's digest on chain first. The ``absent``
pseudo-attack leaves the f members out altogether: what is lost with their data alone. With Byzantine
validators every round also records where the honest validators agree on an update
(``RoundResult.honest_verdicts``: all of them score it > 0, or all ≤ 0), so an outcome the Byzantine ones turned
is counted per update (protocol R4 says there is none below half the weight), not guessed from the accuracy.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ledger.chain.scores import SCORE_ONE
from node.behaviours import Behaviour, apply_behaviour
from node.errors import InvalidParameter

if TYPE_CHECKING:
    from ledger.aggregation import AggregationSpec
    from ledger.checks import CheckLimits
    from node.data import Dataset, Federation
    from node.models import StateDict

HONEST = "honest"
ABSENT = "absent"
"""Pseudo-attacks: ``honest`` (f must be 0) and ``absent`` (the f members never submit)."""

ATTACKS: tuple[str, ...] = (
    Behaviour.SCALE.value,
    Behaviour.SIGN_FLIP.value,
    Behaviour.NOISE.value,
    Behaviour.FREE_RIDER.value,
    Behaviour.COPYCAT.value,
    Behaviour.LITTLE_IS_ENOUGH.value,
    Behaviour.SAMPLE_INFLATION.value,
    Behaviour.NOISY_COPY.value,
    Behaviour.FRONT_RUN.value,
)
FRACTIONS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4)
TARGET_ACCURACY = 0.90
LIE_DEDUP_STEP = 1e-3
"""Colluding little-is-enough members would otherwise publish the same vector and all but the first would be
rejected as duplicates; each scales its copy by ``1 + k·step`` (k its rank), which no duplicate check can tell
from an honest difference. The rescaled norms stay inside the benign range to within 1 %."""

DEFAULT_MAX_SAMPLES = 2**32
"""The task's ``maxSamples`` (the largest the contract allows): what a sample inflater claims."""


class ValidatorAttack(StrEnum):
    """How a Byzantine validator scores (it still commits and reveals in time: absence is not an attack)."""

    ALWAYS_REJECT = "always-reject"
    """−SCORE_ONE for every update."""
    ALWAYS_ACCEPT = "always-accept"
    """+SCORE_ONE for every update."""
    RANDOM = "random"
    """Uniform integers in [−SCORE_ONE, SCORE_ONE] (seeded per round and validator)."""
    COLLUDE = "collude"
    """+SCORE_ONE for the malicious members' updates, −SCORE_ONE for the honest members'."""
    LAZY = "lazy"
    """No work: commit–reveal hides this round's scores, so it copies each member's consensus of the previous
    round (published at finalization), or :data:`LAZY_SCORE` for a member without one."""


VALIDATOR_ATTACKS: tuple[ValidatorAttack, ...] = tuple(ValidatorAttack)
LAZY_SCORE = SCORE_ONE // 2
"""A lazy validator's guess for a member with no previous consensus: "probably useful"."""


class Pipeline(StrEnum):
    """What judges and combines a round's updates. Every pipeline but ``fedavg-unchecked`` runs the v2
    validators: hard checks, then each validator's score against its own reference update; consensus decides."""

    FEDAVG_UNCHECKED = "fedavg-unchecked"
    """Every validator scores every update SCORE_ONE: all accepted, equal weights (the baseline of no defence)."""
    FEDAVG = "fedavg"
    """The validators' scores, consensus, then FedAvg of the accepted updates weighted by consensus (default)."""
    TRIMMED_MEAN = "trimmed-mean"
    MEDIAN = "median"
    MULTI_KRUM = "multi-krum"

    @property
    def checked(self) -> bool:
        return self is not Pipeline.FEDAVG_UNCHECKED


PIPELINES: tuple[Pipeline, ...] = tuple(Pipeline)
DEFAULT_PIPELINE = Pipeline.FEDAVG
"""The protocol's default: FedAvg over the accepted set, weighted by consensus; 3 validators, quorum 2."""

DEFAULT_LOSS_DELTA = 5.0
"""The validators' held-out loss margin in nats (node/heldout.py explains the value): the scorer's loss gate."""

DEFAULT_TOLERATED = 3
"""The robust rules are configured for this many malicious members (30 % of 10, the goal's level): trimmed mean
cuts ``tolerated / N`` from each end, multi-krum takes ``f = tolerated`` and keeps ``n − f``."""


def aggregation_spec(pipeline: Pipeline, *, num_nodes: int, tolerated: int) -> AggregationSpec:
    """The on-chain rule of a pipeline (what the task's ``rule``/``ruleParam`` would hold)."""
    from ledger.aggregation import AggregationSpec

    if pipeline in (Pipeline.FEDAVG, Pipeline.FEDAVG_UNCHECKED):
        return AggregationSpec.fedavg()
    if pipeline is Pipeline.TRIMMED_MEAN:
        if not 0 < tolerated < num_nodes / 2:
            raise InvalidParameter("tolerated", tolerated, f"the trimmed mean needs 0 < f < {num_nodes}/2")
        return AggregationSpec.trimmed_mean(round(tolerated / num_nodes, 4))
    if pipeline is Pipeline.MEDIAN:
        return AggregationSpec.median()
    return AggregationSpec.multi_krum(tolerated)


def default_limits() -> CheckLimits:
    """The validators' hard-check limits: the worker's defaults (z-score of the log norm at 3.5, duplicates, the
    zero-update floor, the norm in proportion to the base's, no absolute norm bound). The held-out loss is not a
    hard check in v2: each validator's data differs, so it is part of the score (the loss gate)."""
    from ledger.checks import CheckLimits

    return CheckLimits(loss_delta=None)


def validator_heldout(seed: int, validator: int, validators: int) -> Dataset:
    """Validator ``validator``'s private held-out slice: every ``validators``-th image of the even half of the
    run's test split (``node.heldout``), from the ``validator``-th. Slices are disjoint and never in a shard."""
    from node.heldout import heldout_data

    data = heldout_data(seed)
    return data.subset(np.arange(validator, len(data), validators))


def data_loss(data: Dataset) -> Callable[[Mapping[str, Any]], float]:
    """A validator's held-out evaluator (``--evaluator``): full weights in, mean cross-entropy on ``data`` out
    (``node.heldout:slice_loss`` for any slice, as :func:`data_trainer` is ``node.heldout:reference``)."""
    from node.basemodel import infer_model
    from node.training import evaluate

    def loss(weights: Mapping[str, Any]) -> float:
        state = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        model = infer_model(state)
        if model is None:
            raise InvalidParameter("weights", sorted(state), "no registered architecture has these keys")
        return evaluate(model, state, data, threads=1).loss

    return loss


def heldout_loss(seed: int) -> Callable[[Mapping[str, Any]], float]:
    """The whole held-out half's loss (``node.heldout``) for full weights: the v1 validators' evaluator."""
    from node.heldout import heldout_data

    return data_loss(heldout_data(seed))


def data_trainer(model: str, data: Dataset) -> Callable[..., Mapping[str, np.ndarray]]:
    """A validator's reference trainer (``worker.reference``'s ``trainer(weights, *, seed, steps)``): the members'
    training recipe on ``data`` for at least ``steps`` optimiser steps (whole epochs), returning the delta.

    It is ``node.heldout:reference`` (the plug-in the demo's validators load with ``HELDOUT_SLICE=v/V``) for any
    slice: that one holds seed 0's split, while a run of another seed must take its own split's held-out half
    (seed 0's could be in its shards). ``tests/lab/test_experiment.py`` checks they agree bit for bit on seed 0."""
    from node.training import default_config, local_train

    recipe = default_config(model)
    per_epoch = -(-len(data) // recipe.batch_size)

    def train(weights: Mapping[str, np.ndarray], *, seed: int, steps: int) -> Mapping[str, np.ndarray]:
        epochs = max(1, -(-steps // per_epoch))
        return local_train(model, weights, data, replace(recipe, seed=seed, epochs=epochs)).delta

    return train


# --- configuration -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentConfig:
    attack: str
    """A behaviour of ``node.behaviours`` (not honest), or ``honest`` / ``absent``."""
    num_malicious: int
    pipeline: Pipeline
    seed: int = 0
    num_nodes: int = 10
    alpha: float = 0.5
    rounds: int = 10
    model: str = "mlp"
    validators: int = 3
    quorum: int = 2
    byzantine_validators: int = 0
    """How many of the validators (the last ones of the set) are Byzantine."""
    validator_attack: str | None = None
    """A :class:`ValidatorAttack`, exactly when ``byzantine_validators`` > 0."""
    budget: int = 10**18
    """Tokens (base units) minted per round (``rewardPerRound``)."""
    max_samples: int = DEFAULT_MAX_SAMPLES
    """The task's ``maxSamples``: the largest claim the chain accepts."""
    tolerated: int = DEFAULT_TOLERATED
    task_id: int = 1
    loss_delta: float | None = DEFAULT_LOSS_DELTA
    """The validators' held-out loss margin (the scorer's loss gate; None: no gate)."""
    malicious: tuple[int, ...] | None = None
    """Which members are malicious (None: a seeded choice, :func:`malicious_members`); e.g. the demo's last f."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "pipeline", Pipeline(self.pipeline))
        if self.attack not in (*ATTACKS, HONEST, ABSENT):
            raise InvalidParameter("attack", self.attack, f"one of {', '.join((*ATTACKS, HONEST, ABSENT))}")
        if not 0 <= self.num_malicious < self.num_nodes:
            raise InvalidParameter("num_malicious", self.num_malicious, f"must be in [0, {self.num_nodes})")
        if (self.attack == HONEST) != (self.num_malicious == 0):
            raise InvalidParameter(
                "attack", self.attack, "use `honest` exactly when there are no malicious members"
            )
        if self.malicious is not None:
            object.__setattr__(self, "malicious", tuple(sorted(int(m) for m in self.malicious)))
            if len(set(self.malicious)) != self.num_malicious or not all(
                0 <= m < self.num_nodes for m in self.malicious
            ):
                raise InvalidParameter(
                    "malicious",
                    self.malicious,
                    f"{self.num_malicious} distinct members in [0, {self.num_nodes})",
                )
        if self.rounds < 1 or self.validators < 1 or not 1 <= self.quorum <= self.validators:
            raise InvalidParameter(
                "rounds/validators/quorum",
                (self.rounds, self.validators, self.quorum),
                "need rounds ≥ 1 and 1 ≤ quorum ≤ validators",
            )
        if not 0 <= self.byzantine_validators < self.validators:
            raise InvalidParameter(
                "byzantine_validators",
                self.byzantine_validators,
                f"must be in [0, {self.validators}): at least one validator is honest",
            )
        if self.validator_attack is not None:
            object.__setattr__(self, "validator_attack", str(ValidatorAttack(self.validator_attack)))
        if (self.validator_attack is None) != (self.byzantine_validators == 0):
            raise InvalidParameter(
                "validator_attack",
                self.validator_attack,
                "name a validator attack exactly when there are Byzantine validators",
            )
        if not 1 <= self.max_samples <= 2**32:
            raise InvalidParameter(
                "max_samples", self.max_samples, "must be in [1, 2**32] (the contract's bound)"
            )

    @property
    def fraction(self) -> float:
        return self.num_malicious / self.num_nodes

    @property
    def label(self) -> str:
        byzantine = (
            f" byz={self.byzantine_validators}/{self.validators}:{self.validator_attack}"
            if self.byzantine_validators
            else ""
        )
        return f"{self.attack} f={self.num_malicious}/{self.num_nodes} {self.pipeline}{byzantine} seed={self.seed}"

    @property
    def spec(self) -> AggregationSpec:
        return aggregation_spec(self.pipeline, num_nodes=self.num_nodes, tolerated=self.tolerated)

    @property
    def malicious_set(self) -> list[int]:
        if self.malicious is not None:
            return list(self.malicious)
        return malicious_members(self.num_nodes, self.num_malicious, self.seed)

    @property
    def byzantine_set(self) -> list[int]:
        """Indexes (in the validator set) of the Byzantine validators: the last ``byzantine_validators``."""
        return list(range(self.validators - self.byzantine_validators, self.validators))

    def to_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "pipeline": str(self.pipeline)}
        out["malicious"] = None if self.malicious is None else list(self.malicious)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentConfig:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def malicious_members(num_nodes: int, num_malicious: int, seed: int) -> list[int]:
    """Which members are malicious: a seeded permutation's prefix, so the set for f is inside the set for f+1."""
    order = np.random.default_rng([0x6D616C, seed]).permutation(num_nodes)
    return sorted(int(i) for i in order[:num_malicious])


@dataclass(frozen=True)
class Roles:
    """The addresses of a real run's members (``lab.consortium``'s dev layout: 0 admin, 1 aggregator, then the
    validators, then the contributors), so the pure run writes the same metadata, hence the same CIDs."""

    admin: str
    aggregator: str
    validators: tuple[str, ...]
    contributors: tuple[str, ...]


@functools.lru_cache(maxsize=8)
def dev_roles(validators: int, contributors: int, mnemonic: str | None = None) -> Roles:
    from lab.consortium import RoleKeys

    keys = RoleKeys.dev(validators, contributors, mnemonic)
    return Roles(
        keys.admin[0],
        keys.aggregator[0],
        tuple(address for address, _ in keys.validators),
        tuple(address for address, _ in keys.contributors),
    )


# --- what the members publish --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    """One member's submission of a round, in submission order."""

    node: int
    delta: StateDict = field(repr=False)
    num_samples: int
    malicious: bool
    digest_of: int | None = None
    """A front-runner's submission names another member's digest: that member (the bytes are the author's file,
    whose metadata names the author). None: the member's own file."""


def publish_round(
    config: ExperimentConfig,
    federation: Federation,
    base: Mapping[str, np.ndarray],
    round_: int,
    malicious: Sequence[int],
    *,
    previous: Sequence[Published] = (),
) -> list[Published]:
    """Every member's submission for ``round_`` on ``base``: honest members first (by index), then the malicious;
    front-runners go first (each ahead of the author whose digest it copies).

    ``previous`` is the last round's accepted submissions (their content is public once that round's submissions
    closed, and acceptance says they are worth copying): what a noisy copier copies; in round 1, or after a round
    that accepted nothing, it copies this round's content as if it had leaked (a collusion).
    Deterministic for a given config, base and round: the pure pipeline and the real one call this same function.
    """
    from node.training import default_config, local_train, round_seed

    bad = set(malicious)
    train_config = default_config(config.model)
    honest: list[Published] = []
    attackers = [] if config.attack == ABSENT else sorted(bad)
    needs_own_delta = config.attack in (
        Behaviour.SCALE,
        Behaviour.SIGN_FLIP,
        Behaviour.NOISE,
        Behaviour.SAMPLE_INFLATION,
    )
    own: dict[int, StateDict] = {}
    for node in range(config.num_nodes):
        if node in bad and not needs_own_delta:
            continue  # these attackers do not train (or are absent)
        shard = federation.node_data(node)
        local = local_train(
            config.model, base, shard, replace(train_config, seed=round_seed(config.seed, round_, node))
        )
        if node in bad:
            own[node] = local.delta
        else:
            honest.append(Published(node, local.delta, local.num_samples, malicious=False))
    benign = [p.delta for p in honest]
    earlier = [p for p in previous if not p.malicious and p.digest_of is None]
    front: list[Published] = []
    late: list[Published] = []
    for rank, node in enumerate(attackers):
        victim = honest[rank % len(honest)]
        copied = victim.delta
        if config.attack == Behaviour.NOISY_COPY and earlier:
            copied = earlier[rank % len(earlier)].delta
        delta = apply_behaviour(
            config.attack,
            own.get(node, benign[0]),
            seed=round_seed(config.seed, round_, node),
            copy_from=benign[0] if config.attack == Behaviour.COPYCAT else copied,
            benign=benign,
            lie_num_nodes=config.num_nodes,
            lie_num_malicious=len(attackers),
        )
        if config.attack == Behaviour.LITTLE_IS_ENOUGH and rank:
            factor = 1.0 + LIE_DEDUP_STEP * rank
            delta = {k: (v * v.dtype.type(factor)).astype(v.dtype) for k, v in delta.items()}
        # What it claims: the task's maximum for an inflater, the author's count for a front-runner (its claim
        # must match the copied file's metadata to get past anything), else what it would have trained on.
        claimed = len(federation.shards[node])
        if config.attack == Behaviour.SAMPLE_INFLATION:
            claimed = config.max_samples
        if config.attack == Behaviour.FRONT_RUN:
            claimed = victim.num_samples
            front.append(Published(node, delta, claimed, malicious=True, digest_of=victim.node))
        else:
            late.append(Published(node, delta, claimed, malicious=True))
    return front + honest + late


# --- results -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundResult:
    round: int
    accuracy: float
    loss: float
    submitted: list[int]
    """Members in submission order (update index → member)."""
    reasons: list[int]
    """The honest validators' hard-check reason code per update index (0 = passed; all 0 without checks)."""
    accepted: list[int]
    """Members whose update is in the accepted set (consensus > 0 with a quorum of reveals)."""
    rewards: dict[int, int]
    """Contributor reward per member this round (token base units)."""
    reputations: dict[int, int]
    """Contributor reputation of every member after this round's settlement."""
    validator_rewards: int
    """Everything paid to validators this round (``validator_pay`` per validator)."""
    aggregate_cid: str
    seconds: float
    cids: list[str] = field(default_factory=list)
    """The update files' CIDs, in submission order (a front-runner's is its author's)."""
    consensus: list[int] = field(default_factory=list)
    """The consensus score per update index."""
    scores: list[list[int]] = field(default_factory=list)
    """Each validator's revealed scores (validator-set order, then update index)."""
    revealed_reasons: list[list[int]] = field(default_factory=list)
    """Each validator's revealed reason codes (an honest one's include its own loss gate; 0 for a Byzantine one)."""
    distances: list[int] = field(default_factory=list)
    """Each validator's distance to the consensus (mean capped |s − c|)."""
    validator_pay: list[int] = field(default_factory=list)
    """Each validator's reward this round."""
    validator_reputations: list[int] = field(default_factory=list)
    """Each validator's reputation after this round's settlement."""
    honest_verdicts: list[int] = field(default_factory=list)
    """Per update index, the honest validators' unanimous say: +1 every one scored it > 0, −1 every one scored it
    ≤ 0, 0 they differ (then the outcome is theirs to split and a Byzantine minority may tip it)."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rewards"] = {str(k): v for k, v in self.rewards.items()}
        out["reputations"] = {str(k): v for k, v in self.reputations.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoundResult:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["rewards"] = {int(k): int(v) for k, v in data["rewards"].items()}
        values["reputations"] = {int(k): int(v) for k, v in data["reputations"].items()}
        return cls(**values)


@dataclass(frozen=True)
class ExperimentResult:
    config: ExperimentConfig
    malicious: list[int]
    initial_accuracy: float
    genesis_cid: str
    rounds: list[RoundResult]
    seconds: float = 0.0

    @property
    def final_accuracy(self) -> float:
        return self.rounds[-1].accuracy if self.rounds else self.initial_accuracy

    def rounds_to(self, accuracy: float = TARGET_ACCURACY) -> int | None:
        """The first round whose aggregate reaches ``accuracy`` on the test set, or None."""
        return next((r.round for r in self.rounds if r.accuracy >= accuracy), None)

    @property
    def contributor_rewards(self) -> int:
        return sum(sum(r.rewards.values()) for r in self.rounds)

    @property
    def malicious_rewards(self) -> int:
        bad = set(self.malicious)
        return sum(v for r in self.rounds for k, v in r.rewards.items() if k in bad)

    @property
    def malicious_reward_share(self) -> float:
        """Malicious members' part of everything paid to contributors over the run (0 when nothing was paid)."""
        total = self.contributor_rewards
        return self.malicious_rewards / total if total else 0.0

    @property
    def byzantine_validator_reward_share(self) -> float:
        """The Byzantine validators' part of everything paid to validators over the run (0 when nothing was)."""
        byzantine = self.config.byzantine_set
        total = sum(sum(r.validator_pay) for r in self.rounds)
        theirs = sum(r.validator_pay[v] for r in self.rounds for v in byzantine if v < len(r.validator_pay))
        return theirs / total if total else 0.0

    def validator_reward_shares(self) -> list[float]:
        """Each validator's part of everything paid to validators over the run."""
        total = sum(sum(r.validator_pay) for r in self.rounds)
        per = [sum(col) for col in zip(*(r.validator_pay for r in self.rounds), strict=True)]
        return [p / total if total else 0.0 for p in per]

    def malicious_reputation(self) -> list[float]:
        """Mean contributor reputation of the malicious members after each round (empty without them)."""
        if not self.malicious or self.config.attack == ABSENT:
            return []
        return [float(np.mean([r.reputations[m] for m in self.malicious])) for r in self.rounds]

    def malicious_accepted(self) -> int:
        """Malicious updates that made it into an accepted set, over all rounds."""
        bad = set(self.malicious)
        return sum(1 for r in self.rounds for m in r.accepted if m in bad)

    def honest_rejected(self) -> int:
        """Honest updates left out of an accepted set (false positives), over all rounds."""
        bad = set(self.malicious)
        return sum(1 for r in self.rounds for m in r.submitted if m not in bad and m not in r.accepted)

    def byzantine_flips(self) -> tuple[int, int]:
        """(honest updates rejected although every honest validator scored them > 0, malicious updates accepted
        although every honest validator scored them ≤ 0), over all rounds: outcomes the Byzantine validators turned
        against the honest ones' unanimous say. (0, 0) whenever they hold less than half the weight (R4)."""
        bad = set(self.malicious)
        rejected = accepted = 0
        for r in self.rounds:
            if not r.honest_verdicts:
                continue  # a result saved before protocol v2 (no scores)
            for node, verdict in zip(r.submitted, r.honest_verdicts, strict=True):
                if node not in bad and verdict > 0 and node not in r.accepted:
                    rejected += 1
                elif node in bad and verdict < 0 and node in r.accepted:
                    accepted += 1
        return rejected, accepted

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "malicious": self.malicious,
            "initial_accuracy": self.initial_accuracy,
            "genesis_cid": self.genesis_cid,
            "rounds": [r.to_dict() for r in self.rounds],
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentResult:
        return cls(
            config=ExperimentConfig.from_dict(data["config"]),
            malicious=list(data["malicious"]),
            initial_accuracy=float(data["initial_accuracy"]),
            genesis_cid=str(data["genesis_cid"]),
            rounds=[RoundResult.from_dict(r) for r in data["rounds"]],
            seconds=float(data.get("seconds", 0.0)),
        )


# --- the pure pipeline: files ----------------------------------------------------------------------------------


def write_genesis_file(path: Path, model: str, seed: int) -> str:
    """The task's genesis model file (as the demo writes it); returns its CID."""
    from ledger.updatefile import GenesisMeta, write_aggregate
    from node.models import genesis_state

    return write_aggregate(
        path, genesis_state(model, seed), GenesisMeta(model=model, params={"seed": seed})
    ).cid


def read_weights(path: Path) -> StateDict:
    from ledger.updatefile import UpdateFile

    with UpdateFile.open(path) as f:
        return {k: np.array(v, copy=True) for k, v in f.tensors()}


def flatten(delta: Mapping[str, np.ndarray]) -> np.ndarray:
    """An update's values as one float64 vector, in key order (the update file's tensor order)."""
    return np.concatenate([np.asarray(delta[k], dtype=np.float64).ravel() for k in sorted(delta)])


# --- the validators: one call site per protocol function -----------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    """A round's hard-check verdicts: one reason code per update index, in submission order, and the vector of
    each update that passed them (None for the others)."""

    reasons: list[int]
    vectors: list[np.ndarray | None] = field(default_factory=list, repr=False)
    verdicts: list[Any] = field(default_factory=list, repr=False)
    """The ``ledger.checks.Verdict`` of each update."""

    @property
    def accepted(self) -> list[bool]:
        return [r == 0 for r in self.reasons]


History = Sequence[tuple[str, np.ndarray]]
"""``(contributor address, vector)`` of the updates the last rounds accepted: what near copies are checked against."""


def judge_files(
    paths: Sequence[Path],
    *,
    base_path: Path,
    records: Sequence[Any],
    limits: CheckLimits,
    history: History = (),
    evaluate: Callable[[Mapping[str, Any]], float] | None = None,
) -> Judgement:
    """The validator's hard checks on a round's update files (``records``: the ``ChainRecord`` of each), with the
    whole-vector copy checks against ``history`` (protocol R1)."""
    # The validator's own pure functions, so that the experiment judges exactly as a worker does.
    from ledger.aggregation.source import describe_source
    from ledger.checks import judge_round, judge_update
    from ledger.checks.vectors import flatten as flatten_source
    from ledger.updatefile import UpdateFile

    with UpdateFile.open(base_path) as base:
        layout = describe_source(base)
        judged = []
        vectors: list[np.ndarray | None] = []
        base_loss: float | None = None  # the worker evaluates the base once per round, then remembers it
        for path, record in zip(paths, records, strict=True):
            one = judge_update(
                path,
                base=base,
                layout=layout,
                record=record,
                limits=limits,
                evaluate=evaluate,
                base_loss=base_loss,
            )
            if one.loss is not None and one.loss.base_loss is not None:
                base_loss = one.loss.base_loss
            judged.append(one)
            vector = None
            if one.verdict.accepted:
                with UpdateFile.open(path) as update:
                    vector = flatten_source(update, layout)
            vectors.append(vector)
    verdicts = judge_round(
        judged, limits, vectors=vectors, authors=[r.contributor for r in records], history=history
    )
    reasons = [int(v.reason) for v in verdicts]
    return Judgement(reasons, [v if not r else None for v, r in zip(vectors, reasons, strict=True)], verdicts)


def honest_scores(
    config: ExperimentConfig,
    *,
    base_path: Path,
    paths: Sequence[Path],
    judgement: Judgement,
    data: Dataset,
    round_: int,
    validator: str,
) -> tuple[list[int], list[int]]:
    """An honest validator's (scores, reasons) as the worker computes them (``worker.scoring``): −SCORE_ONE with
    the reason for a hard reject, else the score against its own reference update (``worker.reference``, trained
    on its slice ``data``), with the loss gate on the whole held-out half (the demo's ``--evaluator
    node.heldout:loss``: the same for every honest validator)."""
    from ledger.aggregation.source import describe_source
    from ledger.checks import reveal_arrays
    from ledger.checks.vectors import norm
    from ledger.updatefile import UpdateFile
    from worker.reference import reference_seed, reference_update
    from worker.scoring import round_scores, score_update

    margin = config.loss_delta
    evaluate = heldout_loss(config.seed) if margin is not None else None
    scored = {}
    with UpdateFile.open(base_path) as base:
        layout = describe_source(base)
        reference = reference_update(
            data_trainer(config.model, data),
            base,
            seed=reference_seed(config.task_id, round_, validator),
            layout=layout,
        )
        base_loss: float | None = None  # evaluated once per round, as the worker does
        reference_norm = norm(reference)  # and the reference's norm measured once, as the worker does
        for i, (path, verdict) in enumerate(zip(paths, judgement.verdicts, strict=True)):
            if not verdict.accepted:
                continue
            one = score_update(
                path,
                base=base,
                reference=reference,
                evaluate=evaluate,
                margin=margin,
                base_loss=base_loss,
                vector=judgement.vectors[i],
                layout=layout,
                reference_norm=reference_norm,
            )
            base_loss = one.base_loss if one.base_loss is not None else base_loss
            scored[i] = one
    return reveal_arrays(round_scores(judgement.verdicts, scored))


def byzantine_scores(
    attack: ValidatorAttack,
    authors: Sequence[int],
    malicious: Sequence[int],
    previous_consensus: Mapping[int, int],
    *,
    seed: int,
) -> list[int]:
    """A Byzantine validator's scores for updates by ``authors`` (member per update index)."""
    if attack is ValidatorAttack.ALWAYS_REJECT:
        return [-SCORE_ONE] * len(authors)
    if attack is ValidatorAttack.ALWAYS_ACCEPT:
        return [SCORE_ONE] * len(authors)
    if attack is ValidatorAttack.RANDOM:
        rng = np.random.default_rng(seed)
        return [int(x) for x in rng.integers(-SCORE_ONE, SCORE_ONE, size=len(authors), endpoint=True)]
    if attack is ValidatorAttack.COLLUDE:
        bad = set(malicious)
        return [SCORE_ONE if m in bad else -SCORE_ONE for m in authors]
    return [previous_consensus.get(m, LAZY_SCORE) for m in authors]


# --- what the honest validators agree on ----------------------------------------------------------------------


def honest_verdicts(scores: Sequence[Sequence[int]], honest: Sequence[int]) -> list[int]:
    """Per update: +1 if every honest validator scored it > 0, −1 if every one scored it ≤ 0, else 0."""
    if not scores:
        return []
    out = []
    for i in range(len(scores[0])):
        says = [scores[v][i] > 0 for v in honest]
        out.append(1 if all(says) else -1 if not any(says) else 0)
    return out


# --- aggregation ---------------------------------------------------------------------------------------------


def aggregate_files(
    base_path: Path,
    inputs: Sequence[tuple[bytes, Path, int]],
    spec: AggregationSpec,
    out: Path,
    *,
    task: int,
    round_: int,
    parent: str,
    consensus: Sequence[int],
    accepted: int,
) -> str:
    """Aggregate a round's accepted updates as the aggregator does; returns the file's CID.

    ``inputs`` are ``(digest, update file, claimed samples)`` per update index; ``consensus`` and the ``accepted``
    bitmap are the contract's: FedAvg weighs each accepted update by its consensus (``consensus_weights``, R5);
    the claimed sample count is carried for the record only."""
    import contextlib

    from ledger.aggregation import Contribution, consensus_weights, prepare
    from ledger.aggregation.output import write_aggregation
    from ledger.updatefile import UpdateFile

    weights = consensus_weights(consensus, accepted)
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(UpdateFile.open(base_path))
        contributions = [
            Contribution(
                inputs[i][0],
                source=stack.enter_context(UpdateFile.open(inputs[i][1])),
                weight=w,
                num_samples=inputs[i][2],
            )
            for i, w in weights.items()
        ]
        agg = prepare(base, contributions, spec)
        return write_aggregation(out, agg, task=task, round=round_, parent=parent).cid


# --- the pure pipeline ---------------------------------------------------------------------------------------


Observer = Callable[[ExperimentConfig, RoundResult], None]


@dataclass
class RoundFiles:
    """One round's submissions as files and chain records, in submission order."""

    paths: list[Path] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)
    cids: list[str] = field(default_factory=list)


def write_round(
    config: ExperimentConfig,
    roles: Roles,
    *,
    published: Sequence[Published],
    base_cid: str,
    round_: int,
    where: Path,
) -> RoundFiles:
    """Each member's update file with the metadata the chain records; a front-runner's submission records the
    author's digest (the chain accepts a digest twice) under the front-runner's name."""
    from ledger.checks import ChainRecord
    from ledger.content import cid_to_digest
    from ledger.updatefile import UpdateMeta, write_update

    files: dict[int, tuple[Path, str]] = {}
    for p in published:
        if p.digest_of is None:
            meta = UpdateMeta(
                task=config.task_id,
                round=round_,
                base=base_cid,
                contributor=roles.contributors[p.node],
                num_samples=p.num_samples,
            )
            path = where / f"update-{p.node}.safetensors"
            files[p.node] = (path, write_update(path, p.delta, meta).cid)
    out = RoundFiles()
    for p in published:
        path, cid = files[p.node if p.digest_of is None else p.digest_of]
        digest = cid_to_digest(cid)
        out.paths.append(path)
        out.cids.append(cid)
        out.digests.append(digest)
        out.records.append(
            ChainRecord(
                digest=digest,
                task=config.task_id,
                round=round_,
                base=cid_to_digest(base_cid),
                contributor=roles.contributors[p.node],
                num_samples=p.num_samples,
            )
        )
    return out


def score_round(
    config: ExperimentConfig,
    published: Sequence[Published],
    files: RoundFiles,
    *,
    roles: Roles,
    base_path: Path,
    limits: CheckLimits,
    history: History,
    malicious: Sequence[int],
    previous_consensus: Mapping[int, int],
    round_: int,
) -> tuple[list[int], list[list[int]], list[list[int]]]:
    """(hard-check reason per update, every validator's scores, every validator's reasons): what each reveals."""
    n = len(published)
    if not config.pipeline.checked:
        return (
            [0] * n,
            [[SCORE_ONE] * n for _ in range(config.validators)],
            [[0] * n for _ in range(config.validators)],
        )
    judgement = judge_files(
        files.paths, base_path=base_path, records=files.records, limits=limits, history=history
    )
    byzantine = set(config.byzantine_set)
    authors = [p.node for p in published]
    scores: list[list[int]] = []
    reasons: list[list[int]] = []
    for v in range(config.validators):
        if v in byzantine:
            attack = ValidatorAttack(str(config.validator_attack))
            seed = int(np.random.default_rng([config.seed, round_, v]).integers(2**63))
            scores.append(byzantine_scores(attack, authors, malicious, previous_consensus, seed=seed))
            reasons.append([0] * n)
        else:
            mine, why = honest_scores(
                config,
                base_path=base_path,
                paths=files.paths,
                judgement=judgement,
                data=validator_heldout(config.seed, v, config.validators),
                round_=round_,
                validator=roles.validators[v],
            )
            scores.append(mine)
            reasons.append(why)
    return judgement.reasons, scores, reasons


def run_experiment(
    config: ExperimentConfig,
    *,
    workdir: Path | None = None,
    limits: CheckLimits | None = None,
    observer: Observer | None = None,
) -> ExperimentResult:
    """Run ``config.rounds`` rounds of the pure pipeline; files go to a temporary directory unless ``workdir``."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="meshprov-experiment-") as tmp:
            return run_experiment(config, workdir=Path(tmp), limits=limits, observer=observer)

    from ledger.chain.types import Role
    from ledger.checks.copies import NEAR_COPY_ROUNDS
    from ledger.consensus import ConsensusBook
    from node.data import make_federation
    from node.training import evaluate

    started = time.perf_counter()
    limits = limits if limits is not None else default_limits()
    roles = dev_roles(config.validators, config.num_nodes)
    federation = make_federation(config.num_nodes, config.alpha, config.seed)
    malicious = config.malicious_set
    workdir.mkdir(parents=True, exist_ok=True)
    base_path = workdir / "genesis.safetensors"
    base_cid = genesis_cid = write_genesis_file(base_path, config.model, config.seed)
    base = read_weights(base_path)
    initial = evaluate(config.model, base, federation.test, threads=1).accuracy
    book = ConsensusBook()
    for address in roles.contributors:
        book.grant(address, Role.CONTRIBUTOR)
    honest_validators = [v for v in range(config.validators) if v not in set(config.byzantine_set)]
    spec = config.spec
    history: deque[list[tuple[str, np.ndarray]]] = deque(maxlen=NEAR_COPY_ROUNDS)
    previous: list[Published] = []
    previous_consensus: dict[int, int] = {}
    rounds: list[RoundResult] = []
    for r in range(1, config.rounds + 1):
        round_started = time.perf_counter()
        round_dir = workdir / f"round-{r}"
        round_dir.mkdir(exist_ok=True)
        published = publish_round(config, federation, base, r, malicious, previous=previous)
        files = write_round(config, roles, published=published, base_cid=base_cid, round_=r, where=round_dir)
        weights = book.freeze(roles.validators)  # the validator set's weights, frozen at round open
        reasons, scores, revealed_reasons = score_round(
            config,
            published,
            files,
            roles=roles,
            base_path=base_path,
            limits=limits,
            history=[past for accepted in history for past in accepted],
            malicious=malicious,
            previous_consensus=previous_consensus,
            round_=r,
        )
        settled = book.settle(
            [roles.contributors[p.node] for p in published],
            roles.validators,
            weights,
            scores,
            quorum=config.quorum,
            budget=config.budget,
        )
        consensus = list(settled.consensus)
        contributors, validators = (
            settled.settlements[: len(published)],
            settled.settlements[len(published) :],
        )
        chosen = settled.accepted
        if chosen:
            out = round_dir / "aggregate.safetensors"
            base_cid = aggregate_files(
                base_path,
                [
                    (d, path, p.num_samples)
                    for d, path, p in zip(files.digests, files.paths, published, strict=True)
                ],
                spec,
                out,
                task=config.task_id,
                round_=r,
                parent=base_cid,
                consensus=consensus,
                accepted=settled.accepted_bitmap,
            )
            base = read_weights(out)
            next_base = workdir / f"base-{r}.safetensors"
            out.replace(next_base)
            base_path.unlink()
            base_path = next_base
        evaluation = evaluate(config.model, base, federation.test, threads=1)
        result = RoundResult(
            round=r,
            accuracy=evaluation.accuracy,
            loss=evaluation.loss,
            submitted=[p.node for p in published],
            reasons=reasons,
            accepted=sorted(published[i].node for i in chosen),
            rewards={p.node: s.reward for p, s in zip(published, contributors, strict=True)},
            reputations={i: book.reputation(a, Role.CONTRIBUTOR) for i, a in enumerate(roles.contributors)},
            validator_rewards=sum(s.reward for s in validators),
            aggregate_cid=base_cid,
            seconds=time.perf_counter() - round_started,
            cids=files.cids,
            consensus=consensus,
            scores=scores,
            revealed_reasons=revealed_reasons,
            distances=[s.distance for s in validators],
            validator_pay=[s.reward for s in validators],
            validator_reputations=[book.reputation(v, Role.VALIDATOR) for v in roles.validators],
            honest_verdicts=honest_verdicts(scores, honest_validators),
        )
        for path in set(files.paths):
            path.unlink()
        # What the round accepted is what later rounds' copies are checked against (ledger.checks.copies).
        history.append([(roles.contributors[published[i].node], flatten(published[i].delta)) for i in chosen])
        previous = [published[i] for i in chosen]  # what a copier can take: the accepted, now public
        previous_consensus = {p.node: c for p, c in zip(published, consensus, strict=True)}
        rounds.append(result)
        if observer is not None:
            observer(config, result)
    return ExperimentResult(
        config, malicious, initial, genesis_cid, rounds, seconds=time.perf_counter() - started
    )


# --- sweeps --------------------------------------------------------------------------------------------------


def sweep_configs(
    *,
    attacks: Sequence[str] = ATTACKS,
    fractions: Sequence[float] = FRACTIONS,
    pipelines: Sequence[Pipeline] = PIPELINES,
    seeds: Sequence[int] = (0, 1, 2),
    validator_attacks: Sequence[str | None] = (None,),
    byzantine_validators: int = 1,
    **common: Any,
) -> list[ExperimentConfig]:
    """Every (validator attack, f, attack, pipeline, seed); f = 0 is one ``honest`` run per pipeline and seed, not
    one per attack. A validator attack None is the run with honest validators; any other has
    ``byzantine_validators`` Byzantine validators."""
    num_nodes = int(common.get("num_nodes", 10))
    out: list[ExperimentConfig] = []
    for va in validator_attacks:
        byzantine: dict[str, Any] = {
            "validator_attack": va,
            "byzantine_validators": 0 if va is None else byzantine_validators,
        }
        for fraction in fractions:
            f = round(fraction * num_nodes)
            if abs(f - fraction * num_nodes) > 1e-9:
                raise InvalidParameter(
                    "fractions", fraction, f"must make a whole number of the {num_nodes} members"
                )
            for attack in [HONEST] if f == 0 else attacks:
                for pipeline in pipelines:
                    for seed in seeds:
                        out.append(
                            ExperimentConfig(attack, f, Pipeline(pipeline), seed, **common, **byzantine)
                        )
    return out


def _run_one(config: ExperimentConfig) -> dict[str, Any]:
    return run_experiment(config).to_dict()


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_sweep(
    configs: Sequence[ExperimentConfig],
    *,
    jobs: int = 2,
    progress: Callable[[ExperimentResult, int, int], None] | None = None,
) -> list[ExperimentResult]:
    """Run every config (in a pool of ``jobs`` processes, each with one torch thread); results in config order."""
    results: dict[int, ExperimentResult] = {}
    if jobs <= 1:
        _init_worker()
        for i, config in enumerate(configs):
            results[i] = run_experiment(config)
            if progress is not None:
                progress(results[i], len(results), len(configs))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")  # no forked torch or open files
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker) as pool:
            futures = {pool.submit(_run_one, config): i for i, config in enumerate(configs)}
            for future in as_completed(futures):
                i = futures[future]
                results[i] = ExperimentResult.from_dict(future.result())
                if progress is not None:
                    progress(results[i], len(results), len(configs))
    return [results[i] for i in range(len(configs))]
