"""The malicious corpus through the validator's glue: store -> bounded fetch -> ledger checks -> round verdicts.

Each case is one submission in a round of honest members; it goes through exactly what the worker runs for an
update (``worker.fetch.fetch`` from a real local block store with the size bound, ``ledger.checks.judge_update``
with the chain's record, ``ledger.checks.judge_round`` over the round) and must come out with its reason code,
while every honest update of the same round is accepted. The end-to-end test sends a subset through real worker
processes on a real chain.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ledger.aggregation.source import describe_source
from ledger.checks import ChainRecord, CheckLimits, Judged, Verdict, judge_round, judge_update
from ledger.content import cid_to_digest
from ledger.content.local_store import LocalStore
from ledger.reasons import Reason
from ledger.updatefile import UpdateFile
from tests.support import malicious as corpus
from worker.fetch import fetch

TASK, ROUND = 1, 3
MEMBERS = [f"0x{i:040x}" for i in range(1, 8)]


def limits() -> CheckLimits:
    return CheckLimits(max_update_bytes=corpus.OVERSIZE_LIMIT, max_norm=corpus.max_norm(), loss_delta=0.0)


class RoundUnderTest:
    """A round on a local store: the base, honest members 0..3, and then whatever a test submits."""

    def __init__(self, root: Path) -> None:
        from eth_utils.address import to_checksum_address

        self.root = root
        self.store = LocalStore(root / "blocks")
        self.base_cid = self.store.put_bytes(corpus.base_file())
        self.base_path = root / "base.safetensors"
        assert (
            fetch(self.store, cid_to_digest(self.base_cid), self.base_path, max_bytes=1 << 20).rejected
            is None
        )
        self.members = [to_checksum_address(m) for m in MEMBERS]
        self.submissions: list[tuple[bytes, ChainRecord]] = []

    def context(self, member: int, peer: int | None = None) -> corpus.Context:
        return corpus.Context(
            task=TASK,
            round=ROUND,
            base_cid=self.base_cid,
            contributor=self.members[member],
            num_samples=100 + member,
            member=member,
            other_contributor=self.members[(member + 1) % len(self.members)],
            peer_delta=None if peer is None else corpus.honest_delta(peer),
        )

    def submit(self, ctx: corpus.Context, data: bytes, *, odd_dag: bool = False) -> None:
        cid = corpus.put_odd_dag(self.root / "blocks", data) if odd_dag else self.store.put_bytes(data)
        digest = cid_to_digest(cid)
        record = ChainRecord(
            digest=digest,
            task=TASK,
            round=ROUND,
            base=cid_to_digest(self.base_cid),
            contributor=ctx.contributor,
            num_samples=ctx.num_samples,
        )
        self.submissions.append((digest, record))

    def submit_honest(self, members: int = corpus.HONEST_MEMBERS) -> None:
        for m in range(members):
            ctx = self.context(m)
            self.submit(ctx, corpus.honest_update(ctx))

    def judge(self, checks: CheckLimits) -> list[Verdict]:
        """What a validator's job computes for the round (without the chain and the vote)."""
        judged = []
        with UpdateFile.open(self.base_path) as base:
            layout = describe_source(base)
            for i, (digest, record) in enumerate(self.submissions):
                path = self.root / f"update-{i}.safetensors"
                got = fetch(self.store, digest, path, max_bytes=checks.max_update_bytes)
                if got.rejected is not None:
                    judged.append(Judged(got.rejected))
                    assert not path.exists(), "a rejected download must leave nothing behind"
                    continue
                judged.append(
                    judge_update(
                        path,
                        base=base,
                        layout=layout,
                        record=record,
                        limits=checks,
                        digest=got.digest,
                        evaluate=corpus.heldout_loss,
                    )
                )
        return judge_round(judged, checks)


def test_the_corpus_is_large_and_covers_every_reason_but_acceptance() -> None:
    assert len(corpus.CASES) >= 20
    covered = {c.reason for c in corpus.CASES}
    # NEAR_COPY needs an earlier round's accepted updates: test_worker_jobs covers it over two rounds on chain;
    # PRIVACY_BUDGET_EXCEEDED a task anchoring a budget and the member's earlier rounds: test_worker_privacy_budget.
    assert covered == set(Reason) - {Reason.ACCEPTED, Reason.NEAR_COPY, Reason.PRIVACY_BUDGET_EXCEEDED}
    assert len({c.name for c in corpus.CASES}) == len(corpus.CASES)
    assert set(corpus.SUBSET) <= {c.name for c in corpus.CASES}


def test_an_honest_round_is_accepted_and_improves_the_heldout_loss(tmp_path: Path) -> None:
    rnd = RoundUnderTest(tmp_path)
    rnd.submit_honest(6)
    verdicts = rnd.judge(limits())
    assert [v.reason for v in verdicts] == [Reason.ACCEPTED] * 6
    assert all(v.loss is not None and v.base_loss is not None and v.loss < v.base_loss for v in verdicts)


@pytest.mark.parametrize("case", corpus.CASES, ids=lambda c: c.name)
def test_each_malicious_update_is_rejected_with_its_reason(tmp_path: Path, case: corpus.Case) -> None:
    rnd = RoundUnderTest(tmp_path)
    rnd.submit_honest()
    ctx = rnd.context(corpus.HONEST_MEMBERS, peer=0)
    rnd.submit(ctx, case.build(ctx), odd_dag=case.odd_dag)
    verdicts = rnd.judge(limits())
    assert [v.reason for v in verdicts[:-1]] == [Reason.ACCEPTED] * corpus.HONEST_MEMBERS
    assert verdicts[-1].reason is case.reason, verdicts[-1].detail
    # The reveal records exactly that code with the score REJECT for that update; the honest ones keep their scores.
    from ledger.chain.scores import REJECT
    from ledger.checks.score import Score, reveal_arrays
    from worker.scoring import round_scores

    scored = round_scores(verdicts, {i: Score(5_000) for i, v in enumerate(verdicts) if v.accepted})
    values, reasons = reveal_arrays(scored)
    assert values == [5_000] * corpus.HONEST_MEMBERS + [REJECT]
    assert reasons == [0] * corpus.HONEST_MEMBERS + [int(case.reason)]


def test_the_whole_corpus_in_one_round_each_gets_its_own_reason(tmp_path: Path) -> None:
    """All 27 in one round of 31: the round-level checks still single out only the round-level attacks."""
    rnd = RoundUnderTest(tmp_path)
    rnd.submit_honest()
    for i, case in enumerate(corpus.CASES):
        ctx = rnd.context(corpus.HONEST_MEMBERS + i % 3, peer=0)
        rnd.submit(ctx, case.build(ctx), odd_dag=case.odd_dag)
    verdicts = rnd.judge(limits())
    assert [v.reason for v in verdicts[: corpus.HONEST_MEMBERS]] == [Reason.ACCEPTED] * corpus.HONEST_MEMBERS
    got = [v.reason for v in verdicts[corpus.HONEST_MEMBERS :]]
    assert got == [c.reason for c in corpus.CASES]
    assert Counter(got)[Reason.ACCEPTED] == 0


def test_without_heldout_data_a_sign_flip_is_not_rejected_by_the_norm_checks(tmp_path: Path) -> None:
    """Why the corpus gives validators an evaluator: a sign flip has an honest norm (robust rules also limit it)."""
    rnd = RoundUnderTest(tmp_path)
    rnd.submit_honest()
    ctx = rnd.context(corpus.HONEST_MEMBERS)
    rnd.submit(ctx, corpus.case("sign flipped").build(ctx))
    no_loss = CheckLimits(max_update_bytes=corpus.OVERSIZE_LIMIT, max_norm=corpus.max_norm(), loss_delta=None)
    assert rnd.judge(no_loss)[-1].reason is Reason.ACCEPTED


def test_the_same_bytes_submitted_twice_is_a_duplicate_of_the_first(tmp_path: Path) -> None:
    rnd = RoundUnderTest(tmp_path)
    rnd.submit_honest()
    digest, record = rnd.submissions[1]
    rnd.submissions.append((digest, record))  # the chain allows it; only one member can have written it
    verdicts = rnd.judge(limits())
    assert verdicts[1].reason is Reason.ACCEPTED
    assert verdicts[-1].reason is Reason.DUPLICATE
