"""Worker parts that need no chain: message validation, configuration invariants, Redis state, fetch triage,
the Celery configuration and `meshprov worker check`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.content import (
    CidMismatch,
    ContentNotFound,
    ContentTooLarge,
    CorruptBlock,
    MalformedDag,
    StoreUnavailable,
    cid_to_digest,
)
from ledger.content.local_store import LocalStore
from ledger.errors import ConfigError
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason
from tests.support import REPO
from tests.support import malicious as corpus
from worker.config import WorkerConfig, parse_failpoints
from worker.errors import InvalidJob, StoreFault
from worker.fetch import ensure_base, fetch
from worker.tasks import validate_job, validator_queue

# --- broker messages are untrusted ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task_id", "round_"),
    [(0, 1), (1, 0), (-1, 1), (True, 1), (1, False), ("1", 1), (1, 1.0), (2**256, 1), (1, 2**32), (None, 1)],
)
def test_invalid_job_arguments_are_refused(task_id: object, round_: object) -> None:
    with pytest.raises(InvalidJob) as err:
        validate_job(task_id, round_)
    assert err.value.field in ("task_id", "round")


def test_valid_job_arguments_pass_through() -> None:
    assert validate_job(1, 1) == (1, 1)
    assert validate_job(2**256 - 1, 2**32 - 1) == (2**256 - 1, 2**32 - 1)


def test_validator_queues_are_per_address_and_case_insensitive() -> None:
    assert validator_queue("0xAbC0000000000000000000000000000000000001") == (
        "validator.0xabc0000000000000000000000000000000000001"
    )


# --- configuration invariants -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"time_limit_s": 10, "soft_time_limit_s": 10},
        {"visibility_timeout_s": 600},  # not longer than the default hard limit
        {"lock_lease_s": 1800},  # not shorter than the visibility timeout
        {"job_ttl_s": 1, "poll_interval_s": 2.0},
        {"retry_backoff_s": 0},
        {"failpoints": {"nowhere": 1.0}},
        {"failpoints": {"aggregate.stored": -1.0}},
    ],
)
def test_worker_config_refuses_unsafe_relations(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        WorkerConfig(**changes)


def test_default_worker_config_keeps_the_reliability_relations() -> None:
    cfg = WorkerConfig()
    assert cfg.soft_time_limit_s < cfg.time_limit_s < cfg.visibility_timeout_s
    assert cfg.lock_lease_s < cfg.visibility_timeout_s


def test_failpoints_parse() -> None:
    assert parse_failpoints(["aggregate.stored=2.5"]) == {"aggregate.stored": 2.5}
    for bad in (["aggregate.stored"], ["aggregate.stored=soon"]):
        with pytest.raises(ConfigError):
            parse_failpoints(bad)


def test_celery_configuration_is_json_only_late_ack_and_redelivers_after_the_time_limit() -> None:
    from worker.celery_app import make_app

    cfg = WorkerConfig(time_limit_s=20, soft_time_limit_s=15, visibility_timeout_s=40, lock_lease_s=10)
    app = make_app("redis://127.0.0.1:1/0", cfg, with_tasks=False)
    conf = app.conf
    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 40 > conf.task_time_limit == 20
    assert conf.task_soft_time_limit == 15


# --- fetch: the member's fault or ours --------------------------------------------------------------------------


class FailingStore:
    """A store whose `get` raises the given error."""

    name = "fake"

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def get(self, cid: str, *, max_bytes: int | None = None) -> Iterator[memoryview]:
        raise self.exc


CID = "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR"


@pytest.mark.parametrize(
    "exc",
    [
        StoreUnavailable("http://127.0.0.1:5001", "connection refused"),
        ContentNotFound(CID, "fake"),
        CorruptBlock(CID, b"\x00" * 32, where="disk"),
        CidMismatch(CID, "QmOther", context="kubo cat"),
        OSError(28, "No space left on device"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_store_failures_are_faults_never_verdicts(tmp_path: Path, exc: Exception) -> None:
    with pytest.raises(StoreFault):
        fetch(FailingStore(exc), cid_to_digest(CID), tmp_path / "u", max_bytes=1000)  # type: ignore[arg-type]
    assert not (tmp_path / "u").exists()


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ContentTooLarge(CID, 1000, 5000), Reason.TOO_LARGE),
        (MalformedDag(CID, "raw leaves"), Reason.CID_MISMATCH),
    ],
)
def test_content_the_member_published_badly_is_a_verdict(
    tmp_path: Path, exc: Exception, reason: Reason
) -> None:
    verdict = fetch(FailingStore(exc), cid_to_digest(CID), tmp_path / "u", max_bytes=1000).rejected  # type: ignore[arg-type]
    assert verdict is not None
    assert verdict.reason is reason


def test_fetch_stops_at_the_size_bound_and_leaves_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blocks")
    cid = store.put_bytes(b"x" * 600_000)  # three chunks: the bound trips before the last one is read
    verdict = fetch(store, cid_to_digest(cid), tmp_path / "u", max_bytes=300_000).rejected
    assert verdict is not None
    assert verdict.reason is Reason.TOO_LARGE
    assert list(tmp_path.glob("*u*")) == []
    got = fetch(store, cid_to_digest(cid), tmp_path / "u", max_bytes=600_000)
    assert got.rejected is None
    assert got.digest == cid_to_digest(cid)  # proven by the walk: the Kubo CID of the bytes
    assert (tmp_path / "u").stat().st_size == 600_000


def test_a_dag_that_is_not_kubos_default_layout_is_the_members_cid_mismatch(tmp_path: Path) -> None:
    data = corpus.base_file()
    odd = corpus.put_odd_dag(
        tmp_path / "blocks", data
    )  # a valid DAG of the bytes, but not Kubo's default layout
    got = fetch(LocalStore(tmp_path / "blocks"), cid_to_digest(odd), tmp_path / "u", max_bytes=1 << 20)
    assert got.rejected is not None
    assert got.rejected.reason is Reason.CID_MISMATCH
    assert "default importer" in got.rejected.detail
    assert list(tmp_path.glob("*u*")) == []


def test_a_base_the_store_cannot_give_is_a_fault(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blocks")
    with pytest.raises(StoreFault):
        ensure_base(store, cid_to_digest(CID), tmp_path / "cache", max_bytes=1000)
    too_big = store.put_bytes(b"y" * 5000)
    with pytest.raises(StoreFault):
        ensure_base(store, cid_to_digest(too_big), tmp_path / "cache", max_bytes=1000)
    ok = store.put_bytes(corpus.base_file())
    path = ensure_base(store, cid_to_digest(ok), tmp_path / "cache", max_bytes=1 << 20)
    assert path.read_bytes() == corpus.base_file()


# --- Redis state --------------------------------------------------------------------------------------------------


@pytest.mark.redis
def test_job_claims_dedupe_until_their_ttl(redis_url: str) -> None:
    from worker.state import WorkerState, job_key

    state = WorkerState.from_url(redis_url, "watcher")
    key = job_key("verify", "0xABC", 1, 2)
    assert key == "meshprov:job:verify:0xabc:1:2"
    assert state.claim_job(key, 1)
    assert not state.claim_job(key, 1)
    time.sleep(1.1)
    assert state.claim_job(key, 1)
    state.release_job(key)
    assert state.claim_job(key, 1)


@pytest.mark.redis
def test_round_lock_is_exclusive_and_its_lease_expires(redis_url: str) -> None:
    from worker.state import WorkerState

    a = WorkerState.from_url(redis_url, "aggregator:a")
    b = WorkerState.from_url(redis_url, "aggregator:b")
    with a.round_lock("aggregate", "-", 1, 1, lease_s=1) as held:
        assert held is not None
        with b.round_lock("aggregate", "-", 1, 1, lease_s=1) as other:
            assert other is None
        time.sleep(1.2)  # a holder that died (or stalled) loses the lock after its lease
        with b.round_lock("aggregate", "-", 1, 1, lease_s=1) as other:
            assert other is not None
    # a's release after its lease ran out must not raise, nor free b's lock (already released here)
    with a.round_lock("aggregate", "-", 1, 1, lease_s=1) as again:
        assert again is not None


@pytest.mark.redis
def test_faults_are_recorded_counted_listed_and_cleared(redis_url: str) -> None:
    from worker.state import WorkerState

    state = WorkerState.from_url(redis_url, "validator:0xabc")
    state.record_fault("store", "kubo down", attempt=1, gave_up=False)
    state.record_fault("store", "kubo still down", attempt=2, gave_up=True)
    (fault,) = state.faults()
    assert fault["kind"] == "store"
    assert fault["count"] == 2
    assert fault["gave_up"] is True
    assert fault["detail"] == "kubo still down"
    assert state.metrics()["faults_store_total"] == 2
    assert state.clear_fault("store")
    assert state.faults() == []


@pytest.mark.redis
def test_heartbeats_and_progress_are_listed(redis_url: str) -> None:
    from worker.state import WorkerState

    state = WorkerState.from_url(redis_url, "aggregator:0xabc")
    state.heartbeat(5, "worker", queue="aggregator")
    state.set_progress("aggregate", 1, 4, "fetched", inputs=3)
    (beat,) = state.workers()
    assert beat["queue"] == "aggregator"
    assert beat["component"] == "worker"
    assert state.progress("aggregate", 1, 4)["stage"] == "fetched"  # type: ignore[index]
    (job,) = state.all_progress()
    assert (job["job"], job["task"], job["round"], job["inputs"]) == ("aggregate", 1, 4, 3)


# --- meshprov worker check ----------------------------------------------------------------------------------------


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    from ledger.cli.app import main

    code = main(["worker", "check", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def _files(tmp_path: Path, case: str | None) -> tuple[Path, Path, corpus.Context]:
    from ledger.content import cid_of_bytes

    base = tmp_path / "base.safetensors"
    base.write_bytes(corpus.base_file())
    ctx = corpus.Context(
        task=1,
        round=2,
        base_cid=cid_of_bytes(corpus.base_file()),
        contributor="0x" + "ab" * 20,
        num_samples=50,
        member=3,
        other_contributor="0x" + "cd" * 20,
        peer_delta=corpus.honest_delta(0),
    )
    update = tmp_path / "update.safetensors"
    update.write_bytes(corpus.honest_update(ctx) if case is None else corpus.case(case).build(ctx))
    return base, update, ctx


def test_check_accepts_an_honest_update(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, update, ctx = _files(tmp_path, None)
    code, out = _check(
        capsys, str(update), "--base", str(base), "--round", "2", "--contributor", ctx.contributor
    )
    assert code == ExitCode.OK
    assert out["accepted"] is True
    assert out["reason"] == 0
    assert out["norm"] > 0


@pytest.mark.parametrize(
    "case",
    [
        "nan",
        "header bomb",
        "wrong dtype",
        "metadata names another round",
        "scaled x30 (out of proportion to the base)",
    ],
)
def test_check_rejects_with_the_reason_code_and_exit_8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    base, update, _ctx = _files(tmp_path, case)
    code, out = _check(capsys, str(update), "--base", str(base), "--round", "2")
    expected = corpus.case(case).reason
    assert code == ExitCode.REJECTED
    assert out["accepted"] is False
    assert (out["reason"], out["reason_slug"]) == (int(expected), expected.slug)
    assert out["reason_help"] == expected.help


def test_check_alone_rejects_an_update_out_of_proportion_to_its_base(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ledger.updatefile import encode

    base, update, ctx = _files(tmp_path, None)
    code, out = _check(capsys, str(update), "--base", str(base))
    assert code == ExitCode.OK
    honest_ratio = out["norm"] / corpus.norm(corpus.base_model())
    assert 0.2 < honest_ratio < 0.5  # so x100 is far beyond the default 5x, with no peer to compare with
    scaled = tmp_path / "scaled.safetensors"
    tensors = {k: v * 100 if v.dtype.kind == "f" else v for k, v in ctx.honest().items()}
    scaled.write_bytes(encode(tensors, ctx.meta()))
    code, out = _check(capsys, str(scaled), "--base", str(base))
    assert code == ExitCode.REJECTED
    assert (out["reason"], out["reason_slug"]) == (20, "scale-out-of-proportion")
    assert out["reason_help"] == Reason.SCALE_OUT_OF_PROPORTION.help
    assert "the base's" in out["detail"]
    code, out = _check(capsys, str(scaled), "--base", str(base), "--max-scale-ratio", "50")
    assert code == ExitCode.OK
    code, out = _check(capsys, str(scaled), "--base", str(base), "--max-scale-ratio", "0")  # off
    assert code == ExitCode.OK


def test_check_with_peers_runs_the_round_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, update, ctx = _files(tmp_path, "scaled x10")
    peers = []
    for m in range(corpus.HONEST_MEMBERS):
        peer = tmp_path / f"peer{m}.safetensors"
        peer_ctx = corpus.Context(**{**ctx.__dict__, "member": m, "contributor": f"0x{m + 1:040x}"})
        peer.write_bytes(corpus.honest_update(peer_ctx))
        peers += ["--peer", str(peer)]
    code, out = _check(capsys, str(update), "--base", str(base))
    assert code == ExitCode.OK  # alone, a x10 update is within every absolute bound
    code, out = _check(capsys, str(update), "--base", str(base), *peers)
    assert code == ExitCode.REJECTED
    assert out["reason"] == Reason.NORM_OUTLIER


def test_check_names_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ledger.cli.app import main

    code = main(["worker", "check", str(tmp_path / "nope"), "--base", str(tmp_path / "base")])
    assert code == ExitCode.NOT_FOUND
    assert "no such file" in capsys.readouterr().err


def test_the_worker_docs_list_every_reason_code_with_its_slug_and_help() -> None:
    text = (REPO / "docs" / "worker.md").read_text()
    for reason in Reason:
        assert f"| {int(reason)} | `{reason.slug}` | {reason.help} |" in text, reason


# --- judging an update from the store's verified stream (one pass) ----------------------------------------------


def _corpus_round(tmp_path: Path) -> tuple[LocalStore, Any, list[tuple[bytes, Any]]]:
    from tests.worker.test_worker_corpus import RoundUnderTest

    rnd = RoundUnderTest(tmp_path / "round")
    rnd.submit_honest()
    for case in corpus.CASES:
        if not case.odd_dag and case.reason not in (Reason.TOO_LARGE,):
            ctx = rnd.context(corpus.HONEST_MEMBERS, peer=0)
            rnd.submit(ctx, case.build(ctx))
    return rnd.store, rnd, rnd.submissions


def test_the_stream_judges_every_corpus_update_as_the_file_checks_do(tmp_path: Path) -> None:
    from ledger.aggregation.source import describe_source
    from ledger.checks import judge_update
    from ledger.checks.update_checks import StreamChecks
    from ledger.updatefile import UpdateFile
    from tests.worker.test_worker_corpus import limits
    from worker.fetch import fetch_checked

    store, rnd, submissions = _corpus_round(tmp_path)
    checks_limits = limits()
    with UpdateFile.open(rnd.base_path) as base:
        layout = describe_source(base)
        for i, (digest, record) in enumerate(submissions):
            path = tmp_path / f"{i}.safetensors"
            got = fetch(store, digest, path, max_bytes=checks_limits.max_update_bytes)
            want = (
                got.rejected
                or judge_update(
                    path, base=base, layout=layout, record=record, limits=checks_limits, digest=got.digest
                ).verdict
            )

            def checks(size: int, record: Any = record) -> StreamChecks:
                return StreamChecks(size, base=base, record=record, limits=checks_limits, base_layout=layout)

            streamed = fetch_checked(store, digest, max_bytes=checks_limits.max_update_bytes, checks=checks)
            assert (streamed.rejected or streamed.verdict) == want, i
    assert len(submissions) > 20


def test_the_stream_hashes_each_block_once_and_writes_nothing_but_the_vector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-pass property, counted: every leaf block of the update (1.2 MB, 5 leaves) is read and hashed exactly
    once (by the store, as it is read), the UnixFS importer never re-hashes the stream, no file is scanned, and
    the only file written is the vector, which holds the update's values."""
    import hashlib

    import numpy as np

    import ledger.checks.update_checks as update_checks
    import ledger.content.local_store as local_store
    from ledger.aggregation.source import describe_source
    from ledger.checks import flatten, kubo_digest
    from ledger.checks.update_checks import ChainRecord, StreamChecks
    from ledger.updatefile import GenesisMeta, UpdateFile, UpdateMeta, write_aggregate, write_update
    from worker.fetch import fetch_checked
    from worker.vectorfiles import VectorWriter

    rng = np.random.default_rng(0)
    base_state = {"w": rng.standard_normal((300, 1000)).astype(np.float32), "b": np.zeros(7, np.float16)}
    base_path = tmp_path / "base.safetensors"
    base_cid = write_aggregate(base_path, base_state, GenesisMeta(model="big")).cid
    delta = {k: (0.01 * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in base_state.items()}
    path = tmp_path / "u.safetensors"
    member = "0x" + "ab" * 20
    write_update(path, delta, UpdateMeta(task=1, round=1, base=base_cid, contributor=member, num_samples=3))
    store = LocalStore(tmp_path / "blocks")
    digest = cid_to_digest(store.put_file(path))
    record = ChainRecord(digest=digest, task=1, round=1, base=kubo_digest(base_path), contributor=member)
    reads: list[bytes] = []
    hashed: list[int] = []
    real_read, real_sha = local_store.LocalStore._read_block, hashlib.sha256

    def counting_read(self: Any, d: bytes, root: bytes) -> bytes:
        reads.append(d)
        return real_read(self, d, root)

    def counting_sha(data: Any = b"") -> Any:
        hashed.append(len(data))
        return real_sha(data)

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a second pass over the update")

    monkeypatch.setattr(local_store.LocalStore, "_read_block", counting_read)
    monkeypatch.setattr(local_store.hashlib, "sha256", counting_sha)
    monkeypatch.setattr(update_checks, "scan_file", never)
    monkeypatch.setattr("ledger.content.UnixfsHasher", never)
    out = tmp_path / "out"
    out.mkdir()
    with UpdateFile.open(base_path) as base:
        layout = describe_source(base)
        writer = VectorWriter(out / "v.npy", layout)
        got = fetch_checked(
            store,
            digest,
            max_bytes=1 << 30,
            checks=lambda size: StreamChecks(size, base=base, record=record, base_layout=layout, sink=writer),
        )
        assert got.verdict is not None
        assert got.verdict.accepted, got.verdict
        vector = writer.finish()
    leaves = [d for d in reads if d != digest]
    assert len(leaves) == 5 == len(set(leaves))  # each leaf block read once
    assert reads.count(digest) == 3  # the root (links only): stat, and get's existence check and walk
    assert sum(hashed) == path.stat().st_size + 5 * 14 + 3 * len(real_read(store, digest, digest))
    assert sorted(p.name for p in out.iterdir()) == ["v.npy"]
    with UpdateFile.open(path) as update:
        assert np.array_equal(vector, flatten(update, layout))


# --- the reference training runs beside the judging process -------------------------------------------------


def _vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_work_in_the_child_does_not_raise_the_judging_processs_peak_memory(tmp_path: Path) -> None:
    """What the reference training allocates (a model, its gradients, AdamW's moments: here 300 MB touched)
    stays in the child; only the file it leaves comes back."""
    import numpy as np

    from worker.verify import _in_child

    out = tmp_path / "ref.npy"

    def work() -> None:
        big = np.ones(300 * 1024 * 1024 // 8)
        np.save(out, big[:10] * 2)

    before = _vm_hwm_kib()
    _in_child(work, what="the reference training")
    assert np.load(out).tolist() == [2.0] * 10
    assert _vm_hwm_kib() - before < 50 * 1024


def test_a_failing_child_is_the_validators_scoring_error(tmp_path: Path) -> None:
    from ledger.checks.score import ScoringError
    from worker.verify import _in_child

    def diverges() -> None:
        raise ScoringError("the reference update holds NaN or Inf")

    with pytest.raises(
        ScoringError, match="failed in its child process: ScoringError: the reference update holds"
    ):
        _in_child(diverges, what="the reference training")

    def crashes() -> None:
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(ScoringError, match="CUDA out of memory"):
        _in_child(crashes, what="the reference training")


def test_a_store_that_cannot_stat_before_fetching_is_judged_through_a_temporary_file(tmp_path: Path) -> None:
    """A GatewayStore knows a CID's size only once it fetched it (its stat asks the local store): the checks
    then run over a verified temporary download, with the same verdict, and nothing is left behind."""
    from ledger.aggregation.source import describe_source
    from ledger.checks.update_checks import StreamChecks
    from ledger.updatefile import UpdateFile
    from worker.errors import ContentMissing
    from worker.fetch import fetch_checked

    store, rnd, submissions = _corpus_round(tmp_path)

    class NoStat:
        name = "gateway"

        def __getattr__(self, attr: str) -> Any:
            return getattr(store, attr)

        def stat(self, cid: str) -> Any:
            raise ContentNotFound(cid, "gateway")

    with UpdateFile.open(rnd.base_path) as base:
        layout = describe_source(base)
        for digest, record in submissions[:6]:

            def checks(size: int, record: Any = record) -> StreamChecks:
                return StreamChecks(size, base=base, record=record, base_layout=layout)

            direct = fetch_checked(store, digest, max_bytes=1 << 30, checks=checks)
            via = fetch_checked(NoStat(), digest, max_bytes=1 << 30, checks=checks)  # type: ignore[arg-type]
            assert (via.rejected or via.verdict) == (direct.rejected or direct.verdict)
        with pytest.raises(ContentMissing):
            fetch_checked(NoStat(), b"\7" * 32, max_bytes=1 << 30, checks=checks)  # type: ignore[arg-type]


_FETCH_MEMORY = """
import json, sys
from pathlib import Path
from ledger.aggregation.source import describe_source
from ledger.checks.update_checks import StreamChecks
from ledger.content.local_store import LocalStore
from ledger.updatefile import UpdateFile
from worker.fetch import fetch_checked
from worker.vectorfiles import VectorWriter

def kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])

root = Path(sys.argv[1])
store = LocalStore(root / "blocks")
with UpdateFile.open(root / "base.safetensors") as base:
    layout = describe_source(base)
    writer = VectorWriter(root / "v.npy", layout)
    before = kib("VmRSS")
    got = fetch_checked(store, bytes.fromhex(sys.argv[2]), max_bytes=1 << 30,
                        checks=lambda size: StreamChecks(size, base=base, base_layout=layout, sink=writer))
    writer.finish()
print(json.dumps({"accepted": got.verdict.accepted, "grew_kib": kib("VmHWM") - before}))
"""


def test_judging_a_large_update_from_the_stream_holds_a_few_blocks_not_the_update(tmp_path: Path) -> None:
    """Peak memory of the one-pass path, in a fresh process: judging a 64 MB update and writing its vector grows
    the peak by a few blocks' worth, not by the update (a whole-file buffer would add 64 MB)."""
    import subprocess
    import sys

    import numpy as np

    from ledger.updatefile import GenesisMeta, UpdateMeta, write_aggregate, write_update

    rng = np.random.default_rng(0)
    shape = (4096, 4096)  # 16M float32 values: 64 MB
    base_cid = write_aggregate(
        tmp_path / "base.safetensors", {"w": np.zeros(shape, np.float32)}, GenesisMeta(model="m")
    ).cid
    path = tmp_path / "u.safetensors"
    delta = {"w": rng.standard_normal(shape, dtype=np.float32)}
    write_update(
        path, delta, UpdateMeta(task=1, round=1, base=base_cid, contributor="0x" + "cd" * 20, num_samples=1)
    )
    del delta
    digest = cid_to_digest(LocalStore(tmp_path / "blocks").put_file(path))
    done = subprocess.run(
        [sys.executable, "-c", _FETCH_MEMORY, str(tmp_path), digest.hex()],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["accepted"]
    assert result["grew_kib"] < 16 * 1024, result  # a quarter of the update, at most


def test_a_vectors_sketch_is_kept_beside_it_and_not_computed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A validator compares a past round's update with the next rounds' too: its copy-check sketch is computed
    once and read back after (the same bits), and short vectors get none."""
    import numpy as np

    import ledger.checks.copies as copies
    from worker.verify import sketch_file

    vector = np.random.default_rng(0).standard_normal(copies.SKETCH_MIN).astype(np.float32)
    made: list[int] = []
    real = copies.sketch

    def counting(v: Any) -> Any:
        made.append(v.size)
        return real(v)

    monkeypatch.setattr(copies, "sketch", counting)
    first = sketch_file(vector, tmp_path / "v.sketch")
    again = sketch_file(vector, tmp_path / "v.sketch")
    assert first is not None
    assert again is not None
    assert made == [vector.size]
    assert first.tobytes() == again.tobytes() == real(vector).tobytes()
    assert sketch_file(vector[:1000], tmp_path / "short.sketch") is None
    assert not (tmp_path / "short.sketch").exists()


def test_a_child_that_never_ends_is_killed_and_is_the_validators_scoring_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A hung reference child (a recipe's deadlock, a thread pool that did not survive the fork) must not hold the
    validator's job thread for ever: after CHILD_TIMEOUT_S it is killed and the round is the validator's error."""
    import os
    import time

    import worker.verify as verify
    from ledger.checks.score import ScoringError

    monkeypatch.setattr(verify, "CHILD_TIMEOUT_S", 1.0)
    pid_file = tmp_path / "child.pid"

    def hangs() -> None:
        pid_file.write_text(str(os.getpid()))
        time.sleep(600)

    started = time.monotonic()
    with pytest.raises(ScoringError, match="did not finish in its child process within 1 s"):
        verify._in_child(hangs, what="the reference training")
    assert time.monotonic() - started < 30
    with pytest.raises(ProcessLookupError):  # killed and reaped: no such process any more
        os.kill(int(pid_file.read_text()), 0)


PLUGIN_ROUNDS = """
import sys, threading
import numpy as np
import torch
from worker.verify import _in_child

out = sys.argv[1]
torch.set_num_threads(2)  # what a plug-in's evaluator may leave: torch on more than one core
weights = torch.randn(1024, 1024)


def job(round_):
    float((weights @ weights).sum())  # the evaluator, in the job's thread: its OpenMP pool
    path = f"{out}/reference-{round_}.npy"
    _in_child(lambda: np.save(path, (weights @ weights)[:2, :2].numpy()), what="reference")
    print("round", round_, np.load(path).shape, flush=True)


for round_ in (1, 2, 3):  # celery's pool runs the rounds' jobs in its own thread
    worker = threading.Thread(target=job, args=(round_,))
    worker.start()
    worker.join()
"""


def test_a_reference_child_runs_torch_after_the_parent_used_its_thread_pool(tmp_path: Path) -> None:
    """A validator with plug-ins (``--evaluator``/``--reference-trainer``, no recipe host to pin its threads): the
    job's thread ran a parallel torch op, then forked the reference's child, whose first parallel op waited for
    ever for pool threads the fork did not copy (every round's child, until CHILD_TIMEOUT_S). The child now runs
    torch on one thread."""
    from tests.support.hang import rounds_or_fail

    assert rounds_or_fail(PLUGIN_ROUNDS, str(tmp_path)) == [f"round {r} (2, 2)" for r in (1, 2, 3)]
