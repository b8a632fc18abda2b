"""What the demo shows and records: one row per update as each round is finalized, and the final summary.

:class:`RoundTracker` turns the ledger's events (``UpdateSubmitted``, ``ScoresRevealed``, ``RoundFinalized``) into
:class:`RoundResult` values: per update every validator's revealed score and reason and the consensus, per
validator its distance to the consensus (or its absence) and what it was paid; :func:`print_round` and :func:`print_summary` draw them on stderr; the same values
go into ``demo-summary.json``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ledger.chain.scores import InvalidScores, decode_reasons, decode_scores
from ledger.content import digest_to_cid
from node.runner import reason_slug, tokens

if TYPE_CHECKING:
    from rich.console import Console

    from ledger.chain.client import LedgerClient
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
    consensus: int | None
    """The lower weighted median of the validators' scores (10,000 = 1.0)."""
    scores: list[dict[str, Any]]
    """Each revealing validator's score and reason code of this update."""
    reasons: list[str]
    reward: int
    reputation: int | None


@dataclass
class ValidatorRow:
    address: str
    revealed: bool
    absent: bool
    distance: int | None
    """Mean capped |score - consensus| over the round's updates (0 when absent)."""
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
    validators: list[ValidatorRow]
    carried_over: bool
    rewards_minted: int
    finalized_block: int
    seconds: float
    """Chain time from the round's opening to its finalization (whole seconds: block timestamps)."""
    accuracy: float | None = None
    loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    """Everything the recipe's ``evaluate`` returned for the aggregate on the test set (``loss`` included)."""
    stages: dict[str, float] = field(default_factory=dict)
    """Chain time (s) of each stage: ``submit`` (opening to the last submission), ``commit`` (to the last
    commitment), ``reveal`` (to the last reveal), ``finalize`` (to the finalization); block timestamps."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for u in out["updates"]:
            u["reward"] = str(u["reward"])
        out["validator_rewards"] = {k: str(v) for k, v in self.validator_rewards.items()}
        for v in out["validators"]:
            v["reward"] = str(v["reward"])
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

    def stage_blocks(self, round_: int) -> dict[str, int]:
        """The block of the last submission, commitment and reveal of ``round_`` (those it has)."""
        kinds = {"UpdateSubmitted": "submit", "ScoresCommitted": "commit", "ScoresRevealed": "reveal"}
        out: dict[str, int] = {}
        for e in self.events.get(round_, []):
            stage = kinds.get(e.name)
            if stage is not None:
                out[stage] = max(out.get(stage, 0), e.block_number)
        return out

    def _result(self, round_: int, final: LedgerEvent) -> RoundResult:
        events = self.events.get(round_, [])
        subs = sorted((e for e in events if e.name == "UpdateSubmitted"), key=lambda e: int(e.args["index"]))
        reveals = _reveals(events)
        accepted_bitmap = int(final.args["acceptedBitmap"])
        settlements = list(final.args["settlements"])
        contributor_pay = {s["account"]: s for s in settlements if int(s["role"]) == 0}
        validator_pay = {s["account"]: int(s["reward"]) for s in settlements if int(s["role"]) == 1}
        updates = []
        for e in subs:
            index = int(e.args["index"])
            address = str(e.args["contributor"])
            member = self.members.get(address)
            pay = contributor_pay.get(address)
            scores = [
                {
                    "validator": v,
                    "score": sc[index],
                    "reason": rs[index],
                    "reason_slug": reason_slug(rs[index]),
                }
                for v, (sc, rs) in reveals.items()
                if index < len(sc)
            ]
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
                    consensus=int(pay["score"]) if pay else None,
                    scores=scores,
                    reasons=sorted({str(s["reason_slug"]) for s in scores if s["reason"]}),
                    reward=int(pay["reward"]) if pay else 0,
                    reputation=int(pay["reputation"]) if pay else None,
                )
            )
        validators = [
            ValidatorRow(
                address=str(s["account"]),
                revealed=str(s["account"]) in reveals,
                absent=bool(s["absent"]),
                distance=None if s["absent"] else int(s["distance"]),
                reward=int(s["reward"]),
                reputation=int(s["reputation"]),
            )
            for s in settlements
            if int(s["role"]) == 1
        ]
        base = next((e for e in events if e.name == "RoundOpened"), None)
        return RoundResult(
            round=round_,
            base=digest_to_cid(base.args["baseDigest"]) if base is not None else "",
            aggregate=digest_to_cid(final.args["aggregateDigest"]),
            accepted=[u.index for u in updates if u.accepted],
            updates=updates,
            validator_rewards=validator_pay,
            validators=validators,
            carried_over=bool(final.args.get("carriedOver", False)),
            rewards_minted=sum(int(s["reward"]) for s in settlements),
            finalized_block=final.block_number,
            seconds=0.0,
        )


def _reveals(events: list[LedgerEvent]) -> dict[str, tuple[list[int], list[int]]]:
    """Each validator's revealed (scores, reasons) of the round, decoded and bounded (a log is untrusted bytes)."""
    out: dict[str, tuple[list[int], list[int]]] = {}
    for e in events:
        if e.name != "ScoresRevealed":
            continue
        try:
            out[str(e.args["validator"])] = (
                decode_scores(bytes(e.args["scores"])),
                decode_reasons(bytes(e.args["reasons"])),
            )
        except InvalidScores:
            continue
    return out


def validator_totals(
    addresses: list[str], rounds: list[RoundResult], client: LedgerClient
) -> list[dict[str, Any]]:
    """Per validator: rounds revealed and absent, mean distance to the consensus, total reward, reputation."""
    out = []
    for a in addresses:
        rows = [v for r in rounds for v in r.validators if v.address.lower() == a.lower()]
        distances = [v.distance for v in rows if v.distance is not None]
        out.append(
            {
                "address": a,
                "revealed": sum(not v.absent for v in rows),
                "absent": sum(v.absent for v in rows),
                "distances": distances,
                "mean_distance": round(sum(distances) / len(distances), 1) if distances else None,
                "reward": str(sum(v.reward for v in rows)),
                "reputation": client.reputation(a).validator,
            }
        )
    return out


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


def _quality(accuracy: float | None, loss: float | None) -> str:
    """ "test accuracy …" when the recipe's evaluate reports one, else its test loss."""
    if accuracy is None and loss is not None:
        return f"test loss {loss:.4g}"
    return f"test accuracy {_pct(accuracy)}"


def _bare(accuracy: float | None, loss: float | None) -> str:
    return f"loss {loss:.4g}" if accuracy is None and loss is not None else _pct(accuracy)


def _name(members: dict[str, Member], address: str) -> str:
    """The member's name (node-N), or its shortened address when it is not one of the demo's."""
    member = members.get(address)
    return member.name if member else _short(address)


def _short(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


def print_round(console: Console, result: RoundResult, members: dict[str, Member]) -> None:
    from rich import box
    from rich.table import Table

    table = Table(
        "#", "member", "behaviour", "verdict", "consensus", "scores", "reasons", "reward",
        title=(
            f"round {result.round}: {len(result.accepted)}/{len(result.updates)} accepted, "
            f"{_quality(result.accuracy, result.loss)} ({result.seconds:.1f} s)"
        ),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )  # fmt: skip
    for u in result.updates:
        verdict = "[green]accepted[/]" if u.accepted else "[red]rejected[/]"
        table.add_row(
            str(u.index),
            _name(members, u.address),
            u.behaviour,
            verdict,
            "—" if u.consensus is None else str(u.consensus),
            "/".join(str(s["score"]) for s in u.scores),
            ", ".join(u.reasons),
            tokens(u.reward),
        )
    console.print(table)
    sent = {u.address for u in result.updates}
    missing = [m.name for m in sorted(members.values(), key=lambda m: m.node) if m.address not in sent]
    if (
        missing
    ):  # the round closed without them: a member that trains slower than the window, or a stalled one
        console.print(
            f"no update from {', '.join(missing)} this round: the submission window closed first "
            "(--submission-window; their logs say why)",
            highlight=False,
        )
    twins = [
        _name(members, u.address)
        for u in result.updates
        if u.behaviour == "honest" and not u.accepted and {"duplicate", "near-copy"} & set(u.reasons)
    ]
    if (
        twins
    ):  # the copy rule working as written, on members whose data are alike: say so rather than leave it
        console.print(
            f"honest {', '.join(twins)} rejected as a copy: members with alike data (IID shards of an easy task) "
            'send updates as alike as a copy is to its original (docs/scoring.md, "Copies")',
            highlight=False,
        )
    for v in result.validators:
        said = "absent (did not reveal)" if v.absent else f"distance {v.distance} to the consensus"
        console.print(
            f"validator {_short(v.address)}: {said}; reward {tokens(v.reward)}, reputation {v.reputation}",
            highlight=False,
        )
    carried = " (carried over: no aggregate was made in time)" if result.carried_over else ""
    console.print(f"aggregate {result.aggregate}{carried}", highlight=False)


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
        distance = "—" if v["mean_distance"] is None else f"{v['mean_distance']:g}"
        console.print(
            f"validator {_short(v['address'])}: revealed {v['revealed']}, absent {v['absent']}, mean distance "
            f"{distance}; reward {tokens(int(v['reward']))}, reputation {v['reputation']}",
            highlight=False,
        )
    final = summary["final"]
    lineage = final["lineage"]
    verify = final["verify"]
    console.print(f"final model   {final['model']}", highlight=False)
    recipe = summary.get("recipe")
    if recipe:
        console.print(
            f"recipe        {recipe['name']} {recipe['version']} ({recipe['cid']})", highlight=False
        )
    baseline = summary["baseline"]
    quality = _quality(final["accuracy"], final.get("loss"))
    console.print(
        f"{quality} (central baseline, same budget: {_bare(baseline['accuracy'], baseline.get('loss'))})",
        highlight=False,
    )
    verdict = "[green]verified[/]" if lineage["verified"] else "[red]NOT verified[/]"
    console.print(
        f"lineage       {lineage['depth']} round{'s' if lineage['depth'] != 1 else ''} back to genesis "
        f"{lineage['genesis']}: {verdict}",
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
