"""The validator's job on one round: fetch every update, run ledger's checks, cast one ballot.

When does a validator vote? Once the round's submissions are closed (phase Voting), on all of the round's
updates at once, with one ``voteBatch``. The round-level checks (robust z-score of the norm, duplicates) compare
an update with the *other* updates of the round, so they are only well defined when the set is final; judging
every update against the whole set also makes every honest validator reach the same verdicts whatever order it
saw the submissions in. The per-update checks of each update are cached on disk, so a job retried after a fault
only fetches what it has not judged yet.

Order, for each update (cheapest first, the first failure decides): size bound while downloading, Kubo CID of
the bytes vs the chain's digest, header pre-parse, metadata vs the chain record, keys/shapes/dtypes vs the round's
base, finite values, absolute norm bounds, the norm in proportion to the base's; then over the round: z-score, duplicates; then, if this validator has
held-out data, the loss. All of it is ``ledger.checks``: this module only fetches, caches and votes.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.aggregation.source import TensorInfo, TensorSource, describe_source
from ledger.chain.errors import AlreadyVoted, RoundNotLive, VotingClosed, WrongRound
from ledger.chain.types import Phase, RoundView, Submission
from ledger.checks import ChainRecord, Judged, Verdict, ballot_for, base_norm, judge_round, judge_update
from ledger.content import digest_to_cid
from worker.errors import NotReady, StoreFault
from worker.fetch import ensure_base, fetch, remove
from worker.state import renew

if TYPE_CHECKING:
    from worker.runtime import Runtime
    from worker.state import WorkerState

log = logging.getLogger(__name__)

# Reverts that mean "this ballot cannot or need not be cast any more".
_ROUND_OVER = (WrongRound, RoundNotLive)


# --- the job ------------------------------------------------------------------------------------------------


def verify_round(rt: Runtime, task_id: int, round_: int) -> dict[str, Any]:
    """Vote on every update of the round this validator has not voted on yet. Idempotent."""
    chain = rt.chain()
    me = rt.address
    view = chain.round_view(task_id, round_)
    status = _skip_reason(view)
    if status is not None:
        return {"status": status}
    todo = view.all_indexes & ~chain.ballot(task_id, round_, me).indexes
    if not todo:
        return {"status": "already-voted"}

    state = rt.state()
    with state.round_lock("verify", me, task_id, round_, rt.config.lock_lease_s) as lock:
        if lock is None:
            return {"status": "busy"}
        subs = chain.submissions(task_id, round_)
        if len(subs) != view.submission_count:
            raise NotReady(f"the node's logs show {len(subs)} of {view.submission_count} submissions")
        state.set_progress("verify", task_id, round_, "fetching", updates=len(subs))
        verdicts = _verdicts(rt, view, subs, lock=lock)
        state.set_progress("verify", task_id, round_, "judged")
        rt.failpoint("verify.before_vote")
        result = _cast(rt, view, verdicts, todo)
    if result["status"] in ("voted", "already-voted", "vote-window-closed", "round-over"):
        shutil.rmtree(_round_dir(rt, task_id, round_), ignore_errors=True)
    return result


def _skip_reason(view: RoundView) -> str | None:
    if view.phase is Phase.FINALIZED:
        return "round-over"
    if view.phase is Phase.OPEN:
        return "submissions-open"  # the watcher enqueues again once they close
    if view.phase is Phase.CLOSED:
        return "vote-window-closed"
    if view.phase is Phase.NONE:
        return "no-such-round"
    return None


def _round_dir(rt: Runtime, task_id: int, round_: int) -> Path:
    return rt.cache_dir / "rounds" / f"{task_id}-{round_}"


@dataclass(frozen=True)
class _Round:
    """What judging one update of the round needs."""

    rt: Runtime
    view: RoundView
    base: TensorSource
    layout: Sequence[TensorInfo]
    directory: Path
    max_bytes: int
    base_scale: float | None


def _verdicts(rt: Runtime, view: RoundView, subs: Sequence[Submission], *, lock: Any) -> list[Verdict]:
    from ledger.updatefile import FileRejected, UpdateFile

    max_bytes = min(rt.limits.max_update_bytes, rt.settings.max_update_bytes)
    base_path = ensure_base(rt.store(), view.base_digest, rt.cache_dir, max_bytes=max_bytes)
    round_dir = _round_dir(rt, view.task_id, view.round)
    round_dir.mkdir(parents=True, exist_ok=True)
    try:
        base_file = UpdateFile.open(base_path)
    except FileRejected as exc:
        remove(base_path)
        raise StoreFault(
            f"the base model {digest_to_cid(view.base_digest)} is unreadable: {exc.detail}"
        ) from None
    with base_file as base:
        layout = describe_source(base)
        ctx = _Round(rt, view, base, layout, round_dir, max_bytes, base_norm(base, layout))
        judged = []
        for sub in subs:
            one = _judge_cached(ctx, sub)
            _remember_base_loss(round_dir, one)
            judged.append(one)
            renew(lock)
    return judge_round(judged, rt.limits)


def _judge_cached(ctx: _Round, sub: Submission) -> Judged:
    cid = digest_to_cid(sub.digest)
    cached = ctx.directory / f"{sub.index}-{cid}.json"
    try:
        return Judged.from_json(cached.read_text())
    except (OSError, ValueError, KeyError):
        pass
    path = ctx.directory / f"{sub.index}-{cid}.safetensors"
    try:
        got = fetch(ctx.rt.store(), sub.digest, path, max_bytes=ctx.max_bytes)
        ctx.rt.failpoint("verify.fetched")
        if got.rejected is not None:
            judged = Judged(got.rejected)
        else:
            record = ChainRecord(
                digest=sub.digest,
                task=ctx.view.task_id,
                round=ctx.view.round,
                base=ctx.view.base_digest,
                contributor=sub.contributor,
                num_samples=sub.num_samples,
            )
            judged = judge_update(
                path,
                base=ctx.base,
                layout=ctx.layout,
                record=record,
                limits=ctx.rt.limits,
                digest=got.digest,
                evaluate=ctx.rt.evaluate,
                base_loss=_cached_base_loss(ctx.directory),
                base_scale=ctx.base_scale,
            )
    finally:
        remove(path)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(judged.to_json())
    tmp.replace(cached)
    log.info("update %d (%s) of round %d: %s", sub.index, cid, ctx.view.round, judged.verdict.reason.slug)
    return judged


def _cached_base_loss(round_dir: Path) -> float | None:
    try:
        return float(json.loads((round_dir / "base-loss.json").read_text())["loss"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remember_base_loss(round_dir: Path, judged: Judged) -> None:
    """The loss check evaluates the base the first time; keep that so the base is evaluated once per round."""
    if judged.loss is not None and judged.loss.base_loss is not None:
        (round_dir / "base-loss.json").write_text(json.dumps({"loss": judged.loss.base_loss}))


def _cast(rt: Runtime, view: RoundView, verdicts: Sequence[Verdict], todo: int) -> dict[str, Any]:
    chain = rt.chain()
    state = rt.state()
    me = rt.address
    for _attempt in range(2):
        indexes, accepts, reasons = ballot_for(verdicts, todo)
        try:
            tx = chain.vote_batch(view.task_id, view.round, indexes, accepts, reasons).tx_hash
        except VotingClosed:
            return {"status": "vote-window-closed"}
        except _ROUND_OVER:
            return {"status": "round-over"}
        except AlreadyVoted:
            # Another run of this job voted on part of the round meanwhile: vote on what is left, if anything.
            todo = view.all_indexes & ~chain.ballot(view.task_id, view.round, me).indexes
            if not todo:
                return {"status": "already-voted"}
            continue
        _count(state, verdicts, todo)
        state.set_progress("verify", view.task_id, view.round, "voted", tx=tx)
        return {
            "status": "voted",
            "tx": tx,
            "indexes": indexes,
            "accepts": accepts,
            "reasons": list(reasons),
        }
    raise NotReady("the ballot kept changing under us (another run of this job is voting)")


def _count(state: WorkerState, verdicts: Sequence[Verdict], todo: int) -> None:
    counts: dict[str, int] = {"ballots_cast_total": 1}
    for i, v in enumerate(verdicts):
        if todo >> i & 1:
            metric = "updates_accepted_total" if v.accepted else f"updates_rejected_{v.reason.slug}_total"
            counts[metric] = counts.get(metric, 0) + 1
    state.incr_many(counts)
