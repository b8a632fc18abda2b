"""`meshprov lab hosts`: a consortium of hosts that share a chain and content, not a disk (issue 15 item 1).

Every host is a network namespace (:mod:`lab.netns`) with its own address, data directory and block store:

==============  ===============================================================================================
host            runs
==============  ===============================================================================================
``chain``       anvil on its own address (members submit to it directly; nobody else has a chain)
``operator``    redis-server (password) for the operator's aggregators, the admin's driver
                (:mod:`lab.host_driver`: genesis and spec in its store, deploy, the replica of every update and
                aggregate, follow the rounds, compare the index with a trustless rebuild), its own PostgreSQL
                (:mod:`lab.host_postgres`; SQLite where no server binaries are installed, ``--index``), ``meshprov
                index follow`` into it, ``meshprov dashboard serve`` over it on the operator's address, its
                gateway
``agg-K``       ``meshprov worker run --role aggregator --watch`` on the operator's Redis (same organisation),
                its own key (every aggregator address has the role), store and gateway
``val-K``       its organisation's own redis-server (own password), ``meshprov worker watch`` and
                ``meshprov worker run --role validator --recipe …`` on it, store and gateway
``member-K``    ``meshprov node run`` (submits to the chain host's RPC), store and gateway
==============  ===============================================================================================

Content moves between hosts only over the trustless gateway: every host but the chain runs
``meshprov store serve`` on its own address, and lists every other host's gateway in ``MESHPROV_GATEWAYS``.

No host reads another's disk: each host's processes run in a private mount namespace in which every other host's
directory, and the harness's own (keys of all, logs), is covered by an empty read-only tmpfs (:func:`host_argv`).

Counting: each host process records the blocks its gateway client verified (:mod:`lab.host_exec`); each gateway
logs the blocks it sent (``--log-level debug``). ``blocks`` in the summary holds both counts and the blocks sent
that no client recorded as verified (0 when every fetched block was verified).

After the last round a member host reads the dashboard's JSON API over the lab network (``dashboard`` in the
summary: its rounds against the chain's).

Faults (``--fault``, :data:`FAULTS`) are injected in ``fault_round`` on chain facts (:meth:`HostsLab._inject`).

Cleanup: processes are stopped (their process groups), then every namespace is deleted (which deletes the veth
pairs and the bridge), also on Ctrl-C, SIGTERM and any failure; a run that was killed outright is cleaned up by
the next run in the same directory, from the records in ``<dir>/ctl``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.host_postgres import OperatorPostgres
from lab.netns import REGISTRY, Network, create_network, existing_namespaces, remove_recorded
from lab.procs import Child, Children, stop_recorded
from ledger.errors import ConfigError, MeshprovError

MARKER = ".meshprov-lab-hosts"
HOLD, RELEASE = "hold", "release"  # the driver's chain pause before the fault round (lab.host_driver)
SUMMARY = "hosts-summary.json"
GATEWAY_PORT = 8080
ANVIL_PORT = 8545
REDIS_PORT = 6379
DASHBOARD_PORT = 8787
INDEX_BACKENDS = ("auto", "postgres", "sqlite")
VERIFIED_RECORD = "gateway-verified.log"
# What each kind of process imports before it waits for the deployment (lab.host_exec --warm).
_WARM_WORKER = ("celery", "worker.cli")
_WARM_TRAIN = ("torch", "sklearn.datasets", "celery", "worker.cli", "node.cli")
# Run in a member host by _probe_isolation: each Redis asked without a password, each other host's directory listed.
_PROBE = """
import json, os, sys
import redis
targets = json.loads(sys.argv[1])
out = {"redis": {}, "dirs": {}}
for name, where in targets["redis"].items():
    host, port = where.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port), socket_timeout=5, socket_connect_timeout=5)
    try:
        client.set("meshprov-lab-probe", "written by another organisation")
        out["redis"][name] = "OPEN: a write was accepted"
    except redis.AuthenticationError as exc:
        out["redis"][name] = f"refused: {exc}"
    except redis.ResponseError as exc:
        out["redis"][name] = f"refused: {exc}" if "NOAUTH" in str(exc) or "auth" in str(exc).lower() else f"OPEN? {exc}"
    except (redis.ConnectionError, OSError) as exc:
        out["redis"][name] = f"unreachable: {exc}"
    finally:
        client.close()
import http.client
out["admin"] = {}
for name, where in targets["gateways"].items():
    # A gateway is read-only: an IPFS RPC call (Kubo's admin API: gc, unpin, shutdown) must be refused.
    host, port = where.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("POST", "/api/v0/repo/gc")
        status = conn.getresponse().status
        out["admin"][name] = f"refused: HTTP {status}" if status >= 400 else f"OPEN: HTTP {status}"
    except OSError as exc:
        out["admin"][name] = f"unreachable: {exc}"
    finally:
        conn.close()
out["postgres"] = {}
for name, where in targets["postgres"].items():
    # The operator's index database: reachable on the lab network, useless without the role's password.
    import psycopg
    host, port = where.rsplit(":", 1)
    answers = []
    for password in ("", "a-guess"):
        try:
            with psycopg.connect(host=host, port=int(port), user="meshprov", dbname="meshprov_index",
                                 password=password, connect_timeout=5):
                answers.append("OPEN: connected without the role's password")
        except psycopg.OperationalError as exc:
            text = " ".join(str(exc).split())
            answers.append(f"refused: {text}" if "password" in text else f"unreachable: {text}")
    out["postgres"][name] = "; ".join(answers)
for name, path in targets["dirs"].items():
    try:
        out["dirs"][name] = sorted(os.listdir(path))
    except OSError as exc:
        out["dirs"][name] = [f"error: {exc}"]
print(json.dumps(out))
"""
# Run in a member host by _read_dashboard: the operator's dashboard API over the lab network.
_DASHBOARD_PROBE = """
import json, sys, urllib.request
base, task = sys.argv[1], sys.argv[2]
def get(path):
    with urllib.request.urlopen(base + path, timeout=20) as reply:
        return json.loads(reply.read(4_000_000))
print(json.dumps({"health": get("/healthz"), "rounds": get(f"/api/tasks/{task}/rounds"),
                  "contributors": get(f"/api/contributors?task={task}&limit=1000")}))
"""
_PASSED = ("MESHPROV_ANVIL_BIN", "MESHPROV_REDIS_SERVER_BIN")


FAULTS = {
    "validator-link": "the last validator host's link down for LINK_DOWN_S once submissions closed",
    "aggregator-kill": "every process of the aggregator host that finalized the round before killed (SIGKILL) and "
    "its link down once submissions closed",
    "member-store": "member-1's gateway killed as soon as the operator's replica holds every update of the round "
    "(before the validators and the aggregator are done with them)",
}
LINK_DOWN_S = 10.0


class HostsFailed(MeshprovError):
    def __init__(self, what: str, detail: str = "", *, log: Path | None = None) -> None:
        super().__init__(
            f"the multi-host lab failed: {what}\n{detail}".rstrip(), hint=f"see {log}" if log else None
        )


@dataclass(frozen=True)
class HostsConfig:
    members: int = 3
    validators: int = 2
    aggregators: int = 2
    rounds: int = 2
    quorum: int | None = None
    """Default: a majority of the validators."""
    recipe: str = "digits"
    seed: int = 0
    alpha: float = 0.5
    submission_window_s: int = 60
    commit_window_s: int = 60
    reveal_window_s: int = 60
    finalize_grace_s: int = 60
    timeout_s: float = 900.0
    data_dir: Path | None = None
    """Default: a fresh directory under the system's temporary directory."""
    faults: tuple[str, ...] = ()
    """Faults injected in ``fault_round`` (:data:`FAULTS`)."""
    fault_round: int = 2
    index: str = "auto"
    """The operator's index database: ``postgres`` (its own server), ``sqlite``, or ``auto`` (PostgreSQL when its
    server binaries are installed)."""

    @property
    def quorum_or_default(self) -> int:
        return self.quorum if self.quorum is not None else self.validators // 2 + 1

    def validate(self) -> None:
        if self.members < 3:
            raise ConfigError("--members must be at least 3 (a consortium of hosts has ≥ 3 member hosts)")
        if self.validators < 2:
            raise ConfigError("--validators must be at least 2 (validators of different organisations)")
        if self.aggregators < 2:
            raise ConfigError("--aggregators must be at least 2 (one may fail)")
        if self.members + self.validators + self.aggregators + 2 > 200:
            raise ConfigError("at most 200 hosts (one /24)")
        if self.rounds < 1:
            raise ConfigError("--rounds must be at least 1")
        if not 1 <= self.quorum_or_default <= self.validators:
            raise ConfigError(f"--quorum must be 1..{self.validators}")
        for name in ("submission_window_s", "commit_window_s", "reveal_window_s", "finalize_grace_s"):
            if getattr(self, name) < 5:
                raise ConfigError(f"--{name.removesuffix('_s').replace('_', '-')} must be at least 5 seconds")
        if self.timeout_s <= 0:
            raise ConfigError("--timeout must be positive")
        for fault in self.faults:
            if fault not in FAULTS:
                raise ConfigError(f"--fault must be one of {', '.join(FAULTS)}, not {fault!r}")
        if self.faults and not 1 <= self.fault_round <= self.rounds:
            raise ConfigError(f"--fault-round must be 1..{self.rounds} (the rounds run)")
        if self.index not in INDEX_BACKENDS:
            raise ConfigError(f"--index must be one of {', '.join(INDEX_BACKENDS)}, not {self.index!r}")
        if self.index == "postgres":
            from lab.host_postgres import unavailable_reason

            reason = unavailable_reason()
            if reason is not None:
                raise ConfigError(f"--index postgres: {reason}", hint="or pass --index sqlite")

    def index_backend(self) -> tuple[str, str | None]:
        """``postgres`` or ``sqlite``, and why SQLite when ``auto`` could not have PostgreSQL."""
        if self.index == "sqlite":
            return "sqlite", "asked for (--index sqlite)"
        from lab.host_postgres import unavailable_reason

        reason = unavailable_reason()
        return ("sqlite", reason) if reason is not None else ("postgres", None)


@dataclass
class HostPlan:
    name: str
    roles: list[str]
    organisation: str
    gateway: bool = True
    address: str = ""

    @property
    def gateway_url(self) -> str:
        return f"http://{self.address}:{GATEWAY_PORT}"


def plan_hosts(config: HostsConfig) -> list[HostPlan]:
    """The hosts of ``config`` in start order (module docstring)."""
    hosts = [
        HostPlan("chain", ["chain"], "consortium", gateway=False),
        HostPlan("operator", ["operator", "redis", "admin", "gateway"], "operator"),
    ]
    hosts += [
        HostPlan(f"agg-{i + 1}", ["aggregator", "gateway"], "operator") for i in range(config.aggregators)
    ]
    hosts += [
        HostPlan(f"val-{i + 1}", ["validator", "redis", "gateway"], f"validator-org-{i + 1}")
        for i in range(config.validators)
    ]
    hosts += [
        HostPlan(f"member-{i + 1}", ["member", "gateway"], f"member-org-{i + 1}")
        for i in range(config.members)
    ]
    return hosts


def host_argv(root: Path, host: str, hosts: Sequence[str], namespace: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run as ``host``: in its namespace, in a private mount namespace where every other host's directory
    under ``root/hosts`` and the harness's ``root/ctl`` are covered by an empty read-only tmpfs."""
    hidden = [root / "hosts" / h for h in hosts if h != host] + [root / "ctl"]
    mounts = " && ".join(
        f"mount -t tmpfs -o ro,size=4k,mode=0555 meshprov-lab-hidden {shlex.quote(str(d))}" for d in hidden
    )
    script = f'{mounts} && exec "$@"'
    return ["ip", "netns", "exec", namespace, "unshare", "--mount", "--propagation", "private",
            "sh", "-c", script, "host", *argv]  # fmt: skip


def prepare_directory(path: Path | None) -> Path:
    """An empty lab directory: a fresh temporary one, or ``path`` (an earlier lab's is cleaned up and emptied;
    any other non-empty directory is refused)."""
    if path is None:
        return Path(tempfile.mkdtemp(prefix="meshprov-hosts-")).resolve()
    path = path.resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} is not a directory")
    if path.is_dir() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise ConfigError(
                f"{path} is not empty and was not made by `meshprov lab hosts`: refusing to delete it",
                hint="pass another --data-dir",
            )
        cleanup_directory(path)
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cleanup_directory(path: Path) -> dict[str, list[str]]:
    """Stop what a run in ``path`` left (processes by recorded pid and start time, then its namespaces)."""
    ctl = path / "ctl"
    return {"processes": stop_recorded(ctl), "namespaces": remove_recorded(ctl / REGISTRY)}


_SERVED = re.compile(r'gateway (\S+): "GET /ipfs/\w+(?:\?\S*)? HTTP/1\.[01]" 200 ')
_REFUSED = re.compile(r"WARNING ledger\.content\.gateway: .*(?:do not hash|does not hash) to")


@dataclass
class HostsLab:
    config: HostsConfig
    say: Callable[[str], None] = lambda _m: None
    root: Path | None = None
    children: Children | None = None
    net: Network | None = None
    plans: list[HostPlan] = field(default_factory=list)
    addresses: dict[str, str] = field(default_factory=dict)
    """Account address → host."""
    faults: list[dict[str, Any]] = field(default_factory=list)
    _killed: set[str] = field(default_factory=set)
    _link_up_at: dict[str, float | None] = field(default_factory=dict)  # None: once the commit phase is seen
    postgres: OperatorPostgres | None = None
    _sqlite_because: str | None = None
    _interrupt_after: str | None = None
    """Tests: raise KeyboardInterrupt after this step (``network``, ``services``, ``deployed``)."""

    # ─── the run ──────────────────────────────────────────────────────────────────────────────────────────
    def run(self) -> dict[str, Any]:
        from lab.demo import sigterm_as_interrupt, uninterruptible
        from lab.netns import NamespacesUnavailable, unavailable_reason

        c = self.config
        c.validate()
        reason = unavailable_reason()
        if reason is not None:
            raise NamespacesUnavailable(reason)
        started = time.monotonic()
        root = self.root = prepare_directory(c.data_dir)
        (root / MARKER).write_text("made by `meshprov lab hosts`; emptied by the next run\n")
        ctl = root / "ctl"
        ctl.mkdir()
        self.children = Children(ctl)
        self.plans = plan_hosts(c)
        summary: dict[str, Any] = {}
        cleanup: dict[str, Any] = {}
        try:
            with sigterm_as_interrupt():
                self.net = create_network([p.name for p in self.plans], ctl / REGISTRY)
                for plan in self.plans:
                    plan.address = self.net.host(plan.name).address
                    (root / "hosts" / plan.name / "blocks").mkdir(parents=True)
                self.say(
                    f"{len(self.plans)} hosts on {self.net.subnet} (bridge {self.net.bridge} in {self.net.switch})"
                )
                self._step("network")
                backend, self._sqlite_because = c.index_backend()
                if backend == "postgres":
                    from lab.host_postgres import server_binaries

                    bindir = server_binaries()
                    assert bindir is not None
                    self.postgres = OperatorPostgres(
                        bindir, self._dir("operator") / "postgres", self._address("operator"),
                        self.net.subnet, secrets.token_hex(16),
                    )  # fmt: skip
                accounts = self._accounts()
                passwords = {p.name: secrets.token_hex(16) for p in self.plans if "redis" in p.roles}
                self._start_services(passwords)
                self._step("services")
                self._start_roles(passwords)  # they import, then wait for the deployment record
                deployed = self._deploy(accounts)
                self._step("deployed")
                isolation = self._probe_isolation(passwords)
                rounds = self._wait_rounds()
                self._finish_members()
                summary = self._summarise(deployed, rounds)
                summary["isolation"] = isolation
                summary["faults"] = self._fault_outcomes(rounds)
                summary["index"] = {
                    **(self._read_json(self._dir("operator") / "driver" / "index.json") or {}),
                    **self._index_description(),
                }
                summary["dashboard"] = self._read_dashboard(deployed, summary["rounds"])
        finally:
            with uninterruptible():
                cleanup = self._cleanup()
        summary["cleanup"] = cleanup
        summary["blocks"] = self._blocks()
        summary["wall_seconds"] = round(time.monotonic() - started, 2)
        (root / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return summary

    def _step(self, name: str) -> None:
        if self._interrupt_after == name:
            raise KeyboardInterrupt

    def _cleanup(self) -> dict[str, Any]:
        assert self.children is not None
        self.children.stop(timeout=10.0)
        removed = self.net.remove() if self.net is not None else []
        tag = self.net.tag if self.net is not None else None
        left = [ns for ns in existing_namespaces() if tag is not None and ns.startswith(f"mp-{tag}-")]
        alive = [c.name for c in self.children.children if c.record.alive()]
        return {"namespaces_removed": len(removed), "namespaces_left": left, "processes_left": alive}

    # ─── set-up ───────────────────────────────────────────────────────────────────────────────────────────
    def _dir(self, host: str) -> Path:
        assert self.root is not None
        return self.root / "hosts" / host

    def _accounts(self) -> dict[str, tuple[str, str]]:
        """Anvil's dev accounts by host: 0 the admin (operator), then aggregators, validators, members; each key
        written to its own host's directory only."""
        from ledger.dev.services import dev_accounts
        from ledger.settings import Settings

        holders = ["operator"] + [
            p.name for p in self.plans if p.roles[0] in ("aggregator", "validator", "member")
        ]
        keys = dev_accounts(Settings().anvil_mnemonic, len(holders))
        accounts = dict(zip(holders, keys, strict=True))
        self.addresses = {address: host for host, (address, _key) in accounts.items()}
        for host, (_address, key) in accounts.items():
            path = self._dir(host) / "key"
            path.write_text(key + "\n")
            path.chmod(0o600)
        return accounts

    _GATEWAY_ORDER = ("operator", "member", "aggregator", "validator")

    def _gateways(self, host: str) -> list[str]:
        """Every other host's gateway, likely holders first: the operator's replica, then the members (authors of
        the updates), the aggregators (of the aggregates), the validators last. Order matters for speed only
        (every block is verified whoever serves it): a host that is down costs the gateway client its timeout
        before the next one is asked."""
        others = [p for p in self.plans if p.gateway and p.name != host]
        others.sort(key=lambda p: self._GATEWAY_ORDER.index(p.roles[0]))
        return [p.gateway_url for p in others]

    def _env(self, host: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHPROV_") or k in _PASSED}
        env.update(
            MESHPROV_DATA_DIR=str(self._dir(host)),
            MESHPROV_STORE="local",
            MESHPROV_GATEWAYS=",".join(self._gateways(host)),
            MESHPROV_CHAIN_RPC_URL=f"http://{self._address('chain')}:{ANVIL_PORT}",
            MESHPROV_TX_TIMEOUT_S="30",
            PYTHONUNBUFFERED="1",
            **extra,
        )
        return env

    def _address(self, host: str) -> str:
        return next(p.address for p in self.plans if p.name == host)

    def _start(self, host: str, role: str, argv: Sequence[str], env: dict[str, str]) -> Child:
        assert self.children is not None
        assert self.net is not None
        assert self.root is not None
        wrapped = host_argv(
            self.root, host, [p.name for p in self.plans], self.net.host(host).namespace, argv
        )
        return self.children.start(f"{host}.{role}", wrapped, env, cwd=self._dir(host))

    def _meshprov(self, host: str, *args: str, warm: Sequence[str] = ()) -> list[str]:
        """``meshprov ARGS`` through :mod:`lab.host_exec`; with ``warm``, those modules are imported first and the
        command waits for the host's copy of the deployment record (the task id comes from it)."""
        record = str(self._dir(host) / VERIFIED_RECORD)
        wait = ["--warm", ",".join(warm), "--after", str(self._dir(host) / "deployment.json")] if warm else []
        return [sys.executable, "-m", "lab.host_exec", record, *wait, "--", *args]

    def _start_services(self, passwords: dict[str, str]) -> None:
        from ledger.dev.toolchain import foundry_binary, redis_server_binary
        from ledger.settings import Settings

        settings = Settings()
        anvil = foundry_binary("anvil", settings.anvil_bin)
        accounts = 1 + self.config.aggregators + self.config.validators + self.config.members
        chain_dir = self._dir("chain")
        self._start("chain", "anvil", [
            str(anvil), "--host", self._address("chain"), "--port", str(ANVIL_PORT),
            "--mnemonic", settings.anvil_mnemonic, "--accounts", str(max(accounts, 10)),
            "--state", str(chain_dir / "state.json"), "--silent",
        ], self._env("chain"))  # fmt: skip
        redis = redis_server_binary(settings.redis_server_bin)
        for host, password in passwords.items():
            self._start(host, "redis", [
                str(redis), "--bind", self._address(host), "--port", str(REDIS_PORT),
                "--requirepass", password, "--dir", str(self._dir(host)), "--appendonly", "yes",
                "--save", "", "--protected-mode", "yes", "--daemonize", "no",
            ], self._env(host))  # fmt: skip
        for plan in self.plans:
            if plan.gateway:
                argv = self._meshprov(
                    plan.name, "--log-level", "debug", "store", "serve",
                    "--store-dir", str(self._dir(plan.name) / "blocks"),
                    "--host", plan.address, "--port", str(GATEWAY_PORT),
                )  # fmt: skip
                self._start(plan.name, "gateway", argv, self._env(plan.name))
        if self.postgres is not None:
            self._start_postgres()
        index = "PostgreSQL" if self.postgres is not None else f"SQLite ({self._sqlite_because})"
        self.say(
            f"anvil on chain, redis on {', '.join(passwords)}, gateways on {sum(p.gateway for p in self.plans)} "
            f"hosts, the operator's index in {index}"
        )

    def _deploy(self, accounts: dict[str, tuple[str, str]]) -> dict[str, Any]:
        assert self.children is not None
        c = self.config
        op = self._dir("operator")
        config = {
            "rpc_url": f"http://{self._address('chain')}:{ANVIL_PORT}",
            "data_dir": str(op),
            "admin": accounts["operator"],
            "aggregators": [accounts[p.name] for p in self.plans if p.roles[0] == "aggregator"],
            "validators": [accounts[p.name] for p in self.plans if p.roles[0] == "validator"],
            "contributors": [accounts[p.name] for p in self.plans if p.roles[0] == "member"],
            "members": c.members,
            "recipe": c.recipe,
            "seed": c.seed,
            "alpha": c.alpha,
            "checks": {"zscore": 3.5, "loss_delta": 5.0},
            "quorum": c.quorum_or_default,
            "rounds": c.rounds,
            "timeout_s": c.timeout_s,
            "gateways": self._gateways("operator"),
            # The driver pauses the chain's mining once the round before the fault round is finalized, until the
            # harness has the faults in place (HOLD / RELEASE in its state directory; lab.host_driver).
            "hold_round": c.fault_round if c.faults and c.fault_round > 1 else None,
            "record": str(op / VERIFIED_RECORD),
            "index_url": self._index_url(),
            "windows": {
                "submission": c.submission_window_s,
                "commit": c.commit_window_s,
                "reveal": c.reveal_window_s,
                "finalize_grace": c.finalize_grace_s,
            },
        }
        # The admin's secret stays in the operator's directory (the driver reads it there).
        (op / "driver.json").write_text(json.dumps(config))
        (op / "driver.json").chmod(0o600)
        driver = self._start(
            "operator",
            "driver",
            [sys.executable, "-m", "lab.host_driver", str(op / "driver.json")],
            self._env("operator"),
        )
        state = op / "driver"
        deadline = time.monotonic() + 180.0
        while not (state / "deployed.json").exists():
            self._check(driver_only=True)
            if time.monotonic() > deadline:
                raise HostsFailed(
                    "the consortium was not deployed within 180 s", driver.tail(), log=driver.log
                )
            time.sleep(0.2)
        deployed: dict[str, Any] = json.loads((state / "deployed.json").read_text())
        record = (op / "deployment.json").read_text()
        for plan in self.plans:  # the deployment record is public: every host gets its copy (atomically)
            if plan.name != "operator":
                tmp = self._dir(plan.name) / "deployment.json.tmp"
                tmp.write_text(record)
                os.replace(tmp, self._dir(plan.name) / "deployment.json")
        self.say(
            f"deployed ledger {deployed['ledger']} (task {deployed['task_id']}); genesis {deployed['genesis']}"
        )
        return deployed

    def _index_url(self) -> str:
        if self.postgres is not None:
            return self.postgres.url
        return f"sqlite:///{self._dir('operator') / 'index.sqlite'}"

    def _index_description(self) -> dict[str, Any]:
        if self.postgres is not None:
            return {"backend": "postgresql", "url": self.postgres.public_url}
        return {"backend": "sqlite", "url": self._index_url(), "why_not_postgresql": self._sqlite_because}

    def _in_host(
        self, host: str, argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` run to its end as ``host`` (its namespace and mount view)."""
        assert self.root is not None
        assert self.net is not None
        wrapped = host_argv(
            self.root, host, [p.name for p in self.plans], self.net.host(host).namespace, argv
        )
        return subprocess.run(
            wrapped, capture_output=True, text=True, timeout=timeout, check=False,
            env={**os.environ, **(env or {})}, cwd=self._dir(host),
        )  # fmt: skip

    def _start_postgres(self) -> None:
        """The operator's own cluster: initdb, the lab subnet allowed with a password, the server on the
        operator's address, the index database (:mod:`lab.host_postgres`)."""
        pg = self.postgres
        assert pg is not None
        pg.prepare()
        made = self._in_host("operator", pg.initdb_argv(), timeout=180.0)
        if made.returncode != 0:
            raise HostsFailed("initdb failed on the operator host", (made.stdout + made.stderr)[-2000:])
        pg.allow_subnet()
        server = self._start("operator", "postgres", pg.server_argv(), self._env("operator"))
        deadline = time.monotonic() + 60.0
        while self._in_host("operator", pg.ready_argv(), timeout=30.0).returncode != 0:
            if server.returncode is not None or time.monotonic() > deadline:
                raise HostsFailed("the operator's PostgreSQL did not start", server.tail(), log=server.log)
            time.sleep(0.2)
        created = self._in_host("operator", pg.createdb_argv(), env=pg.client_env())
        if created.returncode != 0:
            raise HostsFailed(
                "createdb failed on the operator host", (created.stdout + created.stderr)[-2000:]
            )

    def _start_roles(self, passwords: dict[str, str]) -> None:
        c = self.config
        env = self._env("operator", MESHPROV_INDEX_URL=self._index_url())
        follow = self._meshprov(
            "operator", "index", "follow", "--poll", "0.5", warm=("ledger.index.service",)
        )
        self._start("operator", "index", follow, env)
        dashboard = self._meshprov(
            "operator",
            "dashboard",
            "serve",
            "--host",
            self._address("operator"),
            "--port",
            str(DASHBOARD_PORT),
        )
        self._start("operator", "dashboard", dashboard, env)
        tuning = [
            "--pool", "threads", "--concurrency", "1", "--loglevel", "WARNING",
            "--poll-interval", "0.5", "--job-ttl", "15", "--heartbeat", "1",
            "--retry-backoff", "1", "--retry-backoff-max", "4",
        ]  # fmt: skip
        op_redis = f"redis://:{passwords['operator']}@{self._address('operator')}:{REDIS_PORT}/0"
        for plan in self.plans:
            key = str(self._dir(plan.name) / "key")
            role = plan.roles[0]
            if role == "aggregator":
                env = self._env(
                    plan.name,
                    MESHPROV_PRIVATE_KEY_FILE=key,
                    MESHPROV_REDIS_URL=op_redis,
                )
                self._start(
                    plan.name,
                    "aggregator",
                    self._meshprov(
                        plan.name,
                        "worker",
                        "run",
                        "--role",
                        "aggregator",
                        "--watch",
                        *tuning,
                        warm=_WARM_WORKER,
                    ),
                    env,
                )
            elif role == "validator":
                index = int(plan.name.split("-")[1]) - 1
                redis_url = f"redis://:{passwords[plan.name]}@{plan.address}:{REDIS_PORT}/0"
                env = self._env(
                    plan.name, MESHPROV_PRIVATE_KEY_FILE=key, MESHPROV_REDIS_URL=redis_url,
                    HELDOUT_SLICE=f"{index}/{c.validators}",
                )  # fmt: skip
                # The loss gate comes from the task's specification: sized for a recipe that is not a builtin.
                checks = ["--recipe", c.recipe, "--zscore", "3.5"]
                self._start(
                    plan.name,
                    "validator",
                    self._meshprov(
                        plan.name, "worker", "run", "--role", "validator", *tuning, *checks, warm=_WARM_TRAIN
                    ),
                    env,
                )
                self._start(
                    plan.name,
                    "watcher",
                    self._meshprov(
                        plan.name,
                        "worker",
                        "watch",
                        "--poll-interval",
                        "0.5",
                        "--job-ttl",
                        "15",
                        warm=_WARM_WORKER,
                    ),
                    env,
                )
            elif role == "member":
                index = int(plan.name.split("-")[1]) - 1
                env = self._env(plan.name, MESHPROV_PRIVATE_KEY_FILE=key)
                argv = self._meshprov(
                    plan.name, "node", "run", "--recipe", c.recipe,
                    "--shard", str(index), "--shards", str(c.members), "--alpha", f"{c.alpha:g}", "--seed", str(c.seed),
                    "--rounds", str(c.rounds), "--poll", "0.2", "--max-poll", "1", "--no-progress",
                    warm=_WARM_TRAIN,
                )  # fmt: skip
                self._start(plan.name, "member", argv, env)
        self.say(
            f"started {c.aggregators} aggregators, {c.validators} validators (own Redis each), {c.members} members"
        )

    def _probe_isolation(self, passwords: dict[str, str]) -> dict[str, Any]:
        """From the first member host: every organisation's Redis without its password, and every other host's
        directory. Both must be refused / empty (module docstring)."""
        assert self.root is not None
        assert self.net is not None
        member = next(p for p in self.plans if p.roles[0] == "member")
        targets = {h: f"{self._address(h)}:{REDIS_PORT}" for h in passwords}
        gateways = {
            p.name: f"{p.address}:{GATEWAY_PORT}" for p in self.plans if p.gateway and p.name != member.name
        }
        dirs = {p.name: str(self._dir(p.name)) for p in self.plans if p.name != member.name}
        postgres = (
            {} if self.postgres is None else {"operator": f"{self.postgres.address}:{self.postgres.port}"}
        )
        argv = host_argv(
            self.root,
            member.name,
            [p.name for p in self.plans],
            self.net.host(member.name).namespace,
            [
                sys.executable,
                "-c",
                _PROBE,
                json.dumps({"redis": targets, "gateways": gateways, "dirs": dirs, "postgres": postgres}),
            ],
        )
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        try:
            found: dict[str, Any] = json.loads(proc.stdout)
        except ValueError:
            raise HostsFailed("the isolation probe failed", proc.stderr[-2000:]) from None
        found["from"] = member.name
        open_redis = [
            h for h, r in {**found["redis"], **found["admin"]}.items() if not r.startswith("refused")
        ] + [f"{h} (PostgreSQL)" for h, r in found["postgres"].items() if "OPEN" in r or "unreachable" in r]
        readable = [h for h, entries in found["dirs"].items() if entries]
        if open_redis or readable:
            raise HostsFailed(
                f"isolation broken: {member.name} used the Redis or RPC of {open_redis} / read the directories of {readable}"
            )
        self.say(
            f"{member.name}: the Redis of {', '.join(targets)} refused without their passwords, an RPC call refused by "
            f"{len(gateways)} gateways"
            + (", the operator's PostgreSQL refused without its password" if postgres else "")
            + f"; {len(dirs)} other hosts' directories empty from here"
        )
        return found

    def _read_dashboard(self, deployed: dict[str, Any], rounds: list[dict[str, Any]]) -> dict[str, Any]:
        """From the first member host: the operator's dashboard API, its rounds set against the chain's (the
        driver's record of each round's finalization) and its contributors counted."""
        member = next(p for p in self.plans if p.roles[0] == "member")
        url = f"http://{self._address('operator')}:{DASHBOARD_PORT}"
        argv = [sys.executable, "-c", _DASHBOARD_PROBE, url, str(deployed["task_id"])]
        deadline = time.monotonic() + 60.0
        # It serves the index the driver just checked against the chain; retried only while it is still starting.
        while True:
            proc = self._in_host(member.name, argv)
            if proc.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        if proc.returncode != 0:
            return {"url": url, "fetched_from": member.name, "equal": False, "error": proc.stderr[-2000:]}
        got = json.loads(proc.stdout)
        shown = [
            {"round": r["round"], "aggregate": r["aggregate_cid"], "accepted": r["accepted"],
             "submissions": r["submissions"], "carried_over": r["carried_over"]}
            for r in got["rounds"] if r["round"] <= self.config.rounds
        ]  # fmt: skip
        expected = [
            {k: r[k] for k in ("round", "aggregate", "accepted", "submissions")}
            | {"carried_over": bool(r.get("carried_over"))}
            for r in rounds
        ]
        return {
            "url": url,
            "fetched_from": member.name,
            "health": got["health"],
            "rounds": shown,
            "contributors": len(got["contributors"]["rows"]),
            "equal": shown == expected,
        }

    # ─── following ───────────────────────────────────────────────────────────────────────────────────────
    def _check(self, *, driver_only: bool = False) -> None:
        assert self.children is not None
        for child in self.children.children:
            code = child.returncode
            if code is None or child.name in self._killed:
                continue
            role = child.name.split(".")[1]
            if role == "member" and code == 0:
                continue  # a member exits by itself after its last round
            if role == "driver" and code == 0:
                continue
            raise HostsFailed(f"{child.name} exited with code {code}", child.tail(), log=child.log)

    def _wait_rounds(self) -> list[dict[str, Any]]:
        state = self._dir("operator") / "driver"
        deadline = time.monotonic() + self.config.timeout_s + 30
        seen = 0
        while True:
            done = (state / "done").exists()
            if not done:
                self._check()
                self._inject()
            rounds = self._read_rounds()
            for r in rounds[seen:]:
                if not r.get("finalized"):
                    break
                self.say(
                    f"round {r['round']} finalized by {r.get('by')}: {r.get('accepted')} of {r['submissions']} "
                    f"accepted, aggregate {r.get('aggregate')}"
                )
                seen += 1
            if done:
                return rounds
            if time.monotonic() > deadline:
                raise HostsFailed("the rounds did not finish in time", self._tails())
            time.sleep(0.2)

    def _inject(self) -> None:
        """The configured faults, each once, when the driver's status says the fault round reached its trigger."""
        assert self.net is not None
        assert self.children is not None
        now = time.monotonic()
        try:
            status = json.loads((self._dir("operator") / "driver" / "status.json").read_text())
        except (OSError, ValueError):
            status = {}
        past_open = status.get("round", 0) > self.config.fault_round or (
            status.get("round") == self.config.fault_round and status.get("phase") not in ("NONE", "OPEN")
        )
        for host, when in list(self._link_up_at.items()):
            if when is None:
                # Down since the fault round opened: that validator cannot commit, so the commit phase stays open
                # (its window does not close early) and the other faults see it. Up again LINK_DOWN_S after.
                if past_open:
                    self._link_up_at[host] = now + LINK_DOWN_S
                continue
            if now >= when:
                self.net.link(host, up=True)
                del self._link_up_at[host]
                self.say(f"fault: {host}'s link up again")
        done = {f["fault"] for f in self.faults}
        pending = [f for f in self.config.faults if f not in done]
        state = self._dir("operator") / "driver"
        if (state / HOLD).exists() and not (state / RELEASE).exists():
            self._inject_pending(status, pending)
            injected = {f["fault"] for f in self.faults}
            if not {"validator-link", "aggregator-kill"} & (set(self.config.faults) - injected):
                (state / RELEASE).write_text("faults in place\n")
                self.say(
                    f"faults in place before round {self.config.fault_round}'s submissions: the chain mines again"
                )
            return
        self._inject_pending(status, pending)

    def _inject_pending(self, status: dict[str, Any], pending: list[str]) -> None:
        """Inject the pending faults whose trigger holds."""
        assert self.net is not None
        assert self.children is not None
        if not pending:
            return
        # Triggers are facts the chain (or the operator's replica) holds for good, not a phase seen by polling (a
        # prompt round's phases can pass between two polls): the round before the fault round finalized (or, for
        # round 1, the fault round live), and the fault round not finalized yet. Members still have to fetch the
        # base, train and submit, so the validator's link is down before any validator can commit in the fault
        # round, which holds its commit phase open (to its deadline, or until the link is up again) for the rest.
        fr = self.config.fault_round
        rounds = {r["round"]: r for r in self._read_rounds()}
        before = rounds.get(fr - 1)
        if fr == 1:
            started = int(status.get("round", 0)) >= 1
        else:
            started = before is not None and bool(before.get("finalized"))
        if not started or rounds.get(fr, {}).get("finalized"):
            return
        phase = status.get("phase") if status.get("round") == fr else f"before round {fr}"
        for fault in pending:
            record: dict[str, Any] | None = None
            if fault == "validator-link":
                host = [p.name for p in self.plans if p.roles[0] == "validator"][-1]
                self.net.link(host, up=False)
                self._link_up_at[host] = (
                    None  # up LINK_DOWN_S after the fault round is seen past its OPEN phase
                )
                record = {"host": host, "seconds": LINK_DOWN_S}
            elif fault == "aggregator-kill" and (fr == 1 or before is None or self._aggregate_kept(before)):
                # The aggregator that finalized the round before (it holds the fault round's base) goes once the
                # operator's replica holds that aggregate, i.e. before the fault round can be finalized (its
                # commit phase is held by the validator whose link is down).
                by_host = self.addresses.get(str(before.get("by"))) if before else None
                aggregators = [p.name for p in self.plans if p.roles[0] == "aggregator"]
                host = by_host if by_host in aggregators else aggregators[0]
                victims = [c for c in self.children.children if c.name.startswith(f"{host}.")]
                for child in victims:
                    self._killed.add(child.name)
                    child.signal_group(signal.SIGKILL)
                self.net.link(host, up=False)  # the host is gone: its gateway with it
                address = next(a for a, h in self.addresses.items() if h == host)
                record = {"host": host, "address": address, "killed": [c.name for c in victims]}
            elif fault == "member-store" and self._replicated():
                # Once every submission of the fault round is on chain and in the operator's replica.
                host = next(p.name for p in self.plans if p.roles[0] == "member")
                gateway = next(c for c in self.children.children if c.name == f"{host}.gateway")
                self._killed.add(gateway.name)
                gateway.signal_group(signal.SIGKILL)
                record = {"host": host, "killed": [gateway.name]}
            if record is not None:
                record.update(fault=fault, round=fr, phase=phase)
                self.faults.append(record)
                self.say(f"fault in round {fr} ({phase}): {fault} on {record['host']}")

    def _aggregate_kept(self, entry: dict[str, Any]) -> bool:
        """The operator's replica holds this round's aggregate (or the round carried its base over)."""
        if entry.get("carried_over"):
            return True
        kept = (self._read_json(self._dir("operator") / "driver" / "replica.json") or {}).get("kept", {})
        return entry.get("aggregate") in kept

    def _replicated(self) -> bool:
        """The operator's replica holds every update of the fault round (so the member's store may go)."""
        r = self.config.fault_round
        try:
            kept = json.loads((self._dir("operator") / "driver" / "replica.json").read_text())["kept"]
        except (OSError, ValueError, KeyError):
            return False
        submitted = next((x["submissions"] for x in self._read_rounds() if x["round"] == r), 0)
        return (
            submitted >= self.config.members
            and sum(v == f"round {r} update" for v in kept.values()) >= submitted
        )

    @staticmethod
    def _read_json(path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def _read_rounds(self) -> list[dict[str, Any]]:
        try:
            data = json.loads((self._dir("operator") / "driver" / "rounds.json").read_text())
        except (OSError, ValueError):
            return []
        return [r for r in data if isinstance(r, dict)]

    def _tails(self) -> str:
        assert self.children is not None
        return "\n".join(
            f"--- {c.name} ---\n{c.tail(6)}" for c in self.children.children if "gateway" not in c.name
        )

    def _finish_members(self) -> None:
        assert self.children is not None
        members = [c for c in self.children.children if c.name.endswith(".member")]
        if not self.children.wait(members, 30.0):
            self.say("some members did not exit after their last round; stopping them")

    # ─── the summary ─────────────────────────────────────────────────────────────────────────────────────
    def _summarise(self, deployed: dict[str, Any], rounds: list[dict[str, Any]]) -> dict[str, Any]:
        assert self.net is not None
        wanted = [r for r in rounds if r["round"] <= self.config.rounds]
        return {
            "hosts": [
                {
                    "name": p.name,
                    "address": p.address,
                    "roles": p.roles,
                    "organisation": p.organisation,
                    "namespace": self.net.host(p.name).namespace,
                }
                for p in self.plans
            ],
            "network": {"subnet": self.net.subnet, "bridge": self.net.bridge, "switch": self.net.switch},
            "chain": deployed,
            "rounds": [
                {
                    "round": r["round"],
                    "finalized": r["finalized"],
                    "aggregate": r.get("aggregate"),
                    "accepted": r.get("accepted"),
                    "submissions": r["submissions"],
                    "by": r.get("by"),
                    "carried_over": r.get("carried_over"),
                }
                for r in wanted
            ],
            "data_dir": str(self.root),
        }

    def _fault_outcomes(self, rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each injected fault with how its round ended (the aggregator fault: finalized by another address)."""
        missing = [f for f in self.config.faults if f not in {x["fault"] for x in self.faults}]
        if missing:
            raise HostsFailed(
                f"faults never injected (their trigger phase was not seen): {', '.join(missing)}"
            )
        out = []
        for fault in self.faults:
            r = next((x for x in rounds if x["round"] == fault["round"]), {})
            entry = {
                **fault,
                "finalized": r.get("finalized"),
                "by": r.get("by"),
                "carried_over": r.get("carried_over"),
            }
            if fault["fault"] == "aggregator-kill":
                entry["finalized_by_another"] = r.get("by") not in (None, fault["address"])
            out.append(entry)
        return out

    def _blocks(self) -> dict[str, Any]:
        """Blocks each host took from other hosts' gateways, verified (its :mod:`lab.host_exec` record) or refused
        for not hashing to their CID (its processes' gateway warnings), and the requests each gateway answered
        with 200 to another host (its debug log)."""
        assert self.children is not None
        logs = self.children.directory / "logs"
        by_address = {p.address: p.name for p in self.plans}
        per_host: dict[str, dict[str, int]] = {
            p.name: {"verified": 0, "refused": 0, "bytes": 0, "served_requests": 0}
            for p in self.plans
            if p.gateway
        }
        for plan in self.plans:
            if not plan.gateway:
                continue
            counts = per_host[plan.name]
            with contextlib.suppress(OSError):
                for line in (self._dir(plan.name) / VERIFIED_RECORD).read_text().splitlines():
                    parts = line.split()
                    if len(parts) == 2 and parts[1].isdigit():
                        counts["verified"] += 1
                        counts["bytes"] += int(parts[1])
            for log in logs.glob(f"{plan.name}.*.log"):
                with contextlib.suppress(OSError):
                    text = log.read_text(errors="replace")
                    if log.name.endswith(".gateway.log"):
                        counts["served_requests"] += sum(
                            1
                            for m in _SERVED.finditer(text)
                            if by_address.get(m.group(1), plan.name) != plan.name
                        )
                    counts["refused"] += len(_REFUSED.findall(text))
        verified = sum(c["verified"] for c in per_host.values())
        refused = sum(c["refused"] for c in per_host.values())
        return {
            "fetched_from_other_hosts": verified + refused,
            "verified": verified,
            "refused": refused,
            "requests_served_to_other_hosts": sum(c["served_requests"] for c in per_host.values()),
            "by_host": per_host,
        }
