"""What the demo shows and records: one row per update as each round is finalized, and the final summary.

:class:`RoundTracker` turns the ledger's events (``UpdateSubmitted``, ``VotesCast``, ``RoundFinalized``) into
:class:`RoundResult` values; :func:`print_round` and :func:`print_summary` draw them on stderr; the same values
go into ``demo-summary.json``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ledger.content import digest_to_cid
from node.runner import reason_slug, tokens, vote_reasons

if TYPE_CHECKING:
    from rich.console import Console

    from ledger.chain.events import LedgerEvent


@dataclass(frozen=True)
class Member:
    node: int
    """1-based, as shown (node-1 … node-N)."""
    address: str
    behaviour: str
    shard_size: int

    @property
    def malicious(self) -> bool:
        return self.behaviour != "honest"

    @property
    def name(self) -> str:
        return f"node-{self.node}"


@dataclass
class UpdateRow:
    index: int
    node: int | None
    address: str
    behaviour: str
    cid: str
    num_samples: int
    relayed: bool
    accepted: bool
    votes: list[dict[str, Any]]
    reasons: list[str]
    reward: int
    reputation: int | None


@dataclass
class RoundResult:
    round: int
    base: str
    aggregate: str
    accepted: list[int]
    updates: list[UpdateRow]
    validator_rewards: dict[str, int]
    rewards_minted: int
    finalized_block: int
    seconds: float
    """Chain time from the round's opening to its finalization (whole seconds: block timestamps)."""
    accuracy: float | None = None
    loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for u in out["updates"]:
            u["reward"] = str(u["reward"])
        out["validator_rewards"] = {k: str(v) for k, v in self.validator_rewards.items()}
        out["rewards_minted"] = str(self.rewards_minted)
        return out


@dataclass
class RoundTracker:
    """Accumulates the task's events and yields each round once it is finalized."""

    task_id: int
    members: dict[str, Member]
    events: dict[int, list[LedgerEvent]] = field(default_factory=dict)
    opened: dict[int, int] = field(default_factory=dict)
    """Chain time (s) each round opened at."""

    def add(self, event: LedgerEvent) -> RoundResult | None:
        args = event.args
        if "taskId" not in args or int(args["taskId"]) != self.task_id or "round" not in args:
            return None
        round_ = int(args["round"])
        self.events.setdefault(round_, []).append(event)
        if event.name == "RoundOpened":
            self.opened.setdefault(round_, int(args["openedAt"]))
        if event.name != "RoundFinalized":
            return None
        return self._result(round_, event)

    def _result(self, round_: int, final: LedgerEvent) -> RoundResult:
        events = self.events.get(round_, [])
        subs = sorted((e for e in events if e.name == "UpdateSubmitted"), key=lambda e: int(e.args["index"]))
        accepted_bitmap = int(final.args["acceptedBitmap"])
        settlements = list(final.args["settlements"])
        contributor_pay = {s["account"]: s for s in settlements if int(s["role"]) == 0}
        validator_pay = {s["account"]: int(s["reward"]) for s in settlements if int(s["role"]) == 1}
        updates = []
        for e in subs:
            index = int(e.args["index"])
            address = str(e.args["contributor"])
            member = self.members.get(address)
            verdicts = vote_reasons(events, index)
            pay = contributor_pay.get(address)
            updates.append(
                UpdateRow(
                    index=index,
                    node=member.node if member else None,
                    address=address,
                    behaviour=member.behaviour if member else "?",
                    cid=digest_to_cid(e.args["digest"]),
                    num_samples=int(e.args["numSamples"]),
                    relayed=e.args["relayer"] != address,
                    accepted=bool(accepted_bitmap >> index & 1),
                    votes=[
                        {"validator": v, "accept": ok, "reason": code, "reason_slug": reason_slug(code)}
                        for v, ok, code in verdicts
                    ],
                    reasons=sorted({reason_slug(code) for _, ok, code in verdicts if not ok}),
                    reward=int(pay["reward"]) if pay else 0,
                    reputation=int(pay["reputation"]) if pay else None,
                )
            )
        base = next((e for e in events if e.name == "RoundOpened"), None)
        return RoundResult(
            round=round_,
            base=digest_to_cid(base.args["baseDigest"]) if base is not None else "",
            aggregate=digest_to_cid(final.args["aggregateDigest"]),
            accepted=[u.index for u in updates if u.accepted],
            updates=updates,
            validator_rewards=validator_pay,
            rewards_minted=sum(int(s["reward"]) for s in settlements),
            finalized_block=final.block_number,
            seconds=0.0,
        )


def member_totals(members: list[Member], rounds: list[RoundResult]) -> list[dict[str, Any]]:
    """Per member: accepted and rejected updates, the reasons, total reward, last reputation."""
    out = []
    for m in members:
        rows = [u for r in rounds for u in r.updates if u.address == m.address]
        reasons: Counter[str] = Counter(reason for u in rows for reason in u.reasons)
        reputation = next((u.reputation for u in reversed(rows) if u.reputation is not None), None)
        reward = sum(u.reward for u in rows)
        out.append(
            {
                "node": m.node,
                "name": m.name,
                "address": m.address,
                "behaviour": m.behaviour,
                "malicious": m.malicious,
                "shard_size": m.shard_size,
                "submitted": len(rows),
                "accepted": sum(u.accepted for u in rows),
                "rejected": sum(not u.accepted for u in rows),
                "reasons": dict(sorted(reasons.items())),
                "reward": str(reward),
                "reward_tokens": reward / 10**18,
                "reputation": reputation,
            }
        )
    return out


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _short(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


def print_round(console: Console, result: RoundResult, members: dict[str, Member]) -> None:
    from rich import box
    from rich.table import Table

    table = Table(
        "#", "member", "behaviour", "verdict", "votes", "reasons", "samples", "reward",
        title=(
            f"round {result.round}: {len(result.accepted)}/{len(result.updates)} accepted, "
            f"test accuracy {_pct(result.accuracy)} ({result.seconds:.1f} s)"
        ),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )  # fmt: skip
    for u in result.updates:
        member = members.get(u.address)
        verdict = "[green]accepted[/]" if u.accepted else "[red]rejected[/]"
        votes = f"{sum(v['accept'] for v in u.votes)}✓ {sum(not v['accept'] for v in u.votes)}✗"
        table.add_row(
            str(u.index),
            member.name if member else _short(u.address),
            u.behaviour,
            verdict,
            votes,
            ", ".join(u.reasons),
            str(u.num_samples),
            tokens(u.reward),
        )
    console.print(table)
    console.print(f"aggregate {result.aggregate}", highlight=False)


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    table = Table(
        "member", "address", "behaviour", "✓", "✗", "reasons", "reward", "reputation",
        title="members", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
    )  # fmt: skip
    for m in summary["members"]:
        reasons = ", ".join(f"{k}×{v}" for k, v in m["reasons"].items())
        table.add_row(
            m["name"],
            _short(m["address"]),
            m["behaviour"],
            str(m["accepted"]),
            str(m["rejected"]),
            reasons,
            tokens(int(m["reward"])),
            str(m["reputation"]),
        )
    console.print(table)
    for v in summary["validators"]:
        console.print(
            f"validator {_short(v['address'])}: reward {tokens(int(v['reward']))}, reputation {v['reputation']}",
            highlight=False,
        )
    final = summary["final"]
    lineage = final["lineage"]
    verify = final["verify"]
    console.print(f"final model   {final['model']}", highlight=False)
    console.print(
        f"test accuracy {_pct(final['accuracy'])} (central baseline, same budget: "
        f"{_pct(summary['baseline']['accuracy'])})",
        highlight=False,
    )
    verdict = "[green]verified[/]" if lineage["verified"] else "[red]NOT verified[/]"
    console.print(
        f"lineage       {lineage['depth']} rounds back to genesis {lineage['genesis']}: {verdict}",
        highlight=False,
    )
    for step in lineage["rounds"]:
        console.print(
            f"  round {step['round']}: {step['base']} → {step['aggregate']} "
            f"({step['accepted']}/{step['submissions']} updates)",
            highlight=False,
        )
    console.print(
        f"audit verify  {verify['status']} (exit {verify['exit_code']}): {verify['anchored_as']}",
        highlight=False,
    )
    console.print(f"summary       {summary['summary_file']}", highlight=False)
    for i, command in enumerate(summary["next"]):
        # One command per line, never wrapped or marked up, so each can be pasted into a shell as it is.
        console.print(
            f"{'next' if i == 0 else '':<14}{command}", highlight=False, markup=False, soft_wrap=True
        )
