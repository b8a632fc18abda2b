"""Fixtures for the worker's integration tests: a consortium on the session's anvil, a local block store, and real
worker processes (validators, an aggregator with its watcher) started as subprocesses and always stopped.

    net = worker_net(contributors=6)                         # the fixture: WorkerNet.create on the session's anvil
    net.start_validator(0); net.start_aggregator()          # real `meshprov worker run` processes
    net.submit(i, data)                                      # put the file in the store, submitUpdate on chain
    net.wait_finalized(round_)                               # poll the chain
    net.close()                                              # every process started is stopped (the fixture does it)

Keys: dev account 0 is the admin, 1 the aggregator, 2.. the validators, then the contributors.

Each worker runs in its own session (process group), so `kill -9` reaches the Celery main process and its pool
children together, and stopping never leaves a child behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import pytest

from lab.consortium import DeployedConsortium, RoleKeys, deploy_consortium, task_table
from ledger.chain.client import LedgerClient
from ledger.content import cid_to_digest, digest_to_cid
from ledger.content.local_store import LocalStore
from tests.support import REPO
from tests.support import malicious as corpus

if TYPE_CHECKING:
    from ledger.aggregation import AggregationSpec

# Short everything: the tests run rounds of seconds on tiny models.
FAST = [
    "--poll-interval", "0.2",
    "--job-ttl", "3",
    "--time-limit", "20",
    "--visibility-timeout", "30",
    "--lock-lease", "3",
    "--max-retries", "2",
    "--retry-backoff", "1",
    "--retry-backoff-max", "2",
    "--heartbeat", "0.5",
]  # fmt: skip


MESHPROV = [sys.executable, "-m", "ledger.cli.app"]


# --- processes ----------------------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill9(self) -> None:
        """SIGKILL the worker and its pool children at once (no warm shutdown, no acknowledgement)."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(10)
        self._signal_group(signal.SIGKILL)  # pool children that outlived their parent, if any

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, *, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# --- a fake Kubo over real HTTP (`cat` and `block/get`), serving a local block store ---------------------------


class FakeKubo:
    """`POST /api/v0/cat?arg=CID[&length=N]` and `block/get?arg=CID` (the raw block: what `KuboStore.stat` reads
    the root node with) from a local store, on 127.0.0.1:port, in a thread."""

    def __init__(self, store_root: Path, port: int) -> None:
        store = LocalStore(store_root)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                url = urlparse(self.path)
                args = parse_qs(url.query)
                if url.path not in ("/api/v0/cat", "/api/v0/block/get") or "arg" not in args:
                    self.send_error(404)
                    return
                limit = int(args.get("length", ["-1"])[0])
                try:
                    if url.path.endswith("block/get"):
                        data = store.block_path(cid_to_digest(args["arg"][0])).read_bytes()
                    else:
                        data = b"".join(bytes(c) for c in store.get(args["arg"][0]))
                except Exception as exc:
                    body = json.dumps({"Message": f"not found: {exc}", "Code": 0, "Type": "error"}).encode()
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if limit >= 0:
                    data = data[:limit]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the consortium -----------------------------------------------------------------------------------------


@dataclass
class WorkerNet:
    """A fresh ledger (its own contracts on the shared anvil, deployed through ``lab.consortium``), a task, a local
    store and worker processes."""

    anvil_url: str
    redis_url: str
    root: Path
    consortium: DeployedConsortium
    base_cid: str
    processes: list[WorkerProcess] = field(default_factory=list)

    # --- set-up -----------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        *,
        anvil_url: str,
        redis_url: str,
        root: Path,
        keys: Sequence[tuple[str, str]],
        validators: int = 2,
        contributors: int = 4,
        quorum: int = 2,
        submission_window: int = 60,
        commit_window: int = 60,
        reveal_window: int = 60,
        finalize_grace: int = 60,
        max_samples: int = 1_000_000,
        aggregation: AggregationSpec | None = None,
    ) -> WorkerNet:
        from ledger.chain.client import connect_web3
        from tests.support.chain import fake_digest

        base_cid = LocalStore(root / "blocks").put_bytes(corpus.base_file())
        consortium = deploy_consortium(
            connect_web3(anvil_url),
            RoleKeys.laid_out(keys, validators, contributors),
            task_table(
                spec=fake_digest("spec"),
                genesis=base_cid,
                quorum=quorum,
                aggregation=aggregation,
                submission_window_s=submission_window,
                commit_window_s=commit_window,
                reveal_window_s=reveal_window,
                finalize_grace_s=finalize_grace,
                max_samples=max_samples,
            ),
            record_path=root / "deployment.json",
            timeout=30,
            source="tests.support.worker",
        )
        return cls(
            anvil_url=anvil_url, redis_url=redis_url, root=root, consortium=consortium, base_cid=base_cid
        )

    @property
    def task_id(self) -> int:
        return self.consortium.task_id

    @property
    def deployment_file(self) -> Path:
        assert self.consortium.record_path is not None
        return self.consortium.record_path

    @property
    def keys(self) -> RoleKeys:
        return self.consortium.keys

    @property
    def validators(self) -> int:
        return len(self.keys.validators)

    @property
    def contributors(self) -> int:
        return len(self.keys.contributors)

    @property
    def store(self) -> LocalStore:
        return LocalStore(self.root / "blocks")

    def validator(self, i: int) -> tuple[str, str]:
        return self.keys.validators[i]

    @property
    def aggregator(self) -> tuple[str, str]:
        return self.keys.aggregator

    def contributor(self, i: int) -> tuple[str, str]:
        return self.keys.contributors[i]

    def client(self, key: str | None = None) -> LedgerClient:
        return self.consortium.client(key)

    # --- chain --------------------------------------------------------------------------------------------
    def current_round(self) -> int:
        return int(self.client().current_round(self.task_id))

    def context(
        self, i: int, round_: int, *, member: int | None = None, peer: int | None = None
    ) -> corpus.Context:
        """What the chain will record for contributor ``i``'s submission in ``round_``."""
        base = self.client().base_digest(self.task_id, round_)
        return corpus.Context(
            task=self.task_id,
            round=round_,
            base_cid=digest_to_cid(base),
            contributor=self.contributor(i)[0],
            num_samples=100 + i,
            member=i if member is None else member,
            other_contributor=self.contributor((i + 1) % self.contributors)[0],
            peer_delta=None if peer is None else corpus.honest_delta(peer),
        )

    def submit(self, i: int, data: bytes, *, round_: int, odd_dag: bool = False, publish: bool = True) -> int:
        """Submit the file's digest as contributor ``i`` (and put the file in the store unless ``publish`` is
        False: then :meth:`publish` puts it later, as a member does once submissions close); returns the index."""
        from ledger.content import cid_of_bytes

        if publish:
            cid = corpus.put_odd_dag(self.root / "blocks", data) if odd_dag else self.store.put_bytes(data)
        elif odd_dag:  # its CID from a scratch store nobody reads (publish_odd_dag puts it later)
            cid = corpus.put_odd_dag(self.root / "unpublished", data)
        else:
            cid = cid_of_bytes(data)
        result = self.client(self.contributor(i)[1]).submit_update(
            self.task_id, round_, cid_to_digest(cid), 100 + i
        )
        return int(result.value)

    def publish(self, data: bytes) -> str:
        return self.store.put_bytes(data)

    def close_submissions(self, round_: int) -> None:
        """Move the ledger clock past the round's submission window (the commit phase starts)."""
        from tests.support.chain import warp_past

        client = self.client()
        warp_past(client, client.round_view(self.task_id, round_).submission_end)

    def end_commits(self, round_: int) -> None:
        from tests.support.chain import warp_past

        client = self.client()
        warp_past(client, client.round_view(self.task_id, round_).commit_end)

    def end_reveals(self, round_: int) -> None:
        from tests.support.chain import warp_past

        client = self.client()
        warp_past(client, client.round_view(self.task_id, round_).reveal_end)

    def end_grace(self, round_: int) -> None:
        from tests.support.chain import warp_past

        client = self.client()
        warp_past(client, client.round_view(self.task_id, round_).grace_end)

    def validator_set(self, round_: int) -> Any:
        return self.client().validator_set(self.task_id, round_)

    def events(self, name: str) -> list[Any]:
        return list(self.client().events(0, names=[name]))

    def finalizations(self, round_: int) -> list[Any]:
        return [
            e
            for e in self.events("RoundFinalized")
            if e.args["taskId"] == self.task_id and e.args["round"] == round_
        ]

    def commits(self, round_: int, validator: int) -> list[Any]:
        return self._by_validator("ScoresCommitted", round_, validator)

    def reveals(self, round_: int, validator: int) -> list[Any]:
        return self._by_validator("ScoresRevealed", round_, validator)

    def revealed_scores(self, round_: int, validator: int) -> list[int] | None:
        from ledger.chain.scores import decode_scores

        found = self.reveals(round_, validator)
        return decode_scores(bytes(found[0].args["scores"])) if found else None

    def _by_validator(self, name: str, round_: int, validator: int) -> list[Any]:
        address = self.validator(validator)[0]
        return [
            e
            for e in self.events(name)
            if e.args["taskId"] == self.task_id
            and e.args["round"] == round_
            and e.args["validator"] == address
        ]

    def wait_finalized(self, round_: int, timeout: float = 60.0) -> Any:
        def done() -> Any:
            found = self.finalizations(round_)
            return found[0] if found else None

        try:
            return wait_until(done, timeout, f"round {round_} to be finalized", every=0.3)
        except AssertionError:
            raise AssertionError(self.diagnostics()) from None

    # --- worker processes -------------------------------------------------------------------------------
    def env(self, key: str, **settings: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHPROV_")}
        env.update(
            {
                "MESHPROV_DATA_DIR": str(self.root / "data"),
                "MESHPROV_CHAIN_RPC_URL": self.anvil_url,
                "MESHPROV_REDIS_URL": self.redis_url,
                "MESHPROV_PRIVATE_KEY": key,
                "MESHPROV_STORE": "local",
                "MESHPROV_STORE_DIR": str(self.root / "blocks"),
                "MESHPROV_DEPLOYMENT_FILE": str(self.deployment_file),
                "MESHPROV_TASK_ID": str(self.task_id),
                "MESHPROV_TX_TIMEOUT_S": "20",
            }
        )
        env.update({f"MESHPROV_{k.upper()}": v for k, v in settings.items()})
        return env

    def start(self, name: str, key: str, args: Sequence[str], **settings: str) -> WorkerProcess:
        log = self.root / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [*MESHPROV, *args],
                cwd=REPO,
                env=self.env(key, **settings),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = WorkerProcess(name, popen, log)
        self.processes.append(proc)
        return proc

    def start_validator(self, i: int, *extra: str, **settings: str) -> WorkerProcess:
        args = ["worker", "run", "--role", "validator", *FAST, *extra]
        return self.start(f"validator-{i}", self.validator(i)[1], args, **settings)

    def start_aggregator(self, *extra: str, watch: bool = True, **settings: str) -> WorkerProcess:
        args = ["worker", "run", "--role", "aggregator", *(["--watch"] if watch else []), *FAST, *extra]
        return self.start("aggregator", self.aggregator[1], args, **settings)

    def run_cli(
        self, *args: str, key: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*MESHPROV, *args],
            cwd=REPO,
            env=self.env(key or self.keys.admin[1]),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def status(self) -> tuple[int, dict[str, Any]]:
        done = self.run_cli("--json", "worker", "status")
        return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}

    def wait_ready(self, proc: WorkerProcess, timeout: float = 30.0) -> None:
        """Until the worker's heartbeat is in Redis (it consumes its queue from then on)."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:

            def beating() -> bool:
                if not proc.alive():
                    raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
                for key in client.scan_iter(match="meshprov:health:*:worker:*"):
                    raw = client.get(key)
                    if raw and json.loads(raw).get("pid") == proc.popen.pid:
                        return True
                return False

            wait_until(beating, timeout, f"{proc.name} to be ready")
        finally:
            client.close()

    def diagnostics(self) -> str:
        parts = [
            f"--- {p.name} ({'alive' if p.alive() else p.popen.returncode}) ---\n{p.tail()}"
            for p in self.processes
        ]
        return "\n".join(parts)

    def close(self) -> None:
        """Stop every process started (in parallel: each warm shutdown takes a moment)."""
        for proc in self.processes:
            if proc.alive():
                proc._signal_group(signal.SIGTERM)
        for proc in self.processes:
            proc.stop()


@pytest.fixture
def worker_net(
    anvil: Any, redis_url: str, tmp_path: Path, dev_keys: list[tuple[str, str]]
) -> Iterator[Callable[..., WorkerNet]]:
    """A factory of :class:`WorkerNet` on the session's anvil and Redis; every process is stopped afterwards."""
    nets: list[WorkerNet] = []

    def make(**kwargs: Any) -> WorkerNet:
        net = WorkerNet.create(
            anvil_url=anvil.url,
            redis_url=kwargs.pop("redis_url", redis_url),
            root=tmp_path,
            keys=dev_keys,
            **kwargs,
        )
        nets.append(net)
        return net

    try:
        yield make
    finally:
        for net in nets:
            net.close()
