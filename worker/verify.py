"""The validator's job on one round: fetch every update, check and score it, commit the scores, reveal them.

Protocol v2 (docs/protocol.md R1, R3). Once submissions close (phase Commit), a validator of the round's frozen
validator set scores every update of the round at once:

1. **content**: members publish their update only after the close (R1), so a download that finds nothing yet is
   waited for, with a bound: until shortly before the commit window ends. Content still missing then scores 0
   (no contribution measured: not accepted, no reputation lost by the member for our store's sake);
2. **hard checks** (``ledger.checks``: size, CID, header, metadata vs the chain's record, layout, values, norms,
   round statistics, the same bytes twice), then the **copy checks** over whole vectors (``NEAR_COPY`` of the
   last rounds' accepted updates, ``DUPLICATE`` within the round): a hard reject scores ``REJECT`` with its reason;
3. **score** of every other update (:mod:`worker.scoring` when the validator has a reference; see
   :func:`_scorer`);
4. **commit**: the scores, reasons and a fresh 32-byte salt are written to this validator's disk
   (:mod:`worker.sheets`, atomically and fsynced) *before* ``commitScores`` is sent, so a crash anywhere after
   the commit still lets the validator reveal;
5. **reveal** in the reveal window, from the sheet on disk (the same job, run again by the watcher once the reveal
   phase starts, or right after the commit when the commit phase ended early).

A validator outside the round's set skips the round politely (``not-in-validator-set``). Every step re-reads the
chain first, so a redelivered job never commits or reveals twice.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ledger.aggregation.source import TensorInfo, TensorSource, describe_source
from ledger.chain.errors import (
    AlreadyCommitted,
    AlreadyRevealed,
    CommitClosed,
    NotCommitted,
    NotInValidatorSet,
    RevealClosed,
    RevealMismatch,
    RoundNotLive,
    TooEarlyRevert,
    WrongRound,
)
from ledger.chain.scores import REJECT, SCORE_ONE, ScoreSheet
from ledger.chain.types import Phase, RoundView, Submission, ValidatorSet
from ledger.checks import ChainRecord, Judged, Verdict, base_norm, judge_round
from ledger.content import digest_to_cid
from worker import history
from worker.errors import ContentMissing, NotReady, StoreFault
from worker.fetch import ensure_base, fetch_checked, remove
from worker.sheets import SheetUnreadable, discard_sheet, load_sheet, save_sheet
from worker.state import renew

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from ledger.checks.privacy_budget import BudgetJudge
    from worker.runtime import Runtime
    from worker.state import WorkerState

log = logging.getLogger(__name__)

_ROUND_OVER = (WrongRound, RoundNotLive)
CONTENT_POLL_S = 1.0


@dataclass(frozen=True)
class Scored:
    """One update's score as this validator commits it."""

    score: int
    reason: int
    detail: str = ""


# --- the job ------------------------------------------------------------------------------------------------


def verify_round(rt: Runtime, task_id: int, round_: int) -> dict[str, Any]:
    """Commit this validator's scores of the round, or reveal them, whichever the round's phase asks. Idempotent."""
    chain = rt.chain()
    me = rt.address
    view = chain.round_view(task_id, round_)
    status = _skip_reason(view)
    if status is not None:
        return {"status": status}
    vset = chain.validator_set(task_id, round_)
    if me not in vset:
        log.info("round %d: %s is not in the round's validator set; skipping", round_, me)
        return {"status": "not-in-validator-set"}
    committed: dict[str, Any] | None = None
    if view.phase is Phase.COMMIT and not vset.has_committed(me):
        committed = commit_round(rt, view)
        if committed["status"] != "committed":
            return committed
        view = chain.round_view(task_id, round_)
        vset = chain.validator_set(task_id, round_)
    if view.phase is Phase.REVEAL:
        revealed = reveal_round(rt, view, vset)
        return {**(committed or {}), **revealed}
    if committed is not None:
        return committed  # the reveal comes when the reveal phase starts (the watcher enqueues it)
    if view.phase is Phase.COMMIT:
        return {"status": "committed-awaiting-reveal"}
    # Closed: the reveal window is over (or every committer revealed).
    return {"status": "already-revealed" if vset.has_revealed(me) else "reveal-window-closed"}


def _skip_reason(view: RoundView) -> str | None:
    if view.phase is Phase.FINALIZED:
        return "round-over"
    if view.phase is Phase.OPEN:
        return "submissions-open"  # the watcher enqueues again once they close
    if view.phase is Phase.NONE:
        return "no-such-round"
    return None


def _round_dir(rt: Runtime, task_id: int, round_: int) -> Path:
    return rt.cache_dir / "rounds" / f"{task_id}-{round_}"


# --- commit -------------------------------------------------------------------------------------------------


def commit_round(rt: Runtime, view: RoundView) -> dict[str, Any]:
    """Score the round (or reuse the sheet an interrupted run wrote), write the sheet down, commit it."""
    chain = rt.chain()
    state = rt.state()
    with state.round_lock("verify", rt.address, view.task_id, view.round, rt.config.lock_lease_s) as lock:
        if lock is None:
            return {"status": "busy"}
        try:
            kept = load_sheet(rt.cache_dir, view.task_id, view.round)
        except SheetUnreadable as exc:
            log.warning("round %d: %s; scoring again (nothing was committed yet)", view.round, exc)
            kept = None
        if kept is not None and len(kept[0].scores) != view.submission_count:
            kept = None
        if kept is None:
            discard_sheet(rt.cache_dir, view.task_id, view.round)  # we have not committed: it cannot matter
        if kept is not None:
            sheet, commitment = kept
        else:
            subs = chain.submissions(view.task_id, view.round)
            if len(subs) != view.submission_count:
                raise NotReady(f"the node's logs show {len(subs)} of {view.submission_count} submissions")
            state.set_progress("verify", view.task_id, view.round, "fetching", updates=len(subs))
            scored = score_round(rt, view, subs, lock=lock)
            if rt.lie:
                scored = [
                    Scored(SCORE_ONE, 0, "lying: accepted against the checks") if s.reason else s
                    for s in scored
                ]
            sheet = ScoreSheet.new([s.score for s in scored], [s.reason for s in scored])
            commitment = _commitment(rt, view, sheet)
            # Written down before the commit is sent: without the salt the commitment can never be opened. If
            # another run of this job wrote one meanwhile, that one is committed (the first sheet wins).
            sheet, commitment = save_sheet(rt.cache_dir, view.task_id, view.round, sheet, commitment)
            _count(state, scored)
        state.set_progress("verify", view.task_id, view.round, "scored")
        rt.failpoint("verify.before_commit")
        try:
            tx = chain.commit_scores(view.task_id, view.round, commitment).tx_hash
        except AlreadyCommitted:
            return {"status": "already-committed"}
        except CommitClosed:
            return {"status": "commit-window-closed"}
        except TooEarlyRevert as exc:
            raise NotReady(f"commitScores reverted with {exc.error_name}: {exc.message}") from None
        except NotInValidatorSet:
            return {"status": "not-in-validator-set"}
        except _ROUND_OVER:
            return {"status": "round-over"}
    state.set_progress("verify", view.task_id, view.round, "committed", tx=tx)
    state.incr("commits_total")
    log.info("round %d: committed scores %s", view.round, list(sheet.scores))
    rt.failpoint("verify.committed")
    return {"status": "committed", "tx": tx, "scores": list(sheet.scores), "reasons": list(sheet.reasons)}


def _commitment(rt: Runtime, view: RoundView, sheet: ScoreSheet) -> bytes:
    client = rt.chain().client
    return client.score_commitment(
        view.task_id, view.round, rt.address, sheet.score_bytes, sheet.reason_bytes, salt=sheet.salt
    )


# --- reveal -------------------------------------------------------------------------------------------------


def reveal_round(rt: Runtime, view: RoundView, vset: ValidatorSet) -> dict[str, Any]:
    """Reveal the committed sheet from disk (after a restart too)."""
    me = rt.address
    if vset.has_revealed(me):
        return {"status": "already-revealed"}
    if not vset.has_committed(me):
        return {"status": "not-committed"}  # absent this round: nothing can be revealed
    state = rt.state()
    try:
        kept = load_sheet(rt.cache_dir, view.task_id, view.round)
    except SheetUnreadable as exc:
        kept = None
        log.error("round %d: %s", view.round, exc)
    if kept is None:
        detail = f"the score sheet of round {view.round} is lost: the commitment cannot be opened"
        state.record_fault("sheet", detail, task=view.task_id, round=view.round)
        log.error("%s (this validator counts as absent)", detail)
        return {"status": "sheet-lost"}
    sheet, _commitment_sent = kept
    try:
        tx = (
            rt.chain()
            .reveal_scores(view.task_id, view.round, sheet.scores, sheet.reasons, sheet.salt)
            .tx_hash
        )
    except AlreadyRevealed:
        return {"status": "already-revealed"}
    except RevealClosed:
        return {"status": "reveal-window-closed"}
    except NotCommitted:
        return {"status": "not-committed"}
    except TooEarlyRevert as exc:
        # The node judged the transaction at an older block than the view we read (pending): look again soon.
        raise NotReady(f"revealScores reverted with {exc.error_name}: {exc.message}") from None
    except RevealMismatch:
        detail = f"the sheet of round {view.round} does not open this validator's commitment"
        state.record_fault("sheet", detail, task=view.task_id, round=view.round)
        return {"status": "sheet-mismatch"}
    except _ROUND_OVER:
        return {"status": "round-over"}
    state.set_progress("verify", view.task_id, view.round, "revealed", tx=tx)
    state.incr("reveals_total")
    shutil.rmtree(_round_dir(rt, view.task_id, view.round), ignore_errors=True)
    return {
        "status": "revealed",
        "reveal_tx": tx,
        "scores": list(sheet.scores),
        "reasons": list(sheet.reasons),
    }


# --- scoring ------------------------------------------------------------------------------------------------


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
    budget: BudgetJudge | None = None
    """The task's privacy budget over the members' submissions so far (None: the task anchors none)."""


def score_round(
    rt: Runtime, view: RoundView, subs: Sequence[Submission], *, lock: Any = None
) -> list[Scored]:
    """Every update's score (index order): hard checks, copy checks, then the scorer."""
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
        ctx = _Round(
            rt, view, base, layout, round_dir, max_bytes, base_norm(base, layout), _budget(rt, view, subs)
        )
        deadline = _content_deadline(rt, view)
        # A job must end before its soft time limit: a longer wait is handed to a retry (the judged updates are
        # cached on disk), so the wait is bounded by both.
        give_back = time.monotonic() + rt.config.soft_time_limit_s / 2
        judged: list[Judged | None] = []
        for sub in subs:
            judged.append(_judge_waiting(ctx, sub, deadline, give_back, lock))
        present = [j for j in judged if j is not None]
        final = iter(judge_round(present, rt.limits))
        verdicts: list[Verdict | None] = [next(final) if j is not None else None for j in judged]
        return _scores(ctx, subs, verdicts)


def _budget(rt: Runtime, view: RoundView, subs: Sequence[Submission]) -> BudgetJudge | None:
    """The privacy-budget check of the round (``ledger.checks.privacy_budget``) when the task anchors a budget:
    every submission of the task's earlier rounds from the chain's logs, each update's record read from the
    store's copy of its header when a member's update is judged."""
    if rt.privacy_budget is None:
        return None
    from ledger.checks.privacy_budget import NOT_PUBLISHED, BudgetJudge, Released, Submitted, read_released

    chain = rt.chain()
    submitted = [
        Submitted(s.round, s.index, s.contributor, digest_to_cid(s.digest))
        for r in range(1, view.round)
        for s in chain.submissions(view.task_id, r)
    ]
    submitted += [Submitted(view.round, s.index, s.contributor, digest_to_cid(s.digest)) for s in subs]
    store = rt.store()
    # Per CID: content never changes, so each record is read from the store once.
    kept = rt.cache_dir / "privacy-records"

    def read(cid: str, label: str) -> Released:
        import json
        import os

        from ledger.content.errors import ContentError

        path = kept / f"{cid}.json"
        try:
            data = json.loads(path.read_text())
            if isinstance(data.get("record"), dict | None) and isinstance(data.get("problem"), str | None):
                return Released(label, data["record"], data["problem"])
        except (OSError, ValueError, AttributeError):
            pass
        try:
            got = read_released(store, cid, label)
        except (ContentError, OSError) as exc:  # not "not found" (that spends nothing): the store failed
            raise StoreFault(f"reading {label}'s privacy record: {str(exc).splitlines()[0]}") from None
        if got is not NOT_PUBLISHED:  # content published later may still count for a later round
            kept.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"record": got.record, "problem": got.problem}, sort_keys=True))
            tmp.replace(path)
        return got

    return BudgetJudge(rt.privacy_budget, submitted, read)


def _content_deadline(rt: Runtime, view: RoundView) -> float:
    """The monotonic time after which missing content scores 0: before the commit window ends, with a margin
    for scoring and the commit transaction (a quarter of the window, at least 2 s, at most 30 s)."""
    window = max(1, view.commit_end - view.submission_end)
    margin = min(30.0, max(2.0, window / 4))
    left = view.commit_end - rt.chain().clock().ledger_now
    return time.monotonic() + max(0.0, left - margin)


def _judge_waiting(
    ctx: _Round, sub: Submission, deadline: float, give_back: float, lock: Any
) -> Judged | None:
    """The update's per-update verdict, waiting for its content until ``deadline``; None if it never came. Past
    ``give_back`` (the job's own time budget) the job is retried instead (NotReady)."""
    while True:
        if lock is not None:
            renew(lock)  # the lease must outlive the wait, or a redelivered job scores beside us
        try:
            return _judge_cached(ctx, sub)
        except ContentMissing as exc:
            now = time.monotonic()
            if now >= deadline:
                log.info("update %d of round %d: %s; scoring it 0", sub.index, ctx.view.round, exc)
                return None
            if now >= give_back:
                raise NotReady(f"waiting for update {sub.index}'s content: {exc.detail}") from None
            time.sleep(CONTENT_POLL_S)


def _update_path(ctx: _Round, sub: Submission) -> Path:
    """The update's vector file (``worker.vectorfiles``): what the validator keeps of an update that passed the
    per-update checks. The update file itself is never written (``_judge_cached``)."""
    return ctx.directory / f"{sub.index}-{digest_to_cid(sub.digest)}.npy"


def _kept_path(ctx: _Round, sub: Submission) -> Path:
    """The update's small tensors that are not in its vector (running statistics, integer buffers)."""
    return ctx.directory / f"{sub.index}-{digest_to_cid(sub.digest)}.rest.npz"


def _update_source(ctx: _Round, sub: Submission) -> TensorSource:
    """The update as a ``TensorSource`` (its values exactly, from the vector file and the kept tensors)."""
    from worker.vectorfiles import VectorSource, load_kept, load_vector

    return VectorSource(load_vector(_update_path(ctx, sub)), ctx.layout, load_kept(_kept_path(ctx, sub)))


def _judge_cached(ctx: _Round, sub: Submission) -> Judged:
    """The update's per-update verdict, judged from the store's verified stream in one pass
    (``worker.fetch.fetch_checked``): each block hashed once as it is read, the header parsed within its bound,
    the values scanned and the update's vector written as the bytes arrive. Nothing is written of an update
    but its vector (and its few non-parameter tensors), and nothing is read back to judge it."""
    from ledger.checks.update_checks import StreamChecks, check_loss
    from worker.vectorfiles import VectorSource, VectorWriter, save_kept

    cid = digest_to_cid(sub.digest)
    cached = ctx.directory / f"{sub.index}-{cid}.json"
    path, kept_path = _update_path(ctx, sub), _kept_path(ctx, sub)
    try:
        judged = Judged.from_json(cached.read_text())
        if not judged.verdict.accepted or (path.is_file() and kept_path.is_file()):
            return judged
    except (OSError, ValueError, KeyError):
        pass
    record = ChainRecord(
        digest=sub.digest,
        task=ctx.view.task_id,
        round=ctx.view.round,
        base=ctx.view.base_digest,
        contributor=sub.contributor,
        num_samples=sub.num_samples,
    )
    # With a reference trainer the scorer applies the loss gate: the loss is not evaluated twice.
    scorer_gates = ctx.rt.reference_trainer is not None
    limits = ctx.rt.limits
    writers: list[VectorWriter] = []

    def checks(size: int) -> StreamChecks:
        writers.append(VectorWriter(path, ctx.layout))
        return StreamChecks(
            size,
            base=ctx.base,
            record=record,
            limits=limits,
            base_layout=ctx.layout,
            base_scale=ctx.base_scale,
            sink=writers[-1],
        )

    try:
        got = fetch_checked(ctx.rt.store(), sub.digest, max_bytes=ctx.max_bytes, checks=checks)
    except BaseException:
        for w in writers:
            w.abort()
        raise
    ctx.rt.failpoint("verify.fetched")
    verdict = got.rejected or got.verdict
    assert verdict is not None
    if verdict.accepted and ctx.budget is not None:
        # After the update's own checks, before the loss: deterministic given the chain and the store.
        verdict = ctx.budget.judge(sub.contributor, ctx.view.round, sub.index) or verdict
    loss = None
    if verdict.accepted:
        assert got.checks is not None
        vector = writers[-1].finish()
        save_kept(kept_path, got.checks.kept)
        if not scorer_gates and ctx.rt.evaluate is not None and limits.loss_gate:
            source = VectorSource(vector, ctx.layout, got.checks.kept)
            loss = check_loss(source, ctx.base, ctx.rt.evaluate, limits)
    else:
        for w in writers:
            w.abort()  # a rejected update is never read again: keep nothing of its untrusted bytes
    judged = Judged(verdict, loss)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(judged.to_json())
    tmp.replace(cached)
    log.info("update %d (%s) of round %d: %s", sub.index, cid, ctx.view.round, judged.verdict.reason.slug)
    return judged


def _scores(ctx: _Round, subs: Sequence[Submission], verdicts: Sequence[Verdict | None]) -> list[Scored]:
    from ledger.checks.copies import Copy, find_copies
    from worker.vectorfiles import load_vector

    rt, view = ctx.rt, ctx.view
    # Vectors as memory-mapped files (worker.vectorfiles), written while each update streamed in: N updates of a
    # large model never sit in memory at once.
    vector_dir = ctx.directory / "vectors"
    shutil.rmtree(vector_dir, ignore_errors=True)
    vector_dir.mkdir(parents=True)
    vectors: list[NDArray[Any] | None] = []
    for sub, v in zip(subs, verdicts, strict=True):
        vectors.append(load_vector(_update_path(ctx, sub)) if v is not None and v.accepted else None)
    history_vectors = _history(rt, view, ctx.layout, vector_dir)
    copies: list[Copy | None] = [None] * len(subs)
    if rt.limits.near_copy_cosine is not None:
        copies = find_copies(
            vectors,
            [s.contributor for s in subs],
            [(who, v) for who, v, _ in history_vectors],
            threshold=rt.limits.near_copy_cosine,
            spread=rt.limits.near_copy_spread,
            sketches=[
                None if v is None else sketch_file(v, _update_path(ctx, sub).with_suffix(".sketch"))
                for sub, v in zip(subs, vectors, strict=True)
            ],
            history_sketches=[
                None if where is None else sketch_file(v, where) for _, v, where in history_vectors
            ],
        )
    scorer = _scorer(ctx, subs, vectors)
    out: list[Scored] = []
    for i, (sub, v) in enumerate(zip(subs, verdicts, strict=True)):
        if v is None:
            out.append(Scored(0, 0, "content not published before the commit deadline"))
        elif not v.accepted:
            out.append(Scored(REJECT, int(v.reason), v.detail))
        elif (copy := copies[i]) is not None:
            out.append(Scored(REJECT, int(copy.reason), copy.detail))
        else:
            out.append(scorer(i))
            _remember(rt, view, sub, _update_path(ctx, sub))
    for i, s in enumerate(out):
        log.info("round %d: update %d: score %d reason %d %s", view.round, i, s.score, s.reason, s.detail)
    return out


def _remember(rt: Runtime, view: RoundView, sub: Submission, vector: Path) -> None:
    """Keep the vector of an update that passed the checks for the next rounds' near-copy check, in the
    history's round directory (``worker.history``, which removes rounds too old to compare with): hard-linked,
    so keeping it costs no copy."""
    directory = history.history_dir(rt.cache_dir, view.task_id) / str(view.round)
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / f"{sub.index}-{sub.contributor.lower()}.npy"
    if dest.exists():
        return
    for source, target in ((vector.with_suffix(".sketch"), dest.with_suffix(".sketch")), (vector, dest)):
        if not source.is_file():
            continue  # no sketch for a short vector
        tmp = target.with_name(target.name + ".tmp")
        tmp.unlink(missing_ok=True)
        try:
            tmp.hardlink_to(source)
        except OSError:
            shutil.copyfile(source, tmp)
        tmp.replace(target)


def sketch_file(vector: NDArray[Any], path: Path) -> NDArray[Any] | None:
    """The vector's copy-check sketch (``ledger.checks.copies.sketch``), kept in ``path`` beside it: a past
    round's update is compared with the next rounds' too, and its sketch need not be computed again. None for
    a vector too short to be sketched."""
    import numpy as np

    from ledger.checks.copies import SKETCH_MIN, SKETCH_SIZE, sketch

    if vector.size < SKETCH_MIN:
        return None
    try:
        with open(path, "rb") as f:
            kept: NDArray[Any] = np.load(f, allow_pickle=False)
        if kept.shape == (SKETCH_SIZE,) and kept.dtype == np.float64:
            return kept
    except (OSError, ValueError):
        pass
    made = sketch(vector)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, made)
    tmp.replace(path)
    return made


def _history(
    rt: Runtime, view: RoundView, layout: Sequence[TensorInfo], vector_dir: Path
) -> list[tuple[str, NDArray[Any], Path | None]]:
    """(contributor, vector, where its sketch is kept) of the last rounds' updates this validator kept that the
    consensus accepted (memory-mapped vector files; update files an earlier version kept are turned into vectors
    in ``vector_dir``)."""
    from ledger.updatefile import FileRejected, UpdateFile
    from worker.vectorfiles import load_vector, vector_file

    kept = history.recent(rt.cache_dir, view.task_id, view.round)  # also removes rounds too old
    root = history.history_dir(rt.cache_dir, view.task_id)
    for past_round in range(view.round - history.KEEP_ROUNDS, view.round):
        for path in sorted((root / str(past_round)).glob("*.npy")):
            index, _, contributor = path.stem.partition("-")
            if index.isdigit() and contributor:
                kept.append(history.PastUpdate(past_round, int(index), contributor, path))
    if not kept:
        return []
    accepted: dict[int, int] = {}
    for final in rt.chain().finalizations(view.task_id):
        accepted[final.round] = final.accepted_bitmap
    size = sum(info.size for info in layout if info.parameter)
    out: list[tuple[str, NDArray[Any], Path | None]] = []
    for past in kept:
        if not accepted.get(past.round, 0) >> past.index & 1:
            continue
        try:
            if past.path.suffix == ".npy":
                vector = load_vector(past.path)
                if vector.shape != (size,):
                    raise ValueError(f"{vector.shape[0]} values, the layout has {size}")
                out.append((past.contributor, vector, past.path.with_suffix(".sketch")))
                continue
            with UpdateFile.open(past.path) as update:
                path = vector_dir / f"history-{past.round}-{past.index}.npy"
                out.append((past.contributor, vector_file(update, layout, path), None))
        except (
            FileRejected,
            OSError,
            ValueError,
        ) as exc:  # a layout change or a damaged file: not comparable
            log.warning("history file %s not usable: %s", past.path, exc)
    return out


def _scorer(ctx: _Round, subs: Sequence[Submission], vectors: Sequence[NDArray[Any] | None]) -> Any:
    """``score(i) -> Scored`` for an update that passed the hard and copy checks.

    With a reference trainer (``--reference-trainer``), the validator's own reference update, trained from the
    base on its held-out slice (:mod:`worker.reference`), and :func:`worker.scoring.score_update` (cosine,
    magnitude, and the loss gate when ``--evaluator`` and ``--loss-delta`` are set). Without one, the reference of
    update *i* is the mean of the round's *other* updates that passed the checks (FLTrust's direction with the
    round as root set): honest updates point alike and score > 0, noise and sign flips score <= 0; a lone update
    has nothing to be compared with and scores SCORE_ONE / 2."""
    if ctx.rt.reference_trainer is not None:
        return _reference_scorer(ctx, subs, vectors)
    from ledger.checks.score import score_vector
    from worker.vectorfiles import running_sum

    usable = [v for v in vectors if v is not None]
    total = running_sum(usable) if usable else None

    def score(i: int) -> Scored:
        v = vectors[i]
        assert v is not None
        assert total is not None
        if len(usable) < 2:
            return Scored(SCORE_ONE // 2, 0, "the round's only update passing the checks")
        reference = (total - v) / (len(usable) - 1)
        s = score_vector(v, reference)
        return Scored(s.value, int(s.reason), s.detail)

    return score


def _reference_scorer(ctx: _Round, subs: Sequence[Submission], vectors: Sequence[NDArray[Any] | None]) -> Any:
    import numpy as np

    from worker.reference import reference_seed, reference_update
    from worker.vectorfiles import load_vector, vector_dtype

    rt, view = ctx.rt, ctx.view
    cached = ctx.directory / "reference.npy"
    try:
        reference = load_vector(cached)
    except (OSError, ValueError):
        assert rt.reference_trainer is not None
        trainer = rt.reference_trainer
        seed = reference_seed(view.task_id, view.round, rt.address)
        narrow = vector_dtype(ctx.layout)

        def train() -> None:
            vector = reference_update(
                trainer, ctx.base, seed=seed, steps=rt.reference_steps, layout=ctx.layout
            )
            # Kept in the vectors' dtype when that is exact (a float32 model's trainer returns float32 deltas):
            # half the bytes, and mapped from disk rather than held.
            small = vector.astype(narrow)
            keep = small if np.array_equal(small, vector) else vector
            del vector, small
            tmp = ctx.directory / "reference.tmp.npy"
            np.save(tmp, keep)
            tmp.replace(cached)

        _in_child(train, what="the reference training")
        reference = load_vector(cached)
    limits = rt.limits
    gate = rt.evaluate is not None and limits.loss_gate
    base_loss: list[float | None] = [None]  # the base is evaluated once per round
    reference_norm: list[float | None] = [None]  # and the reference's norm measured once

    def score(i: int) -> Scored:
        from ledger.checks.score import rejected, score_vector
        from ledger.checks.update_checks import check_loss
        from ledger.checks.vectors import norm

        # worker.scoring.score_update's arithmetic, on the update's values from its vector file (there is no
        # update file): the loss gate first (check_loss, with the task's margins), then the cosine score.
        vector = vectors[i]
        assert vector is not None
        loss = None
        if gate:
            assert rt.evaluate is not None
            checked = check_loss(
                _update_source(ctx, subs[i]), ctx.base, rt.evaluate, limits, base_loss=base_loss[0]
            )
            base_loss[0] = checked.base_loss
            if not checked.accepted:
                r = rejected(checked.reason, checked.detail)
                return Scored(r.value, int(r.reason), r.detail)
            loss = checked.loss
        if reference_norm[0] is None:
            reference_norm[0] = norm(reference)
        s = score_vector(
            vector, reference, loss=loss, base_loss=base_loss[0], reference_norm=reference_norm[0]
        )
        return Scored(s.value, int(s.reason), s.detail)

    return score


REFERENCE_IN_CHILD = True
"""Train the reference in a forked child process (POSIX): the recipe's training holds the model, its gradients
and the optimiser's state (AdamW: two more copies) — four or more models' worth that the judging process need not
carry; only the reference vector comes back, as a file. Off (or without ``os.fork``) it runs in this process."""

CHILD_TIMEOUT_S = 1800.0
"""How long a forked child may take before it is killed and the round is the validator's ``ScoringError`` (it is
absent): a child that never ends (a recipe that deadlocks; a thread pool that did not survive the fork) must not
hold the validator's only job thread, and with it every later round, for ever."""


def _in_child(work: Callable[[], None], *, what: str) -> None:
    """Run ``work`` in a forked child (it must leave its result on disk); its failure is raised here as a
    ``ScoringError`` with the child's message, and one that outlives :data:`CHILD_TIMEOUT_S` is killed. Without fork
    (or with REFERENCE_IN_CHILD off), run it here."""
    import traceback

    from ledger.checks.score import ScoringError

    if not REFERENCE_IN_CHILD or not hasattr(os, "fork"):
        work()
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: do the work, report a failure through the pipe, never return into the job
        code = 0
        try:
            os.close(read_end)
            _one_torch_thread()
            work()
        except BaseException as exc:
            message = (
                f"{type(exc).__name__}: {exc}" if isinstance(exc, ScoringError) else traceback.format_exc()
            )
            os.write(write_end, message.encode()[-8000:])
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        reported = _read_until_closed(pipe, CHILD_TIMEOUT_S)
    if reported is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise ScoringError(
            f"{what} did not finish in its child process within {CHILD_TIMEOUT_S:g} s: killed "
            "(the validator is absent this round)"
        )
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise ScoringError(f"{what} failed in its child process: {reported.strip() or f'status {status}'}")


def _one_torch_thread() -> None:
    """In a forked child: torch (if a plug-in loaded it) on one intra-op thread before the work's first op.

    A parent thread that ran a parallel torch op owns a GNU OpenMP pool whose threads the fork did not copy; the
    child's first parallel op waits for them for ever. A plug-in's evaluator may leave torch on every core and use
    it in the job's thread, so the child cannot trust the parent's pool, and one thread never touches it. The
    recipe host pins its process to one thread in ``warm_up``, so its children start no pool of the parent's and
    may raise the count again (the task's ``threads``). Looked up, not imported: the worker does not need torch."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _read_until_closed(pipe: BinaryIO, timeout: float) -> str | None:
    """What the child wrote before it closed its end (it exits: the end closes with it); None if it is still open
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([pipe], [], [], left)[0]:
            return None
        chunk = os.read(pipe.fileno(), 65536)
        if not chunk:
            return b"".join(chunks).decode(errors="replace")
        chunks.append(chunk)


def reason_slug(code: int) -> str:
    from ledger.reasons import Reason

    try:
        return Reason(code).slug
    except ValueError:
        return str(code)


def _count(state: WorkerState, scored: Sequence[Scored]) -> None:
    counts: dict[str, int] = {"score_sheets_total": 1}
    for s in scored:
        if s.reason:
            metric = f"updates_rejected_{reason_slug(s.reason)}_total"
        else:
            metric = "updates_scored_positive_total" if s.score > 0 else "updates_scored_nonpositive_total"
        counts[metric] = counts.get(metric, 0) + 1
    state.incr_many(counts)
