"""Summaries of Byzantine experiment runs: per-cell statistics over seeds, the goal check, markdown tables, plots.

A *cell* is one (attack, f, pipeline, Byzantine validators) over every seed run. The goals (issue 13):

* members: with 30 % malicious members the default pipeline's final accuracy stays within 2 points of the run
  where the same members are simply ``absent``, and the malicious members earn at most 5 % of the contributors'
  rewards (a sample inflater, which trains honestly, at most the share the same members earn in the honest run);
* validators: Byzantine validators below half the weight reject no more honest updates than the honest
  validators alone would on the same updates, accept no malicious update the honest ones reject, and earn at most
  5 % of the validators' rewards.

Plots need matplotlib (the ``experiment`` extra) and use the Agg backend.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.experiment import (
    ABSENT,
    ATTACKS,
    DEFAULT_PIPELINE,
    HONEST,
    PIPELINES,
    TARGET_ACCURACY,
    ExperimentResult,
    Pipeline,
)
from node.behaviours import Behaviour

GOAL_ACCURACY_DROP = 0.02
GOAL_REWARD_SHARE = 0.05
GOAL_VALIDATOR_SHARE = 0.05
INFLATION_TOLERANCE = 0.005
"""A sample inflater's updates are its honest ones, but its claim changes its files' CIDs, hence the order the
aggregator sums in and the float rounding of every later model: its share may differ from the honest run's by
rounding noise, not by a factor."""


@dataclass(frozen=True)
class Cell:
    attack: str
    num_malicious: int
    num_nodes: int
    pipeline: Pipeline
    seeds: tuple[int, ...]
    final_accuracy: tuple[float, ...]
    """Per seed, in ``seeds`` order."""
    rounds_to_target: tuple[int | None, ...]
    reward_share: tuple[float, ...]
    reputation: tuple[float, ...]
    """Mean over seeds of the malicious members' mean reputation after each round (empty without them)."""
    malicious_accepted: float
    """Malicious updates accepted per run (mean over seeds)."""
    malicious_submitted: float
    honest_rejected: float
    validator_attack: str | None = None
    byzantine_validators: int = 0
    validators: int = 3
    byzantine_flips: tuple[float, float] = (0.0, 0.0)
    """Per run (mean over seeds): honest updates rejected and malicious updates accepted against the honest
    validators' unanimous say on the same updates (``ExperimentResult.byzantine_flips``)."""
    validator_share: tuple[float, ...] = ()
    """Per seed: the Byzantine validators' share of the validators' rewards."""
    malicious_sets: tuple[tuple[int, ...], ...] = ()
    """Per seed: the malicious members."""
    member_shares: tuple[tuple[float, ...], ...] = ()
    """Per seed: each member's share of the contributors' rewards."""

    @property
    def fraction(self) -> float:
        return self.num_malicious / self.num_nodes

    @property
    def accuracy(self) -> float:
        return statistics.fmean(self.final_accuracy)

    @property
    def accuracy_spread(self) -> tuple[float, float]:
        return min(self.final_accuracy), max(self.final_accuracy)

    @property
    def share(self) -> float:
        return statistics.fmean(self.reward_share)

    @property
    def share_max(self) -> float:
        return max(self.reward_share)

    def rounds_text(self) -> str:
        """Mean rounds to the target over the seeds that reached it, and how many did not (``never``)."""
        reached = [r for r in self.rounds_to_target if r is not None]
        missed = len(self.rounds_to_target) - len(reached)
        if not reached:
            return "never"
        text = f"{statistics.fmean(reached):.1f}"
        return text + (f" ({missed}× never)" if missed else "")


def member_shares(result: ExperimentResult) -> tuple[float, ...]:
    """Each member's share of everything paid to contributors over the run."""
    total = result.contributor_rewards
    paid = [sum(r.rewards.get(m, 0) for r in result.rounds) for m in range(result.config.num_nodes)]
    return tuple(p / total if total else 0.0 for p in paid)


CellKey = tuple[str, int, Pipeline, str | None, int]


def cell_key(result: ExperimentResult) -> CellKey:
    c = result.config
    return (c.attack, c.num_malicious, c.pipeline, c.validator_attack, c.byzantine_validators)


def summarise(results: Sequence[ExperimentResult]) -> list[Cell]:
    groups: dict[CellKey, list[ExperimentResult]] = defaultdict(list)
    for r in results:
        groups[cell_key(r)].append(r)
    cells = []
    for (attack, f, pipeline, validator_attack, byzantine), group in groups.items():
        runs = sorted(group, key=lambda r: r.config.seed)
        curves = [r.malicious_reputation() for r in runs]
        reputation: tuple[float, ...] = ()
        if curves and all(curves):
            reputation = tuple(statistics.fmean(c[i] for c in curves) for i in range(len(curves[0])))
        cells.append(
            Cell(
                attack=attack,
                num_malicious=f,
                num_nodes=runs[0].config.num_nodes,
                pipeline=pipeline,
                seeds=tuple(r.config.seed for r in runs),
                final_accuracy=tuple(r.final_accuracy for r in runs),
                rounds_to_target=tuple(r.rounds_to(TARGET_ACCURACY) for r in runs),
                reward_share=tuple(r.malicious_reward_share for r in runs),
                reputation=reputation,
                malicious_accepted=statistics.fmean(r.malicious_accepted() for r in runs),
                malicious_submitted=statistics.fmean(
                    sum(1 for rr in r.rounds for m in rr.submitted if m in set(r.malicious)) for r in runs
                ),
                honest_rejected=statistics.fmean(r.honest_rejected() for r in runs),
                validator_attack=validator_attack,
                byzantine_validators=byzantine,
                validators=runs[0].config.validators,
                byzantine_flips=(
                    statistics.fmean(r.byzantine_flips()[0] for r in runs),
                    statistics.fmean(r.byzantine_flips()[1] for r in runs),
                ),
                validator_share=tuple(r.byzantine_validator_reward_share for r in runs),
                malicious_sets=tuple(tuple(r.malicious) for r in runs),
                member_shares=tuple(member_shares(r) for r in runs),
            )
        )
    order = {a: i for i, a in enumerate((HONEST, *ATTACKS, ABSENT))}
    porder = {p: i for i, p in enumerate(PIPELINES)}
    return sorted(
        cells,
        key=lambda c: (
            c.byzantine_validators,
            str(c.validator_attack),
            order.get(c.attack, 99),
            c.num_malicious,
            porder[c.pipeline],
        ),
    )


def find(
    cells: Sequence[Cell],
    attack: str,
    f: int,
    pipeline: Pipeline,
    *,
    validator_attack: str | None = None,
    byzantine_validators: int = 0,
) -> Cell | None:
    key = (attack, f, pipeline, validator_attack, byzantine_validators)
    return next(
        (
            c
            for c in cells
            if (c.attack, c.num_malicious, c.pipeline, c.validator_attack, c.byzantine_validators) == key
        ),
        None,
    )


@dataclass(frozen=True)
class GoalRow:
    attack: str
    accuracy: float
    reference: float
    """The final accuracy with the same members ``absent`` (the honest-only run's when there is no such cell)."""
    share: float
    share_max: float
    share_bound: float = GOAL_REWARD_SHARE
    """The most the malicious members may earn: 5 %, or for a sample inflater the same members' honest share."""
    honest: float | None = None
    """The honest-only run's final accuracy (for reading, not for the goal)."""

    @property
    def drop(self) -> float:
        return self.reference - self.accuracy

    @property
    def accuracy_ok(self) -> bool:
        return self.drop <= GOAL_ACCURACY_DROP + 1e-9  # float means of k/450 accuracies

    @property
    def reward_ok(self) -> bool:
        return self.share_max <= self.share_bound + 1e-9


def _honest_share(honest: Cell, attacked: Cell) -> float:
    """The most, over seeds, the attacked cell's malicious members earned in the honest run of the same seed."""
    shares = []
    for seed, members in zip(attacked.seeds, attacked.malicious_sets, strict=True):
        if seed in honest.seeds:
            per_member = honest.member_shares[honest.seeds.index(seed)]
            shares.append(sum(per_member[m] for m in members))
    return max(shares, default=GOAL_REWARD_SHARE)


GOAL_FRACTION = 0.3


def goal_f(cells: Sequence[Cell]) -> int:
    """The number of malicious members the goal is checked at: the one nearest 30 % of the members among the
    cells (3 of 10 by default)."""
    fs = {(c.num_malicious, c.num_nodes) for c in cells if c.num_malicious}
    if not fs:
        return 0
    return min(fs, key=lambda fn: (abs(fn[0] / fn[1] - GOAL_FRACTION), -fn[0]))[0]


def goal(cells: Sequence[Cell], *, f: int = 3, pipeline: Pipeline = DEFAULT_PIPELINE) -> list[GoalRow]:
    """The members' goal for every attack at ``f`` malicious members (honest validators), against the run with the
    same members absent."""
    honest = find(cells, HONEST, 0, pipeline)
    absent = find(cells, ABSENT, f, pipeline)
    reference = absent if absent is not None else honest
    if reference is None:
        return []
    rows = []
    for attack in ATTACKS:
        cell = find(cells, attack, f, pipeline)
        if cell is None:
            continue
        bound = GOAL_REWARD_SHARE
        if attack == Behaviour.SAMPLE_INFLATION and honest is not None:
            bound = _honest_share(honest, cell) + INFLATION_TOLERANCE
        rows.append(
            GoalRow(
                attack,
                cell.accuracy,
                reference.accuracy,
                cell.share,
                cell.share_max,
                share_bound=bound,
                honest=None if honest is None else honest.accuracy,
            )
        )
    return rows


@dataclass(frozen=True)
class ValidatorGoalRow:
    validator_attack: str
    byzantine_validators: int
    validators: int
    attack: str
    num_malicious: int
    honest_rejected: float
    honest_rejected_by_honest: float
    """Honest updates rejected per run in the same cell with honest validators only (the comparison)."""
    flips: tuple[float, float]
    share_max: float

    @property
    def rejection_ok(self) -> bool:
        return self.flips[0] == 0 and self.honest_rejected <= self.honest_rejected_by_honest + 1e-9

    @property
    def acceptance_ok(self) -> bool:
        return self.flips[1] == 0

    @property
    def reward_ok(self) -> bool:
        return self.share_max <= GOAL_VALIDATOR_SHARE + 1e-9

    @property
    def ok(self) -> bool:
        return self.rejection_ok and self.acceptance_ok and self.reward_ok


def validator_goal(cells: Sequence[Cell], *, pipeline: Pipeline = DEFAULT_PIPELINE) -> list[ValidatorGoalRow]:
    """The validators' goal for every cell of the pipeline with Byzantine validators below half the count (their
    weight starts equal, so below half the weight), against the same cell with honest validators only."""
    rows = []
    for c in cells:
        if (
            c.pipeline is not pipeline
            or not c.byzantine_validators
            or 2 * c.byzantine_validators >= c.validators
        ):
            continue
        honest = find(cells, c.attack, c.num_malicious, pipeline)
        rows.append(
            ValidatorGoalRow(
                str(c.validator_attack),
                c.byzantine_validators,
                c.validators,
                c.attack,
                c.num_malicious,
                c.honest_rejected,
                c.honest_rejected if honest is None else honest.honest_rejected,
                c.byzantine_flips,
                max(c.validator_share, default=0.0),
            )
        )
    return rows


# --- markdown ------------------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def goal_table(rows: Sequence[GoalRow]) -> str:
    lines = [
        "| attack | final accuracy % | drop vs absent (points) | malicious reward share % (max over seeds) "
        "| bound % | goal |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = (
            "met"
            if r.accuracy_ok and r.reward_ok
            else "**missed** ("
            + ", ".join(([] if r.accuracy_ok else ["accuracy"]) + ([] if r.reward_ok else ["rewards"]))
            + ")"
        )
        lines.append(
            f"| {r.attack} | {_pct(r.accuracy)} | {100 * r.drop:+.1f} | {_pct(r.share)} ({_pct(r.share_max)}) "
            f"| {_pct(r.share_bound)} | {verdict} |"
        )
    return "\n".join(lines)


def validator_goal_table(rows: Sequence[ValidatorGoalRow]) -> str:
    lines = [
        "| validator attack | Byzantine / validators | member attack | honest rejected (with honest validators) "
        "| flips: honest rejected / malicious accepted | Byzantine validators' reward % (max) | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        missed = [
            name
            for name, ok in (
                ("rejections", r.rejection_ok),
                ("acceptances", r.acceptance_ok),
                ("rewards", r.reward_ok),
            )
            if not ok
        ]
        verdict = "met" if not missed else f"**missed** ({', '.join(missed)})"
        lines.append(
            f"| {r.validator_attack} | {r.byzantine_validators} / {r.validators} | {r.attack} f={r.num_malicious} "
            f"| {r.honest_rejected:.1f} ({r.honest_rejected_by_honest:.1f}) | {r.flips[0]:.1f} / {r.flips[1]:.1f} "
            f"| {_pct(r.share_max)} | {verdict} |"
        )
    return "\n".join(lines)


def cell_table(cells: Sequence[Cell], *, f: int | None = None) -> str:
    """One row per cell (optionally only f malicious): accuracy mean [min–max], rounds to 90 %, reward share,
    accepted malicious updates, rejected honest updates, the malicious reputation after the last round."""
    lines = [
        "| attack | f | pipeline | validators | final acc % mean [min–max] | rounds to 90 % "
        "| malicious reward % mean (max) | malicious accepted / submitted | honest rejected | malicious rep. at end |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        if f is not None and c.num_malicious not in (0, f):
            continue
        lo, hi = c.accuracy_spread
        rep = f"{c.reputation[-1]:.0f}" if c.reputation else "–"
        acc = f"{c.malicious_accepted:.1f} / {c.malicious_submitted:.0f}" if c.num_malicious else "–"
        share = f"{_pct(c.share)} ({_pct(c.share_max)})" if c.num_malicious else "–"
        who = (
            f"{c.validator_attack} {c.byzantine_validators}/{c.validators}"
            if c.byzantine_validators
            else "honest"
        )
        lines.append(
            f"| {c.attack} | {c.num_malicious} | {c.pipeline} | {who} | {_pct(c.accuracy)} [{_pct(lo)}–{_pct(hi)}] "
            f"| {c.rounds_text()} | {share} | {acc} | {c.honest_rejected:.1f} | {rep} |"
        )
    return "\n".join(lines)


def accuracy_grid(cells: Sequence[Cell], fractions: Sequence[int]) -> str:
    """Attack × pipeline, final accuracy at each f (compact overview)."""
    header = "| attack | pipeline | " + " | ".join(f"f={f}" for f in fractions) + " |"
    lines = [header, "|---|---|" + "---|" * len(fractions)]
    for attack in (*ATTACKS, ABSENT):
        for pipeline in PIPELINES:
            values = []
            for f in fractions:
                cell = find(cells, HONEST if f == 0 else attack, f, pipeline)
                values.append(_pct(cell.accuracy) if cell else "–")
            if any(v != "–" for v in values[1:]):
                lines.append(f"| {attack} | {pipeline} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def share_grid(cells: Sequence[Cell], fractions: Sequence[int]) -> str:
    header = "| attack | pipeline | " + " | ".join(f"f={f}" for f in fractions if f) + " |"
    lines = [header, "|---|---|" + "---|" * len([f for f in fractions if f])]
    for attack in ATTACKS:
        for pipeline in PIPELINES:
            values = []
            for f in fractions:
                if not f:
                    continue
                cell = find(cells, attack, f, pipeline)
                values.append(_pct(cell.share) if cell else "–")
            if any(v != "–" for v in values):
                lines.append(f"| {attack} | {pipeline} | " + " | ".join(values) + " |")
    return "\n".join(lines)


# --- plots ---------------------------------------------------------------------------------------------------


def plot(results: Sequence[ExperimentResult], out_dir: Path, *, headline_f: int = 3) -> list[Path]:
    """Write the PNG figures of docs/robustness.md into ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    cells = summarise(results)
    fs = sorted({c.num_malicious for c in cells})
    if headline_f not in fs:
        headline_f = max(fs)
    written = []

    def legend(ax: Any) -> None:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)

    def per_attack(metric: str, ylabel: str, name: str) -> Path:
        fig, axes = plt.subplots(3, 3, figsize=(13, 11), sharex=True, sharey=True)
        for ax, attack in zip(axes.flat, ATTACKS, strict=True):
            for pipeline in PIPELINES:
                xs, ys, lo, hi = [], [], [], []
                for f in fs:
                    if metric == "share" and f == 0:
                        continue
                    cell = find(cells, HONEST if f == 0 else attack, f, pipeline)
                    if cell is None:
                        continue
                    values = cell.final_accuracy if metric == "accuracy" else cell.reward_share
                    xs.append(100 * f / cell.num_nodes)
                    ys.append(100 * statistics.fmean(values))
                    mean = statistics.fmean(values)
                    lo.append(max(0.0, 100 * (mean - min(values))))  # a float mean can fall a hair outside
                    hi.append(max(0.0, 100 * (max(values) - mean)))
                if xs:
                    style = "-" if pipeline.checked else "--"
                    ax.errorbar(xs, ys, yerr=[lo, hi], fmt=style + "o", ms=3, capsize=2, label=str(pipeline))
            ax.set_title(attack)
            ax.grid(alpha=0.3)
        for ax in axes[-1]:
            ax.set_xlabel("malicious members (%)")
        for ax in axes[:, 0]:
            ax.set_ylabel(ylabel)
        legend(axes[0][0])
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    written.append(per_attack("accuracy", "final test accuracy (%)", "accuracy-vs-malicious.png"))
    written.append(per_attack("share", "malicious share of rewards (%)", "rewards-vs-malicious.png"))

    # Reputation of the malicious members over rounds, at the headline f, per pipeline.
    fig, axes = plt.subplots(1, len(PIPELINES), figsize=(16, 3.6), sharey=True)
    for ax, pipeline in zip(axes, PIPELINES, strict=True):
        for attack in ATTACKS:
            cell = find(cells, attack, headline_f, pipeline)
            if cell is not None and cell.reputation:
                ax.plot(range(1, len(cell.reputation) + 1), cell.reputation, marker=".", label=attack)
        ax.set_title(str(pipeline))
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"mean reputation of the {headline_f} malicious")
    legend(axes[0])
    fig.tight_layout()
    path = out_dir / "reputation-over-rounds.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    # Accuracy over rounds at the headline f, default pipeline vs no defence, mean over seeds.
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, pipeline in zip(axes, (DEFAULT_PIPELINE, Pipeline.FEDAVG_UNCHECKED), strict=True):
        for attack in (HONEST, *ATTACKS, ABSENT):
            f = 0 if attack == HONEST else headline_f
            runs = [
                r
                for r in results
                if (r.config.attack, r.config.num_malicious, r.config.pipeline) == (attack, f, pipeline)
                and not r.config.byzantine_validators
            ]
            if not runs:
                continue
            n = len(runs[0].rounds)
            curve = [100 * statistics.fmean(r.rounds[i].accuracy for r in runs) for i in range(n)]
            style = "k-" if attack == HONEST else ("k:" if attack == ABSENT else "-")
            ax.plot(range(1, n + 1), curve, style, marker=".", label=attack)
        ax.set_title(f"{pipeline}, {headline_f} malicious of {results[0].config.num_nodes}")
        ax.set_xlabel("round")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    legend(axes[0])
    fig.tight_layout()
    path = out_dir / "accuracy-over-rounds.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written
