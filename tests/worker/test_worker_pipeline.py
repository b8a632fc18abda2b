"""The worker pipeline end to end: real anvil, real Redis, real `meshprov worker run` processes.

A round of honest and malicious members (protocol v2): members submit digests, then publish once submissions
close; every validator commits, then reveals a score for every update (a hard reject with the right reason code,
a positive score for an honest update); the aggregator finalizes with the consensus outcome and a byte-exact
aggregate weighted by the consensus scores, and the workers keep running.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.aggregation import AggregationSpec, Contribution, prepare
from ledger.aggregation.output import write_aggregation
from ledger.chain.scores import REJECT, decode_scores
from ledger.chain.types import Phase
from ledger.content import digest_to_cid, fetch_to_file
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason
from ledger.updatefile import UpdateFile
from tests.support import malicious as corpus
from tests.support.worker import WorkerNet, wait_until

pytestmark = [pytest.mark.anvil, pytest.mark.redis, pytest.mark.slow]

# fixtures
CHECKS = ["--evaluator", "tests.support.malicious:heldout_loss", "--loss-delta", "0", "--max-norm"]


def expected_aggregate(
    net: WorkerNet, round_: int, accepted: list[int], consensus: list[int], tmp: Path
) -> str:
    """The aggregate's CID recomputed here with ledger's pure functions (what an auditor's replay does): FedAvg
    weighted by each accepted update's consensus score."""
    tmp.mkdir(parents=True, exist_ok=True)
    digests = {}
    for e in net.events("UpdateSubmitted"):
        if e.args["taskId"] == net.task_id and e.args["round"] == round_:
            digests[e.args["index"]] = (e.args["digest"], consensus[e.args["index"]])
    base_digest = net.client().base_digest(net.task_id, round_)
    base_path = tmp / "base"
    fetch_to_file(net.store, digest_to_cid(base_digest), base_path)
    files = []
    for i in accepted:
        path = tmp / f"u{i}"
        fetch_to_file(net.store, digest_to_cid(digests[i][0]), path)
        files.append((digests[i], UpdateFile.open(path)))
    with UpdateFile.open(base_path) as base:
        contributions = [Contribution(d, source=f, weight=w) for (d, w), f in files]
        agg = prepare(base, contributions, AggregationSpec.fedavg())
        written = write_aggregation(
            tmp / "agg", agg, task=net.task_id, round=round_, parent=digest_to_cid(base_digest)
        )
    for _, f in files:
        f.close()
    return str(written.cid)


def test_a_round_with_malicious_members_is_judged_and_finalized(
    worker_net: Callable[..., WorkerNet], tmp_path: Path
) -> None:
    cases = [corpus.case(name) for name in corpus.SUBSET]
    honest = corpus.HONEST_MEMBERS
    net = worker_net(contributors=honest + len(cases))
    bound = f"{corpus.max_norm():.6g}"
    settings = {"max_update_bytes": str(corpus.OVERSIZE_LIMIT)}
    # The two validators run the two pool kinds a deployment would pick from.
    validators = [
        net.start_validator(0, *CHECKS, bound, **settings),
        net.start_validator(1, *CHECKS, bound, "--pool", "threads", "--concurrency", "2", **settings),
    ]
    aggregator = net.start_aggregator(**settings)
    for proc in [*validators, aggregator]:
        net.wait_ready(proc)

    round_ = net.current_round()
    expected: list[Reason] = []
    files: list[tuple[bytes, bool]] = []
    for i in range(honest):
        data = corpus.honest_update(net.context(i, round_))
        assert net.submit(i, data, round_=round_, publish=False) == i
        files.append((data, False))
        expected.append(Reason.ACCEPTED)
    for j, case in enumerate(cases):
        i = honest + j
        data = case.build(net.context(i, round_, peer=0))
        assert net.submit(i, data, round_=round_, publish=False, odd_dag=case.odd_dag) == i
        files.append((data, case.odd_dag))
        expected.append(case.reason)
    # Every member submitted: submissions close; only now is the content published (R1).
    phase = lambda: net.client().round_view(net.task_id, round_).phase  # noqa: E731
    wait_until(lambda: phase() is not Phase.OPEN, 10, "submissions to close")
    for data, odd in files:
        if odd:
            corpus.put_odd_dag(net.root / "blocks", data)
        else:
            net.publish(data)

    final = net.wait_finalized(round_, timeout=120)
    accepted = [i for i, r in enumerate(expected) if r is Reason.ACCEPTED]
    assert final.args["acceptedBitmap"] == sum(1 << i for i in accepted)
    for v in range(2):
        (reveal,) = net.reveals(round_, v)  # one reveal per validator per round, a score for every update
        scores = decode_scores(bytes(reveal.args["scores"]))
        got = [Reason(r) for r in reveal.args["reasons"]]
        assert got == expected, f"validator {v}: {[r.slug for r in got]}"
        assert all(scores[i] > 0 for i in accepted), scores
        assert all(scores[i] == REJECT for i in range(len(expected)) if i not in accepted), scores
        assert len(net.commits(round_, v)) == 1
    (settled,) = net.client().finalizations(net.task_id, round_)
    assert digest_to_cid(final.args["aggregateDigest"]) == expected_aggregate(
        net, round_, accepted, list(settled.consensus), tmp_path / "replay"
    )
    assert net.store.has(digest_to_cid(final.args["aggregateDigest"]))
    # An auditor replaying the round from the chain's logs and the store gets the aggregator's CID.
    replay = net.run_cli("--json", "audit", "replay", str(net.task_id), str(round_), "--trustless")
    assert replay.returncode == ExitCode.OK, replay.stdout + replay.stderr

    # Every worker is still up, beating, and reports no fault.
    assert all(p.alive() for p in [*validators, aggregator]), net.diagnostics()
    code, report = net.status()
    assert code == ExitCode.OK, report
    assert report["faults"] == []
    assert {w["worker"].split(":")[0] for w in report["workers"]} >= {"validator", "aggregator", "watcher"}
    assert report["metrics"]["rounds_finalized_total"] == 1
    assert report["metrics"]["score_sheets_total"] == 2
    assert report["metrics"]["reveals_total"] == 2
    wait_until(lambda: net.current_round() == round_ + 1, 5, "the next round to open")
