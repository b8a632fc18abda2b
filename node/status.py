"""`meshprov node status`: a member's submissions, scores, verdicts, reputation and rewards (accrued and claimed).

The chain's record comes from the event index, brought up to date in-process first (the same index `meshprov
audit` reads); the current reputation, roles and token balance are read from the contract itself; the member's
journal adds what never reached the chain (updates trained for a round that closed first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger.content import digest_to_cid
from node.journal import Journal
from node.runner import reason_slug, tokens

if TYPE_CHECKING:
    from rich.console import Console

    from ledger.chain.client import LedgerClient
    from ledger.settings import Settings


@dataclass
class MemberStatus:
    address: str
    ledger: str
    task: int
    roles: list[str]
    reputation: int
    balance: int
    total_rewards: int
    accrued: int = 0
    """Rewards settled to this member and not yet claimed (``meshprov node claim`` mints them)."""
    submissions: list[dict[str, Any]] = field(default_factory=list)
    local_only: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "ledger": self.ledger,
            "task": self.task,
            "roles": self.roles,
            "reputation": self.reputation,
            "balance": str(self.balance),
            "total_rewards": str(self.total_rewards),
            "accrued": str(self.accrued),
            "submissions": self.submissions,
            "local_only": self.local_only,
        }


def member_status(settings: Settings, client: LedgerClient, address: str) -> MemberStatus:
    """The member's record: index (synced now) + contract views + the local journal."""
    from ledger.index import service
    from ledger.index.queries import Queries

    db = service.open_index(settings)
    try:
        service.update(db, client, confirmations=settings.confirmations)
        history = Queries(db).account(address)
    finally:
        db.dispose()
    account = client.account(address)
    roles = [
        name
        for name, held in (
            ("contributor", account.contributor),
            ("validator", account.validator),
            ("aggregator", account.aggregator),
        )
        if held
    ]
    balance = client.token_client().balance_of(address) if client.token_abi else 0
    rewards_by_round: dict[tuple[int, int], int] = {}
    for r in history.rewards:
        if r.role == 0:
            key = (r.task_id, r.round)
            rewards_by_round[key] = rewards_by_round.get(key, 0) + r.amount
    reputation_by_round = {(c.task_id, c.round): c.reputation for c in history.reputation if c.role == 0}
    task = settings.task_id
    status = MemberStatus(
        address=address,
        ledger=client.address,
        task=task,
        roles=roles,
        reputation=account.contributor_reputation,
        balance=balance,
        total_rewards=sum(r.amount for r in history.rewards),
        accrued=account.accrued,
    )
    on_chain: set[tuple[int, int]] = set()
    for u in history.submissions:
        on_chain.add((u.task_id, u.round))
        verdict = "pending" if u.accepted is None else ("accepted" if u.accepted else "rejected")
        status.submissions.append(
            {
                "task": u.task_id,
                "round": u.round,
                "index": u.index,
                "cid": digest_to_cid(u.digest),
                "num_samples": u.num_samples,
                "relayed": u.relayer != u.contributor,
                "verdict": verdict,
                "consensus": u.consensus,
                "scores": [
                    {
                        "validator": v.validator,
                        "score": v.score,
                        "reason": v.reason,
                        "reason_slug": reason_slug(v.reason),
                    }
                    for v in u.scores
                ],
                "reasons": sorted({reason_slug(v.reason) for v in u.scores if v.reason}),
                "reward": str(rewards_by_round.get((u.task_id, u.round), 0)),
                "reputation": reputation_by_round.get((u.task_id, u.round)),
            }
        )
    for record in Journal.for_member(settings.data_dir, address).records():
        if (record.task, record.round) not in on_chain:
            status.local_only.append(
                {"task": record.task, "round": record.round, "status": record.status, "cid": record.cid,
                 "file": record.file, "detail": record.detail}
            )  # fmt: skip
    return status


def render(console: Console, status: MemberStatus) -> None:
    console.print(f"member   {status.address} ({', '.join(status.roles) or 'no role'})", highlight=False)
    console.print(f"ledger   {status.ledger}", highlight=False)
    console.print(
        f"reputation {status.reputation}   rewards {tokens(status.total_rewards)}   "
        f"accrued {tokens(status.accrued)} (unclaimed)   balance {tokens(status.balance)} tokens",
        highlight=False,
    )
    # One line per update, the CID last and whole (CIDs are never shortened).
    for u in status.submissions:
        colour = {"accepted": "green", "rejected": "red"}.get(u["verdict"], "yellow")
        reasons = f"  ({', '.join(u['reasons'])})" if u["reasons"] else ""
        score = "" if u["consensus"] is None else f"score {u['consensus']:>6}  "
        console.print(
            f"task {u['task']} round {u['round']:>3} #{u['index']:<3} [{colour}]{u['verdict']:<8}[/] {score}"
            f"reward {tokens(int(u['reward'])):>12}  {u['num_samples']:>6} samples  {u['cid']}{reasons}",
            highlight=False,
        )
    for r in status.local_only:
        console.print(
            f"not on chain: task {r['task']} round {r['round']} {r['status']} {r['file']} {r['detail']}"
        )
