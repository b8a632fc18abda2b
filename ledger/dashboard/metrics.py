"""Prometheus metrics read from the index at scrape time (a custom collector: nothing is counted in-process, so
every replica and restart reports the same numbers, and a reorganisation that rewinds the index rewinds them).

Per member: reputation, rewards, updates by verdict. Per task: the live round, rounds finalized, round durations
and federation latency (submission block → finalization block) as histograms, revealed scores by reason, updates by
verdict, participation (submissions in the last finalized round over members holding the contributor role),
rewards accrued, and bytes of updates in each of the last rounds. The index holds no sizes: they come from the
content store's ``stat`` (see sizes.py); updates it does not hold are counted in ``..._unknown``.

The figures are read through the index's queries (``Queries.activity``, the member fold of the leaderboard,
``Queries.roles``) and memoized per version of the index's data (memo.py), so scrapes between two ledger events
cost a few cheap queries.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ledger.dashboard import formatting as fmt
from ledger.errors import MeshprovError
from ledger.index.models import cid_of

if TYPE_CHECKING:
    from ledger.dashboard.readmodel import ReadModel

DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400)
RECENT_ROUNDS = 10


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += value
        self.n += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip(self.buckets, self.counts, strict=True):
            running += count
            out.append((f"{bound:g}", float(running)))
        out.append(("+Inf", float(self.n)))
        return out


@dataclass
class TaskFigures:
    current_round: int = 0
    finalized: int = 0
    accrued: int = 0
    durations: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    latency: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    scores: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    updates: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    last_finalized_submissions: int = 0
    last_duration: float | None = None
    recent: list[tuple[int, list[str]]] = field(default_factory=list)  # (round, update CIDs)


@dataclass
class Snapshot:
    reputation: list[tuple[str, str, int]]  # (address, role, value)
    rewards: dict[str, int]
    member_updates: list[tuple[str, str, int]]  # (address, verdict, count)
    tasks: dict[int, TaskFigures]
    contributors_now: int
    seconds: float


def snapshot(model: ReadModel) -> Snapshot:
    started = time.perf_counter()
    members = model.members(None)
    tasks: dict[int, TaskFigures] = {}
    for task_id, done in model.queries.activity(RECENT_ROUNDS).items():
        t = tasks[task_id] = TaskFigures(current_round=done.current_round)
        for f in done.finalized:
            t.finalized += 1
            t.accrued += f.rewards_accrued
            duration = max(0, f.finalized_at - f.opened_at)
            t.durations.observe(duration)
            t.last_duration = float(duration)
            t.last_finalized_submissions = f.submissions
        for seconds in done.latencies:
            t.latency.observe(max(0, seconds))
        for v in done.scores:
            t.scores[fmt.reason_slug(v.reason)] += v.count
        t.updates.update(done.verdicts)
        t.recent = [(rnd, [cid_of(d) or "" for d in digests]) for rnd, digests in done.recent]
    roles = model.queries.roles()
    reputation = []
    member_updates = []
    for m in members.values():
        if m.contributor_reputation is not None:
            reputation.append((m.address, "contributor", m.contributor_reputation))
        if m.validator_reputation is not None:
            reputation.append((m.address, "validator", m.validator_reputation))
        if m.submissions:
            member_updates += [
                (m.address, "accepted", m.accepted),
                (m.address, "rejected", m.rejected),
                (m.address, "pending", m.pending),
                (m.address, "carried-over", m.carried_over),
            ]
    return Snapshot(
        reputation=reputation,
        rewards={m.address: m.rewards for m in members.values() if m.rewards or m.submissions or m.scores},
        member_updates=member_updates,
        tasks=tasks,
        contributors_now=sum(1 for held in roles.values() if "contributor" in held),
        seconds=time.perf_counter() - started,
    )


class IndexCollector(Collector):
    """Yields the meshprov_* metrics from the index on every scrape."""

    def __init__(self, model: ReadModel) -> None:
        self.model = model

    def describe(self) -> list[Metric]:
        return []  # metrics depend on the index's content; nothing to collect at registration

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily("meshprov_index_up", "1 when the index could be read, else 0.")
        try:
            info = self.model.status()
            snap: Snapshot | None = (
                self.model.cached(("metrics",), lambda: snapshot(self.model)) if info else None
            )
        except MeshprovError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        if info is None:
            return
        yield GaugeMetricFamily(
            "meshprov_index_block", "Last block read into the index.", value=info.block_number
        )
        yield GaugeMetricFamily(
            "meshprov_index_updated_timestamp_seconds",
            "When the index last moved its checkpoint.",
            value=info.updated_at,
        )
        yield CounterMetricFamily("meshprov_index_events", "Ledger events in the index.", value=info.events)
        if info.behind is not None:
            yield GaugeMetricFamily(
                "meshprov_index_behind_blocks",
                "Blocks between the chain's head and the index.",
                value=info.behind,
            )
        assert snap is not None
        yield from self._members(snap)
        yield from self._tasks(snap)
        yield GaugeMetricFamily(
            "meshprov_metrics_compute_seconds",
            "Seconds this scrape spent reading the index (small when the memoized figures were current).",
            value=time.perf_counter() - started,
        )

    def _members(self, snap: Snapshot) -> Iterator[Metric]:
        rep = GaugeMetricFamily(
            "meshprov_reputation", "A member's latest reputation in a role.", labels=["address", "role"]
        )
        for address, role, value in snap.reputation:
            rep.add_metric([address, role], value)
        yield rep
        rewards = CounterMetricFamily(
            "meshprov_rewards_tokens", "Tokens (MESH) rewarded to a member, all tasks.", labels=["address"]
        )
        for address, units in snap.rewards.items():
            rewards.add_metric([address], fmt.mesh(units))
        yield rewards
        updates = CounterMetricFamily(
            "meshprov_contributor_updates",
            "A member's submitted updates by verdict.",
            labels=["address", "verdict"],
        )
        for address, verdict, count in snap.member_updates:
            updates.add_metric([address, verdict], count)
        yield updates

    def _tasks(self, snap: Snapshot) -> Iterator[Metric]:
        current = GaugeMetricFamily(
            "meshprov_current_round", "The task's live (last opened) round.", labels=["task"]
        )
        finalized = CounterMetricFamily("meshprov_rounds_finalized", "Rounds finalized.", labels=["task"])
        accrued = CounterMetricFamily(
            "meshprov_rewards_accrued_tokens",
            "Tokens (MESH) accrued by settlements (minted when claimed).",
            labels=["task"],
        )
        durations = HistogramMetricFamily(
            "meshprov_round_duration_seconds",
            "From a round's opening to its finalization block.",
            labels=["task"],
        )
        last_duration = GaugeMetricFamily(
            "meshprov_last_round_duration_seconds", "Duration of the last finalized round.", labels=["task"]
        )
        latency = HistogramMetricFamily(
            "meshprov_federation_latency_seconds",
            "From an update's submission block to its round's finalization block.",
            labels=["task"],
        )
        scores = CounterMetricFamily(
            "meshprov_scores",
            "Validators' revealed scores by reason (accepted for a score that is not a hard reject).",
            labels=["task", "reason"],
        )
        updates = CounterMetricFamily("meshprov_updates", "Updates by verdict.", labels=["task", "verdict"])
        participation = GaugeMetricFamily(
            "meshprov_participation_ratio",
            "Updates in the last finalized round over members holding the contributor role now.",
            labels=["task"],
        )
        sizes = GaugeMetricFamily(
            "meshprov_round_update_bytes",
            f"Bytes of the updates of each of the last {RECENT_ROUNDS} rounds that the content store holds.",
            labels=["task", "round"],
        )
        unknown = GaugeMetricFamily(
            "meshprov_round_update_bytes_unknown",
            "Updates of the round whose size the content store could not give.",
            labels=["task", "round"],
        )
        known_sizes: dict[str, int | None] = {}
        if self.model.sizes.available:
            # One lookup for every recent update: the store's time budget holds for the whole scrape.
            known_sizes = self.model.sizes.sizes(
                [c for t in snap.tasks.values() for _, cids in t.recent for c in cids]
            )
        for task_id, t in sorted(snap.tasks.items()):
            label = str(task_id)
            current.add_metric([label], t.current_round)
            finalized.add_metric([label], t.finalized)
            accrued.add_metric([label], fmt.mesh(t.accrued))
            durations.add_metric([label], t.durations.cumulative(), t.durations.total)
            if t.last_duration is not None:
                last_duration.add_metric([label], t.last_duration)
            latency.add_metric([label], t.latency.cumulative(), t.latency.total)
            for reason, n in sorted(t.scores.items()):
                scores.add_metric([label, reason], n)
            for verdict in ("accepted", "rejected", "pending"):
                updates.add_metric([label, verdict], t.updates.get(verdict, 0))
            if t.finalized and snap.contributors_now:
                participation.add_metric([label], t.last_finalized_submissions / snap.contributors_now)
            for rnd, cids in t.recent:
                known = [n for n in (known_sizes.get(c) for c in cids) if n is not None]
                if known:
                    sizes.add_metric([label, str(rnd)], sum(known))
                unknown.add_metric([label, str(rnd)], len(cids) - len(known))
        yield from (
            current,
            finalized,
            accrued,
            durations,
            last_duration,
            latency,
            scores,
            updates,
            participation,
        )
        yield from (sizes, unknown)
