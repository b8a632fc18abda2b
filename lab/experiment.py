"""The Byzantine robustness experiment: N non-IID members, f of them malicious, each round judged by the
validators' checks, settled by the contract's rules and aggregated by the ledger's rules.

It is the pipeline minus transport. Members train with ``node.training`` and publish with ``node.behaviours``;
every published delta is written as a real update file (``ledger.updatefile``) with the metadata the chain would
record; the verdicts come from the validator's own functions (``worker.verify.judge_update`` / ``judge_round``,
which call ``ledger.checks``, with the demo's held-out loss check); the accepted set is the quorum outcome of the
validators' ballots; rewards and reputations are settled by ``ledger.rewards`` (the contract's integer formulas);
the aggregate is written by ``ledger.aggregation`` exactly as the aggregator writes it. So an update's CID, the
aggregate's CID and every settlement are the ones the real system produces for the same inputs
(``benchmarks/byzantine.py --e2e`` checks that against anvil and real worker processes).

    config = ExperimentConfig(attack="sign-flip", num_malicious=3, pipeline=Pipeline.FEDAVG, seed=0)
    result = run_experiment(config)
    result.final_accuracy, result.rounds_to(0.9), result.malicious_reward_share, result.malicious_reputation()

Validators are honest and run identical deterministic checks, so they cast identical ballots: the checks run
once per update and every validator's ballot is that verdict. Malicious members submit after the honest ones
(a copycat must see what it copies; little-is-enough uses the honest deltas of the round: an omniscient
attacker). The ``absent`` pseudo-attack leaves the f members out altogether: what is lost with their data alone.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from node.behaviours import Behaviour, apply_behaviour
from node.errors import InvalidParameter

if TYPE_CHECKING:
    from ledger.aggregation import AggregationSpec
    from ledger.checks import CheckLimits
    from node.data import Federation
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
)
FRACTIONS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4)
TARGET_ACCURACY = 0.90
LIE_DEDUP_STEP = 1e-3
"""Colluding little-is-enough members would otherwise publish the same vector and all but the first would be
rejected as duplicates; each scales its copy by ``1 + k·step`` (k its rank), which no duplicate check can tell
from an honest difference. The rescaled norms stay inside the benign range to within 1 %."""


class Pipeline(StrEnum):
    """What judges and combines a round's updates. Every pipeline but ``fedavg-unchecked`` runs the demo's
    validators: the default checks, the held-out loss check (``node.heldout``, δ = 5 nats) and quorum voting."""

    FEDAVG_UNCHECKED = "fedavg-unchecked"
    """FedAvg of every update: no checks, every update accepted (the baseline of no defence)."""
    FEDAVG = "fedavg"
    """The validators' checks + quorum voting, then FedAvg of the accepted updates (the demo's default)."""
    TRIMMED_MEAN = "trimmed-mean"
    MEDIAN = "median"
    MULTI_KRUM = "multi-krum"

    @property
    def checked(self) -> bool:
        return self is not Pipeline.FEDAVG_UNCHECKED


PIPELINES: tuple[Pipeline, ...] = tuple(Pipeline)
DEFAULT_PIPELINE = Pipeline.FEDAVG
"""The demo's default (``meshprov demo``): FedAvg over the accepted set; 2 validators, quorum 2, each running the
worker's default checks and the held-out loss check ``--evaluator node.heldout:loss --loss-delta 5``."""

DEFAULT_LOSS_DELTA = 5.0
"""The demo's ``--loss-delta`` (node/heldout.py explains the value)."""

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


def default_limits(loss_delta: float | None = DEFAULT_LOSS_DELTA) -> CheckLimits:
    """The demo's validator limits: the worker's defaults (z-score of the log norm at 3.5, duplicates, the
    zero-update floor, no absolute norm bound) and the held-out loss margin (None: no loss check)."""
    from ledger.checks import CheckLimits

    return CheckLimits(loss_delta=loss_delta)


def heldout_loss(seed: int) -> Callable[[Mapping[str, Any]], float]:
    """The validators' held-out loss (``node.heldout``): the even half of the run's test split.

    ``node.heldout:loss``, which the demo's workers load, uses seed 0's split; for other seeds the experiment
    takes the same half of that seed's split, so the held-out images are never in a member's shard."""
    from node.basemodel import infer_model
    from node.heldout import heldout_data
    from node.training import evaluate

    data = heldout_data(seed)

    def loss(weights: Mapping[str, Any]) -> float:
        state = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        model = infer_model(state)
        if model is None:
            raise InvalidParameter("weights", sorted(state), "no registered architecture has these keys")
        return evaluate(model, state, data, threads=1).loss

    return loss


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
    validators: int = 2
    quorum: int = 2
    budget: int = 10**18
    """Tokens (base units) minted per round (``rewardPerRound``)."""
    tolerated: int = DEFAULT_TOLERATED
    task_id: int = 1
    loss_delta: float | None = DEFAULT_LOSS_DELTA
    """The validators' held-out loss margin (None: validators without held-out data)."""
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

    @property
    def fraction(self) -> float:
        return self.num_malicious / self.num_nodes

    @property
    def label(self) -> str:
        return f"{self.attack} f={self.num_malicious}/{self.num_nodes} {self.pipeline} seed={self.seed}"

    @property
    def spec(self) -> AggregationSpec:
        return aggregation_spec(self.pipeline, num_nodes=self.num_nodes, tolerated=self.tolerated)

    @property
    def malicious_set(self) -> list[int]:
        if self.malicious is not None:
            return list(self.malicious)
        return malicious_members(self.num_nodes, self.num_malicious, self.seed)

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
    """Addresses as ``meshprov dev`` lays out anvil's dev accounts: 0 admin, 1 aggregator, then the validators,
    then the contributors (so the pure run writes the same metadata, hence the same CIDs, as a real one)."""

    admin: str
    aggregator: str
    validators: tuple[str, ...]
    contributors: tuple[str, ...]


@functools.lru_cache(maxsize=8)
def dev_roles(validators: int, contributors: int, mnemonic: str | None = None) -> Roles:
    from ledger.dev.services import dev_accounts
    from ledger.settings import Settings

    count = 2 + validators + contributors
    accounts = [a for a, _ in dev_accounts(mnemonic or Settings().anvil_mnemonic, count)]
    return Roles(
        accounts[0],
        accounts[1],
        tuple(accounts[2 : 2 + validators]),
        tuple(accounts[2 + validators : count]),
    )


# --- what the members publish --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    """One member's update of a round, in submission order."""

    node: int
    delta: StateDict = field(repr=False)
    num_samples: int
    malicious: bool


def publish_round(
    config: ExperimentConfig,
    federation: Federation,
    base: Mapping[str, np.ndarray],
    round_: int,
    malicious: Sequence[int],
) -> list[Published]:
    """Every member's update for ``round_`` on ``base``: honest members first (by index), then the malicious.

    Deterministic for a given config, base and round: the pure pipeline and the real one call this same function.
    """
    from node.training import default_config, local_train, round_seed

    bad = set(malicious)
    train_config = default_config(config.model)
    honest: list[Published] = []
    attackers = [] if config.attack == ABSENT else sorted(bad)
    needs_own_delta = config.attack in (Behaviour.SCALE, Behaviour.SIGN_FLIP, Behaviour.NOISE)
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
    out = list(honest)
    benign = [p.delta for p in honest]
    for rank, node in enumerate(attackers):
        delta = apply_behaviour(
            config.attack,
            own.get(node, benign[0]),
            seed=round_seed(config.seed, round_, node),
            copy_from=benign[0],  # the first honest member's published update
            benign=benign,
            lie_num_nodes=config.num_nodes,
            lie_num_malicious=len(attackers),
        )
        if config.attack == Behaviour.LITTLE_IS_ENOUGH and rank:
            factor = 1.0 + LIE_DEDUP_STEP * rank
            delta = {k: (v * v.dtype.type(factor)).astype(v.dtype) for k, v in delta.items()}
        claimed = len(federation.shards[node])  # what it would have trained on: it claims the full reward
        out.append(Published(node, delta, claimed, malicious=True))
    return out


# --- results -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundResult:
    round: int
    accuracy: float
    loss: float
    submitted: list[int]
    """Members in submission order (update index → member)."""
    reasons: list[int]
    """The verdict's reason code per update index (0 = accepted by the checks; all 0 without checks)."""
    accepted: list[int]
    """Members whose update is in the accepted set (the quorum outcome)."""
    rewards: dict[int, int]
    """Contributor reward per member this round (token base units)."""
    reputations: dict[int, int]
    """Contributor reputation of every member after this round's settlement."""
    validator_rewards: int
    aggregate_cid: str
    seconds: float
    cids: list[str] = field(default_factory=list)
    """The update files' CIDs, in submission order."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rewards"] = {str(k): v for k, v in self.rewards.items()}
        out["reputations"] = {str(k): v for k, v in self.reputations.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoundResult:
        values = dict(data)
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


# --- the pure pipeline ---------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Judgement:
    """A round's verdicts: one reason code per update index, in submission order."""

    reasons: list[int]

    @property
    def accepted(self) -> list[bool]:
        return [r == 0 for r in self.reasons]


def judge_files(
    paths: Sequence[Path],
    *,
    base_path: Path,
    records: Sequence[Any],
    limits: CheckLimits,
    evaluate: Callable[[Mapping[str, Any]], float] | None = None,
) -> Judgement:
    """The validator's verdicts on a round's update files (``records``: the ``ChainRecord`` of each)."""
    # The validator's own pure functions, so that the experiment judges exactly as a worker does.
    from ledger.aggregation.source import describe_source
    from ledger.updatefile import UpdateFile
    from worker.verify import judge_round, judge_update

    with UpdateFile.open(base_path) as base:
        layout = describe_source(base)
        judged = []
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
    return Judgement([int(v.reason) for v in judge_round(judged, limits)])


def aggregate_files(
    base_path: Path,
    inputs: Sequence[tuple[bytes, Path, int]],
    spec: AggregationSpec,
    out: Path,
    *,
    task: int,
    round_: int,
    parent: str,
) -> str:
    """Aggregate ``(digest, update file, num_samples)`` inputs as the aggregator does; returns the file's CID."""
    import contextlib

    from ledger.aggregation import Contribution, prepare
    from ledger.aggregation.output import write_aggregation
    from ledger.updatefile import UpdateFile

    with contextlib.ExitStack() as stack:
        base = stack.enter_context(UpdateFile.open(base_path))
        contributions = [
            Contribution(digest, source=stack.enter_context(UpdateFile.open(path)), num_samples=n)
            for digest, path, n in inputs
        ]
        agg = prepare(base, contributions, spec)
        return write_aggregation(out, agg, task=task, round=round_, parent=parent).cid


Observer = Callable[[ExperimentConfig, RoundResult], None]


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

    from ledger.checks import ChainRecord
    from ledger.content import cid_to_digest
    from ledger.rewards import Ballot, RewardBook, Role, Submission
    from ledger.updatefile import UpdateMeta, write_update
    from node.data import make_federation
    from node.training import evaluate

    started = time.perf_counter()
    limits = limits if limits is not None else default_limits(config.loss_delta)
    evaluator = heldout_loss(config.seed) if limits.loss_delta is not None else None
    roles = dev_roles(config.validators, config.num_nodes)
    federation = make_federation(config.num_nodes, config.alpha, config.seed)
    malicious = config.malicious_set
    workdir.mkdir(parents=True, exist_ok=True)
    base_path = workdir / "genesis.safetensors"
    base_cid = genesis_cid = write_genesis_file(base_path, config.model, config.seed)
    base = read_weights(base_path)
    initial = evaluate(config.model, base, federation.test, threads=1).accuracy
    book = RewardBook()
    for address in roles.contributors:
        book.grant(address, Role.CONTRIBUTOR)
    for address in roles.validators:
        book.grant(address, Role.VALIDATOR)
    spec = config.spec
    rounds: list[RoundResult] = []
    for r in range(1, config.rounds + 1):
        round_started = time.perf_counter()
        round_dir = workdir / f"round-{r}"
        round_dir.mkdir(exist_ok=True)
        published = publish_round(config, federation, base, r, malicious)
        paths, records, digests, cids = [], [], [], []
        for p in published:
            meta = UpdateMeta(
                task=config.task_id,
                round=r,
                base=base_cid,
                contributor=roles.contributors[p.node],
                num_samples=p.num_samples,
            )
            path = round_dir / f"update-{p.node}.safetensors"
            cid = write_update(path, p.delta, meta).cid
            digest = cid_to_digest(cid)
            cids.append(cid)
            paths.append(path)
            digests.append(digest)
            records.append(
                ChainRecord(
                    digest=digest,
                    task=config.task_id,
                    round=r,
                    base=cid_to_digest(base_cid),
                    contributor=roles.contributors[p.node],
                    num_samples=p.num_samples,
                )
            )
        if config.pipeline.checked:
            judgement = judge_files(
                paths, base_path=base_path, records=records, limits=limits, evaluate=evaluator
            )
        else:
            judgement = Judgement([0] * len(published))
        ballots = [Ballot.unanimous(v, judgement.accepted) for v in roles.validators]
        settled = book.settle(
            [Submission(roles.contributors[p.node], p.num_samples) for p in published],
            ballots,
            quorum=config.quorum,
            budget=config.budget,
        )
        chosen = [i for i in range(len(published)) if settled.outcome >> i & 1]
        if chosen:
            out = round_dir / "aggregate.safetensors"
            base_cid = aggregate_files(
                base_path,
                [(digests[i], paths[i], published[i].num_samples) for i in chosen],
                spec,
                out,
                task=config.task_id,
                round_=r,
                parent=base_cid,
            )
            base = read_weights(out)
            next_base = workdir / f"base-{r}.safetensors"
            out.replace(next_base)
            base_path.unlink()
            base_path = next_base
        evaluation = evaluate(config.model, base, federation.test, threads=1)
        index_of = {a.lower(): i for i, a in enumerate(roles.contributors)}
        rewards = {
            index_of[s.account.lower()]: s.reward for s in settled.settlements if s.role is Role.CONTRIBUTOR
        }
        result = RoundResult(
            round=r,
            accuracy=evaluation.accuracy,
            loss=evaluation.loss,
            submitted=[p.node for p in published],
            reasons=judgement.reasons,
            accepted=sorted(published[i].node for i in chosen),
            rewards=rewards,
            reputations={i: book.reputation(a) for i, a in enumerate(roles.contributors)},
            validator_rewards=sum(s.reward for s in settled.settlements if s.role is Role.VALIDATOR),
            aggregate_cid=base_cid,
            seconds=time.perf_counter() - round_started,
            cids=cids,
        )
        for path in paths:
            path.unlink()
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
    **common: Any,
) -> list[ExperimentConfig]:
    """Every (attack, f, pipeline, seed); f = 0 is one ``honest`` run per pipeline and seed, not one per attack."""
    num_nodes = int(common.get("num_nodes", 10))
    out: list[ExperimentConfig] = []
    for fraction in fractions:
        f = round(fraction * num_nodes)
        if abs(f - fraction * num_nodes) > 1e-9:
            raise InvalidParameter(
                "fractions", fraction, f"must make a whole number of the {num_nodes} members"
            )
        for attack in [HONEST] if f == 0 else attacks:
            for pipeline in pipelines:
                for seed in seeds:
                    out.append(ExperimentConfig(attack, f, Pipeline(pipeline), seed, **common))
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
