"""A small consortium of real processes for the robustness benchmarks (byzantine.py --e2e, lab/faults.py).

* anvil and redis-server children (``ledger.dev.services``), each restartable on its own port: anvil from its state
  file (SIGTERM writes it), Redis with or without its append-only file;
* a fresh MeshToken + MeshLedger, the members' roles and one task, deployed by ``lab.consortium`` (the real
  ``ledger.chain.deploy``) for anvil's dev accounts (0 admin, 1 aggregator, then validators, then contributors);
* a local block store that can be taken offline (its directory moved away and a plain file put in its place, so
  every read and write fails; the harness runs as root, so permissions would not stop anyone);
* real ``meshprov worker run`` validators and an aggregator (with its watcher), and a ``meshprov index follow``
  process with its SQLite index, each in its own process group so ``kill -9`` reaches its pool children;
* the members are driven in-process, as a member's node does (protocol v2, R1): ``submit`` the digest with the
  member's key while submissions are open, then ``publish`` the content once they have closed, each retrying
  while the chain or the store is down.

Every process started is stopped by :meth:`MeshNet.close` (also on errors: use it as a context manager).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.consortium import DeployedConsortium, RoleKeys
from ledger.dev.services import AnvilProcess, RedisProcess
from ledger.settings import Settings

if TYPE_CHECKING:
    from lab.experiment import ExperimentConfig
    from ledger.aggregation import AggregationSpec
    from ledger.chain.client import LedgerClient

# Short polls and leases so that a round takes seconds (as the worker tests run them).
FAST = [
    "--poll-interval", "0.3",
    "--job-ttl", "4",
    "--time-limit", "30",
    "--visibility-timeout", "60",
    "--lock-lease", "5",
    "--max-retries", "3",
    "--retry-backoff", "1",
    "--retry-backoff-max", "3",
    "--heartbeat", "1",
]  # fmt: skip


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, *, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # a service being restarted: keep polling
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class Proc:
    """A `meshprov` child process in its own session (process group)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=self.log.parent,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def _group(self, sig: int) -> None:
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def kill9(self) -> None:
        """SIGKILL the process and its pool children at once: no warm shutdown, no acknowledgement."""
        self._group(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            self._group(signal.SIGTERM)
            try:
                assert self.popen is not None
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._group(signal.SIGKILL)
        self._group(signal.SIGKILL)  # pool children that outlived their parent, if any
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(10)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Submitted:
    member: int
    index: int
    cid: str
    num_samples: int
    attempts: int


@dataclass
class MeshNet:
    root: Path
    validators: int
    contributors: int
    quorum: int
    aggregation: AggregationSpec
    budget: int
    """Token base units minted per round."""
    submission_window: int = 900
    commit_window: int = 900
    reveal_window: int = 900
    finalize_grace: int = 900
    worker_args: Sequence[str] = tuple(FAST)
    anvil: AnvilProcess | None = None
    redis: RedisProcess | None = None
    procs: dict[str, Proc] = field(default_factory=dict)
    consortium: DeployedConsortium | None = None
    genesis_cid: str = ""
    redis_generation: int = 0

    # --- set-up --------------------------------------------------------------------------------------------
    @classmethod
    def for_experiment(cls, root: Path, config: ExperimentConfig) -> MeshNet:
        """The consortium an experiment's config describes (its validators, members, quorum, rule and budget), so
        that a real run and the pure pipeline of the same config compare like for like."""
        return cls(
            root,
            validators=config.validators,
            contributors=config.num_nodes,
            quorum=config.quorum,
            aggregation=config.spec,
            budget=config.budget,
        )

    def __enter__(self) -> MeshNet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def store_dir(self) -> Path:
        return self.root / "blocks"

    @property
    def index_url(self) -> str:
        return f"sqlite:///{self.root / 'index.db'}"

    @property
    def deployment_file(self) -> Path:
        return self.root / "deployment.json"

    @property
    def anvil_url(self) -> str:
        assert self.anvil is not None
        return self.anvil.url

    @property
    def redis_url(self) -> str:
        assert self.redis is not None
        return self.redis.url

    @cached_property
    def keys(self) -> RoleKeys:
        return RoleKeys.dev(self.validators, self.contributors)

    def validator(self, i: int) -> tuple[str, str]:
        return self.keys.validators[i]

    @property
    def aggregator(self) -> tuple[str, str]:
        return self.keys.aggregator

    def contributor(self, i: int) -> tuple[str, str]:
        return self.keys.contributors[i]

    @property
    def deployed(self) -> DeployedConsortium:
        if self.consortium is None:
            raise RuntimeError("the mesh is not started: call start() first")
        return self.consortium

    @property
    def task_id(self) -> int:
        return self.deployed.task_id

    def start(self, genesis: Path) -> MeshNet:
        """Start anvil and Redis, put the genesis model and the task's specification in the store, and deploy the
        consortium (roles and task) through ``lab.consortium``."""
        from lab.consortium import deploy_consortium, task_table
        from ledger.chain.client import connect_web3
        from ledger.content.local_store import LocalStore
        from ledger.updatefile import canonical_json

        self.root.mkdir(parents=True, exist_ok=True)
        self.anvil = AnvilProcess.start(self.root)
        self.redis = RedisProcess.start(self.root)
        store = LocalStore(self.store_dir)
        self.genesis_cid = store.put_file(genesis)
        spec = {"run": "lab.meshnet", "aggregation": self.aggregation.describe()}
        spec_cid = store.put_bytes(canonical_json(spec).encode())
        task = task_table(
            spec=spec_cid,
            genesis=self.genesis_cid,
            quorum=self.quorum,
            aggregation=self.aggregation,
            submission_window_s=self.submission_window,
            commit_window_s=self.commit_window,
            reveal_window_s=self.reveal_window,
            finalize_grace_s=self.finalize_grace,
            reward_per_round=self.budget,
        )
        self.consortium = deploy_consortium(
            connect_web3(self.anvil_url),
            self.keys,
            task,
            record_path=self.deployment_file,
            timeout=30,
            source="lab.meshnet",
        )
        return self

    def client(self, key: str | None = None) -> LedgerClient:
        return self.deployed.client(key)

    # --- processes ------------------------------------------------------------------------------------------
    def env(self, key: str | None = None, **settings: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHPROV_")}
        env.update(
            {
                "MESHPROV_DATA_DIR": str(self.root / "data"),
                "MESHPROV_CHAIN_RPC_URL": self.anvil_url,
                "MESHPROV_REDIS_URL": self.redis_url,
                "MESHPROV_STORE": "local",
                "MESHPROV_STORE_DIR": str(self.store_dir),
                "MESHPROV_DEPLOYMENT_FILE": str(self.deployment_file),
                "MESHPROV_TASK_ID": str(self.task_id),
                "MESHPROV_TX_TIMEOUT_S": "20",
                "MESHPROV_INDEX_URL": self.index_url,
            }
        )
        if key:
            env["MESHPROV_PRIVATE_KEY"] = key
        env.update({f"MESHPROV_{k.upper()}": v for k, v in settings.items()})
        return env

    def _spawn(
        self, name: str, args: Sequence[str], key: str | None, extra_env: dict[str, str] | None = None
    ) -> Proc:
        env = {**self.env(key), **(extra_env or {})}
        proc = Proc(name, [sys.executable, "-m", "ledger.cli.app", *args], env, self.root / f"{name}.log")
        self.procs[name] = proc
        return proc.start()

    def start_validator(self, i: int, *extra: str) -> Proc:
        """Validator ``i`` (its held-out slice, for ``--reference-trainer node.heldout:reference``, is i of V)."""
        args = ["worker", "run", "--role", "validator", *self.worker_args, *extra]
        slice_env = {"HELDOUT_SLICE": f"{i}/{self.validators}"}
        return self._spawn(f"validator-{i}", args, self.validator(i)[1], slice_env)

    def start_aggregator(self, *extra: str) -> Proc:
        args = ["worker", "run", "--role", "aggregator", "--watch", *self.worker_args, *extra]
        return self._spawn("aggregator", args, self.aggregator[1])

    def start_follower(self) -> Proc:
        return self._spawn("follower", ["index", "follow", "--poll", "0.5"], None)

    def start_all(self, validator_args: Sequence[str] = ()) -> None:
        for i in range(self.validators):
            self.start_validator(i, *validator_args)
        self.start_aggregator()
        self.start_follower()
        self.wait_ready()

    def restart(self, name: str) -> Proc:
        proc = self.procs[name]
        proc.stop()
        # The services may have moved (MESHPROV_*); what else the process was given (its slice) stays.
        kept = {k: v for k, v in proc.env.items() if not k.startswith("MESHPROV_")}
        proc.env = {**self.env(proc.env.get("MESHPROV_PRIVATE_KEY")), **kept}
        return proc.start()

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until every worker's heartbeat is in Redis."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        workers = [p for name, p in self.procs.items() if name != "follower"]

        def beating() -> bool:
            pids = set()
            for key in client.scan_iter(match="meshprov:health:*:worker:*"):
                raw = client.get(key)
                if raw:
                    pids.add(json.loads(raw).get("pid"))
            for p in workers:
                if not p.alive():
                    raise RuntimeError(f"{p.name} exited:\n{p.tail()}")
            return all(p.popen is not None and p.popen.pid in pids for p in workers)

        try:
            wait_until(beating, timeout, "the workers' heartbeats")
        finally:
            client.close()

    def diagnostics(self) -> str:
        return "\n".join(
            f"--- {p.name} ({'alive' if p.alive() else 'exited'}) ---\n{p.tail()}"
            for p in self.procs.values()
        )

    # --- faults ---------------------------------------------------------------------------------------------
    def restart_anvil(self, *, kill: bool = False) -> float:
        """Stop anvil (SIGTERM: it writes its state file; ``kill``: SIGKILL, losing up to a second of blocks)
        and start it again from the state file on the same port. Returns the seconds it was down."""
        assert self.anvil is not None
        started = time.monotonic()
        if kill:
            self.anvil.kill()
        else:
            self.anvil.stop()
        self.anvil = _restart_on_port(AnvilProcess, self.anvil.port, self.root)
        self.deployed.resync()
        return time.monotonic() - started

    def restart_redis(self, *, keep_data: bool = True, down_s: float = 1.0) -> None:
        """SIGKILL redis-server and start it again on the same port, with its append-only file or empty."""
        assert self.redis is not None
        self.redis.kill()
        time.sleep(down_s)
        if not keep_data:
            self.redis_generation += 1
            shutil.rmtree(self.root / "redis", ignore_errors=True)
        self.redis = _restart_on_port(RedisProcess, self.redis.port, self.root)

    @contextlib.contextmanager
    def store_offline(self) -> Iterator[None]:
        """Every read and write of the block store fails until the block exits."""
        away = self.root / "blocks.offline"
        self.store_dir.rename(away)
        self.store_dir.write_text("the store is offline\n")
        try:
            yield
        finally:
            self.store_dir.unlink()
            away.rename(self.store_dir)

    # --- members --------------------------------------------------------------------------------------------
    def submit(
        self,
        member: int,
        path: Path,
        num_samples: int,
        round_: int,
        *,
        timeout: float = 300,
        publish: bool = True,
    ) -> Submitted:
        """Submit the update's digest with the member's key (and put it in the store first unless ``publish`` is
        False: then :meth:`publish` it once submissions close); retries while the store or the chain is down,
        and finds its index when an earlier attempt went through after all."""
        from ledger.chain.errors import AlreadySubmitted
        from ledger.chain.revert import ContractRevert
        from ledger.content import cid_of_file, cid_to_digest
        from ledger.content.local_store import LocalStore
        from ledger.errors import MeshprovError

        address, key = self.contributor(member)
        deadline = time.monotonic() + timeout
        attempts = 0
        while True:
            attempts += 1
            try:
                cid = LocalStore(self.store_dir).put_file(path) if publish else cid_of_file(path)
                client = self.client(key)
                try:
                    index = int(
                        client.submit_update(self.task_id, round_, cid_to_digest(cid), num_samples).value
                    )
                except AlreadySubmitted:
                    index = int(client.submission_of(self.task_id, round_, address).index)
                return Submitted(member, index, cid, num_samples, attempts)
            except (OSError, MeshprovError) as exc:
                if isinstance(exc, ContractRevert) or time.monotonic() > deadline:
                    raise
                self.deployed.resync()
                time.sleep(1.0)

    def publish(self, path: Path, *, timeout: float = 300) -> str:
        """Put a submitted update in the store (after the close), retrying while the store is down."""
        from ledger.content.local_store import LocalStore
        from ledger.errors import MeshprovError

        deadline = time.monotonic() + timeout
        while True:
            try:
                return LocalStore(self.store_dir).put_file(path)
            except (OSError, MeshprovError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def wait_submissions_closed(self, round_: int, timeout: float = 300.0) -> None:
        from ledger.chain.types import Phase

        def closed() -> bool:
            try:
                return self.client().round_view(self.task_id, round_).phase is not Phase.OPEN
            except Exception:  # the chain restarting: ask again
                return False

        wait_until(closed, timeout, f"round {round_}'s submissions to close")

    # --- reading the chain ----------------------------------------------------------------------------------
    def events(self, name: str, round_: int | None = None) -> list[Any]:
        def read() -> list[Any]:
            return [
                e
                for e in self.client().events(self.deployed.deploy_block, names=[name])
                if e.args.get("taskId") == self.task_id and (round_ is None or e.args.get("round") == round_)
            ]

        return list(wait_until(lambda: (read(),), 60, f"{name} events")[0])

    def wait_finalized(self, round_: int, timeout: float = 300.0) -> Any:
        def done() -> Any:
            found = self.events("RoundFinalized", round_)
            return found[0] if found else None

        try:
            return wait_until(done, timeout, f"round {round_} to be finalized", every=0.5)
        except TimeoutError:
            raise TimeoutError(
                f"round {round_} not finalized in {timeout:.0f} s\n{self.diagnostics()}"
            ) from None

    def fetch(self, cid: str, dest: Path) -> Path:
        from ledger.content.local_store import LocalStore

        with dest.open("wb") as out:
            for chunk in LocalStore(self.store_dir).get(cid):
                out.write(chunk)
        return dest

    # --- tear-down ------------------------------------------------------------------------------------------
    def close(self) -> None:
        for proc in self.procs.values():
            if proc.alive():
                proc._group(signal.SIGTERM)
        for proc in self.procs.values():
            proc.stop()
        if self.store_dir.is_file():  # interrupted during an outage
            self.store_dir.unlink()
            (self.root / "blocks.offline").rename(self.store_dir)
        for service in (self.redis, self.anvil):
            if service is not None:
                service.stop()


def _restart_on_port(kind: type[Any], port: int, data_dir: Path) -> Any:
    """Start ``kind`` again on ``port`` in ``data_dir``: its socket may linger in TIME_WAIT, which the services
    tolerate but ``ChildService.start``'s free-port check does not."""
    settings = Settings(data_dir=data_dir)
    service_dir = (data_dir / kind.name).resolve()
    service_dir.mkdir(parents=True, exist_ok=True)
    log = service_dir / f"{kind.name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            kind.command(kind.binary(settings), port, service_dir, settings),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=service_dir,
        )
    service = kind(popen, port, kind.url_for(port), log)
    service.wait_ready(30)
    return service
