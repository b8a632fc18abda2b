"""The aggregator's job on one round: the accepted set and weights from the consensus, the rule, one finalize.

1. The round must be finalizable (``roundView``: reveal window over, or every committed validator revealed after
   the commit phase) and not finalized; otherwise there is nothing to do yet, or any more.
2. The accepted set and each update's consensus score are read from the chain (``tally``: the lower weighted
   median of the revealed scores, docs/protocol.md R4); the contract computes the same at finalization, so the
   aggregator has no say in it. FedAvg weights each accepted update by its consensus score (R5), never by the
   sample count the member claimed.
3. Accepted updates and the base are downloaded to local files; ledger's streaming driver aggregates them in
   digest order with the task's rule (``AggregationSpec.decode(rule, ruleParam)``); ledger's writer streams the
   aggregate file (full weights; metadata naming the rule and the sorted input CIDs); it is put to the store.
   Deterministic: a run interrupted anywhere and run again produces the same bytes, so the same CID.
4. ``finalizeRound(task, round, digest)``. With nothing accepted the model carries over: the aggregate
   *is* the base (the contract's ``AggregateMustBeBase``), and no file is written.

If the aggregator never finalizes (down, stuck), anyone may carry the round over after its grace
(:func:`carry_over`, ``meshprov worker carry-over``; the watcher does it when ``--carry-over`` is on).

Idempotency: a finalized round is a no-op; a finalize that loses a race (``WrongRound``: the round moved on)
counts as done once the chain shows the round finalized; a Redis lock per (task, round) keeps two aggregators
from doing the work at the same time, with a lease shorter than the broker's visibility timeout.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.aggregation import AggregationSpec, Contribution, consensus_weights, prepare
from ledger.aggregation.output import write_aggregation
from ledger.chain.errors import (
    AggregateMustBeBase,
    FinalizeTooEarly,
    GraceNotOver,
    RoundNotLive,
    WrongRound,
)
from ledger.chain.types import Phase, RoundView, Submission
from ledger.content import cid_to_digest, digest_to_cid
from worker.errors import NotReady, StoreFault
from worker.fetch import ensure_base, fetch
from worker.state import renew

if TYPE_CHECKING:
    from ledger.updatefile import UpdateFile
    from worker.runtime import Runtime

log = logging.getLogger(__name__)

# Reverts of finalizeRound that say the chain is not where we thought: look again (retry), never give up silently.
_RETRY_REVERTS = (FinalizeTooEarly, AggregateMustBeBase)
# The round moved on under us: done if another aggregator finalized it, else look again.
_LOST_RACE = (WrongRound, RoundNotLive)


def aggregate_round(rt: Runtime, task_id: int, round_: int) -> dict[str, Any]:
    """Aggregate and finalize the round if it is finalizable and not finalized. Idempotent."""
    chain = rt.chain()
    view = chain.round_view(task_id, round_)
    if view.phase is Phase.FINALIZED:
        return {"status": "finalized-already", "aggregate": digest_to_cid(view.aggregate_digest)}
    if view.phase is Phase.NONE:
        return {"status": "no-such-round"}
    if not view.finalizable:
        return {"status": "not-finalizable-yet"}

    state = rt.state()
    with state.round_lock("aggregate", "-", task_id, round_, rt.config.lock_lease_s) as lock:
        if lock is None:
            return {"status": "busy"}
        state.set_progress("aggregate", task_id, round_, "started")
        tally = chain.tally(task_id, round_)
        accepted = tally.accepted_bitmap
        subs = chain.submissions(task_id, round_)
        if len(subs) != view.submission_count:
            raise NotReady(f"the node's logs show {len(subs)} of {view.submission_count} submissions")
        chosen = [s for s in subs if accepted >> s.index & 1]
        by_index = consensus_weights(tally.consensus, accepted)
        weights = [by_index[s.index] for s in chosen]
        # Nothing accepted: the model carries over, the aggregate is the base itself.
        digest = _aggregate(rt, view, chosen, weights, lock) if chosen else view.base_digest
        renew(lock)
        result = _finalize(rt, view, digest, accepted)
    shutil.rmtree(_round_dir(rt, task_id, round_), ignore_errors=True)
    return result


def _round_dir(rt: Runtime, task_id: int, round_: int) -> Path:
    return rt.cache_dir / "rounds" / f"{task_id}-{round_}"


def _aggregate(
    rt: Runtime, view: RoundView, chosen: Sequence[Submission], weights: Sequence[int], lock: Any
) -> bytes:
    chain = rt.chain()
    store = rt.store()
    state = rt.state()
    params = chain.task(view.task_id).params
    spec = AggregationSpec.decode(params.rule, params.rule_param)
    max_bytes = rt.settings.max_update_bytes
    base_path = ensure_base(store, view.base_digest, rt.cache_dir, max_bytes=max_bytes)
    work = _round_dir(rt, view.task_id, view.round)
    paths = []
    for sub in chosen:
        path = work / f"{digest_to_cid(sub.digest)}.safetensors"
        if not path.is_file():
            rejected = fetch(store, sub.digest, path, max_bytes=max_bytes).rejected
            if rejected is not None:
                # The validators accepted it, so they could fetch it within the limit: our store or limit differs.
                raise StoreFault(
                    f"accepted update {digest_to_cid(sub.digest)} cannot be used: {rejected.detail}"
                )
        paths.append(path)
        renew(lock)
    state.set_progress("aggregate", view.task_id, view.round, "fetched", inputs=len(paths))
    rt.failpoint("aggregate.fetched")

    out = work / "aggregate.safetensors"
    with _open_all([base_path, *paths]) as files:
        base, updates = files[0], files[1:]
        contributions = [_contribution(sub, f, w) for sub, f, w in zip(chosen, updates, weights, strict=True)]
        agg = prepare(base, contributions, spec)
        written = write_aggregation(
            out, agg, task=view.task_id, round=view.round, parent=digest_to_cid(view.base_digest)
        )
    try:
        cid = store.put_file(out)
    except Exception as exc:
        from ledger.content import StoreError, StoreUnavailable

        if isinstance(exc, StoreUnavailable | StoreError | OSError):
            raise StoreFault(f"storing the aggregate: {exc}") from None
        raise
    if cid != written.cid:  # pragma: no cover - both are the Kubo-identical CID of the same bytes
        raise StoreFault(f"the store named the aggregate {cid}, the file's CID is {written.cid}")
    state.set_progress("aggregate", view.task_id, view.round, "stored", aggregate=cid, rule=str(spec))
    log.info("round %d: aggregate %s of %d updates by %s", view.round, cid, len(chosen), spec)
    rt.failpoint("aggregate.stored")
    return cid_to_digest(cid)


def _contribution(sub: Submission, source: UpdateFile, consensus: int) -> Contribution:
    """An accepted update weighted by its consensus score (1..10,000), not by the samples it claims (R2)."""
    return Contribution(sub.digest, source=source, weight=consensus, num_samples=sub.num_samples)


@contextlib.contextmanager
def _open_all(paths: Sequence[Path]) -> Iterator[list[UpdateFile]]:
    from ledger.updatefile import FileRejected, UpdateFile

    with contextlib.ExitStack() as stack:
        files = []
        for path in paths:
            try:
                files.append(stack.enter_context(UpdateFile.open(path)))
            except FileRejected as exc:
                path.unlink(missing_ok=True)
                raise StoreFault(f"{path.name} is unreadable: {exc.detail}") from None
        yield files


def _finalize(rt: Runtime, view: RoundView, digest: bytes, accepted: int) -> dict[str, Any]:
    chain = rt.chain()
    state = rt.state()
    try:
        tx = chain.finalize_round(view.task_id, view.round, digest).tx_hash
    except _LOST_RACE as exc:
        now = chain.round_view(view.task_id, view.round)
        if now.phase is Phase.FINALIZED:
            return {"status": "finalized-by-another", "aggregate": digest_to_cid(now.aggregate_digest)}
        raise NotReady(f"finalizeRound reverted with {exc.error_name}: {exc.message}") from None
    except _RETRY_REVERTS as exc:
        raise NotReady(f"finalizeRound reverted with {exc.error_name}: {exc.message}") from None
    state.set_progress(
        "aggregate", view.task_id, view.round, "finalized", tx=tx, aggregate=digest_to_cid(digest)
    )
    state.incr("rounds_finalized_total")
    rt.failpoint("aggregate.finalized")
    return {"status": "finalized", "tx": tx, "aggregate": digest_to_cid(digest), "accepted": accepted}


def carry_over(rt: Runtime, task_id: int, round_: int) -> dict[str, Any]:
    """Anyone's fallback when the aggregator has not finalized within the grace: ``finalizeCarryOver`` (the base
    becomes the round's aggregate, reputations settle, no reward). A no-op before the grace ends or once the
    round is finalized."""
    chain = rt.chain()
    view = chain.round_view(task_id, round_)
    if view.phase is Phase.FINALIZED:
        return {"status": "finalized-already", "aggregate": digest_to_cid(view.aggregate_digest)}
    if view.phase is Phase.NONE:
        return {"status": "no-such-round"}
    now = chain.clock().ledger_now
    if now < view.grace_end:
        return {"status": "grace-not-over", "seconds_left": view.grace_end - now}
    try:
        tx = chain.finalize_carry_over(task_id, round_).tx_hash
    except GraceNotOver:
        # The pending view says the grace is over; the node estimated at an older block: not yet, for it.
        return {"status": "grace-not-over", "seconds_left": 0}
    except _LOST_RACE:
        now_view = chain.round_view(task_id, round_)
        if now_view.phase is Phase.FINALIZED:
            return {"status": "finalized-by-another", "aggregate": digest_to_cid(now_view.aggregate_digest)}
        raise NotReady(
            f"finalizeCarryOver of round {round_} lost a race and the round is not finalized"
        ) from None
    rt.state().incr("rounds_carried_over_total")
    log.info(
        "round %d of task %d carried over (the aggregator did not finalize within the grace)", round_, task_id
    )
    return {"status": "carried-over", "tx": tx, "aggregate": digest_to_cid(view.base_digest)}
