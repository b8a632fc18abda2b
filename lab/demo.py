"""`meshprov demo`: a whole consortium on one machine, from an empty directory to an audited model.

1. The data directory (default ``.meshprov/demo``) is made fresh: a directory an earlier demo left (it holds the
   ``.meshprov-demo`` marker) is emptied after stopping whatever that run left running; any other non-empty
   directory is refused, never deleted.
2. The embedded services start in it: anvil (state in ``anvil/state.json``) and redis-server.
3. The genesis model and the task's specification are put in the local store (``blocks/``); MeshToken and
   MeshLedger are deployed by ``lab.consortium`` (the real `ledger.chain.deploy`) for dev accounts: 0 admin,
   1 aggregator, 2… validators, then the members; the record goes to ``deployment.json``, the members' keys to
   ``keys/``.
4. Real processes, each in its own session with its log in ``logs/``: the validators and the aggregator (with its
   watcher) as `meshprov worker run`, the members (the last ``--malicious`` of them with ``--behaviour``) hosted
   by ``python -m lab.members`` processes, one per core (``--members-per-process``; each member with its own key,
   journal, data and ``logs/node-N.log``), or each as its own `meshprov node run` (``--members-per-process 1``),
   optionally a `meshprov node relay`. Accounts beyond anvil's 20 get a balance first (``anvil_setBalance``); the
   windows not given are sized to the members (:meth:`DemoConfig.sized`).
5. The ledger's events are followed: as each round is finalized its updates, votes, reasons, rewards and the
   aggregate's test accuracy are printed (stderr).
6. After ``--rounds`` rounds: members and workers are stopped, the index (``index.sqlite``) is brought up to date,
   the final model's lineage and `audit verify` are computed, and a centrally trained baseline with the same
   budget is measured. ``demo-summary.json`` holds all of it.
7. Every process started is stopped (also on Ctrl-C or SIGTERM); anvil saves its state on the way out, so
   ``meshprov --data-dir DIR audit …`` and ``meshprov --data-dir DIR dashboard serve`` work afterwards. The
   commands printed at the end (``next`` in the summary) run as printed in a fresh shell
   (:func:`meshprov_command`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.demo_report import Member, RoundResult, RoundTracker, member_totals, validator_totals
from lab.procs import Child, Children, interrupting, raise_if_interrupted, stop_recorded
from lab.procs import uninterruptible as _uninterruptible
from ledger.errors import ConfigError, MeshprovError
from node.task_bounds import DEFAULT_LOSS_DELTA

if TYPE_CHECKING:
    from rich.console import Console

    from ledger.chain.client import LedgerClient
    from ledger.chain.deploy import DeploymentRecord
    from ledger.recipe import TaskSpec
    from ledger.settings import Settings
    from node.recipe import Recipe

MARKER = ".meshprov-demo"
SUMMARY = "demo-summary.json"
DEFAULT_DIR = Path(".meshprov/demo")
BEHAVIOURS = ("scale", "sign-flip", "noise", "free-rider", "copycat", "little-is-enough")
RULES = ("fedavg", "trimmed-mean", "median", "multi-krum")
# Settings a user may need for the embedded services even in a demo (where the binaries are).
_PASSED_SETTINGS = ("MESHPROV_ANVIL_BIN", "MESHPROV_REDIS_SERVER_BIN", "MESHPROV_SERVICE_START_TIMEOUT_S")
# MeshLedger's per-round limits (contracts/src/MeshLedger.sol): a round takes at most this many updates, a set at
# most this many validators.
MAX_UPDATES_PER_ROUND = 112
MAX_VALIDATORS = 32
# The Dirichlet α the demo tries, in order, when none was given and the recipe cannot split at the default: few and
# far apart, because a split that fails costs node.data 1,000 rejection-sampling attempts (5-25 s here), and one
# that only just succeeds many (digits: 80 members at α = 1, 4 s; 100 at 10 or 112 at 100, < 0.3 s).
ALPHA_STEPS = (10.0, 100.0)
# The builtin recipe of each legacy --model name.
_MODEL_RECIPES = {"mlp": "digits", "cnn": "digits_cnn"}


@dataclass(frozen=True)
class DemoConfig:
    nodes: int = 5
    rounds: int = 5
    malicious: int = 1
    behaviour: str = "scale"
    rule: str = "fedavg"
    model: str = "mlp"
    recipe: str | None = None
    """The task's recipe (builtin name, module name, .py file or package directory); None: the builtin recipe of
    ``model`` (``mlp``: ``digits``, ``cnn``: ``digits_cnn``)."""
    alpha: float = 0.5
    alpha_given: bool = False
    """False: ``alpha`` is the default, and the demo may raise it until the recipe can split its data over the
    members (:data:`ALPHA_STEPS`: digits' 1,347 training samples over 100 members, at least 10 each, take α = 10)."""
    seed: int = 0
    data_dir: Path = DEFAULT_DIR
    validators: int = 3
    quorum: int = 2
    validators_down: int = 0
    lying_validators: int = 0
    """Validators of the set that are never started (the last ones): the rounds still reach the quorum as long as
    ``validators - validators_down >= quorum``, after the commit window (the absent never commit)."""
    submission_window_s: int | None = None
    """None: sized to the members (:meth:`sized`). Every window ends early once everyone it waits for has acted
    (the last submission closes the round, the last commit the commit phase), so a generous one costs nothing
    unless someone is missing."""
    commit_window_s: int | None = None
    reveal_window_s: int | None = None
    finalize_grace_s: int | None = None
    loss_delta: float = DEFAULT_LOSS_DELTA
    loss_delta_given: bool = False
    """False: ``loss_delta`` is the default, sized for the builtins' cross-entropy in nats; for another recipe the
    demo widens the gate to twice its genesis's held-out loss where that is more (``node.task_bounds``)."""
    zscore: float = 3.5
    relay: bool = False
    timeout_s: float | None = None
    """None: sized to the rounds' windows (:meth:`sized`)."""
    reward_per_round: str = "1000"
    members_per_process: int = 0
    """Members one process hosts (``lab.members``); 1: each its own `meshprov node run`; 0: as many as it takes to
    have one member process per core (at least two processes)."""

    def validate(self) -> None:
        if not 1 <= self.validators <= MAX_VALIDATORS:
            raise ConfigError(f"--validators must be 1..{MAX_VALIDATORS} (MeshLedger's MAX_VALIDATORS)")
        if not 1 <= self.nodes <= MAX_UPDATES_PER_ROUND:
            raise ConfigError(
                f"--nodes must be 1..{MAX_UPDATES_PER_ROUND}: a round takes at most {MAX_UPDATES_PER_ROUND} updates "
                "(MeshLedger's MAX_UPDATES_PER_ROUND), so more members could not all be in every round",
                hint="docs/scale.md says how a consortium grows past one round's limit",
            )
        if self.members_per_process < 0:
            raise ConfigError("--members-per-process must be 0 (automatic) or more")
        if not 0 <= self.malicious <= self.nodes:
            raise ConfigError(f"--malicious must be 0..{self.nodes}")
        if self.rounds < 1:
            raise ConfigError("--rounds must be at least 1")
        if self.behaviour not in BEHAVIOURS:
            raise ConfigError(f"--behaviour must be one of {', '.join(BEHAVIOURS)}")
        if self.rule not in RULES:
            raise ConfigError(f"--rule must be one of {', '.join(RULES)}")
        if not 1 <= self.quorum <= self.validators:
            raise ConfigError(f"the quorum must be 1..{self.validators} (the number of validators)")
        if not 0 <= self.validators_down <= self.validators - self.quorum:
            raise ConfigError(
                f"--validators-down must be 0..{self.validators - self.quorum}: with more down, fewer than the "
                f"quorum of {self.quorum} validators reveal and no update can be accepted"
            )
        if not 0 <= 2 * self.lying_validators < self.validators - self.validators_down:
            raise ConfigError(
                f"--lying-validators must be 0..{(self.validators - self.validators_down - 1) // 2}: lying "
                "validators must stay a minority of those that run, or they decide the rounds"
            )
        if not (math.isfinite(self.loss_delta) and self.loss_delta >= 0):
            raise ConfigError(f"--loss-delta must be a finite number >= 0, got {self.loss_delta}")
        for name in ("submission_window_s", "commit_window_s", "reveal_window_s", "finalize_grace_s"):
            value = getattr(self, name)
            if value is not None and value < 5:
                raise ConfigError(f"--{name.removesuffix('_s').replace('_', '-')} must be at least 5 seconds")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigError("--timeout must be positive")
        from node.models import model_names

        if self.model not in model_names():
            raise ConfigError(f"--model must be one of {', '.join(model_names())}")

    def sized(self, *, round_s: float = 0.0, evaluate_s: float = 0.0) -> DemoConfig:
        """This configuration with every window and the timeout it leaves open sized to the load.

        Measured here (docs/benchmarks.md, Scale): a member trains the digits MLP in < 0.1 s once warm, a member
        process starts (torch, the recipe, its members' data) in 5-20 s on two busy cores, a validator judges an
        update in ≈ 0.1-0.3 s. The windows give every member ≈ 2 s and every update ≈ 1 s of a validator's time on
        top of a minute, an order of magnitude of slack: they close early when everyone has acted.

        ``round_s`` and ``evaluate_s``: what one honest round and one evaluation of the recipe took before anything
        started (the demo measures them sizing the recipe's bounds; 0 for the builtins). A member process trains
        its members one after the other, and a validator trains its reference (at most a round) and evaluates
        every update, so the submission window adds :data:`WORK_MARGIN` rounds per member of the busiest process
        and the commit window :data:`WORK_MARGIN` times a round and an evaluation per update. Before, a recipe
        whose round took 40 s had a member miss the 66 s submission window, and the ×10 member, alone with one
        honest update where no z-score applies, was accepted and took the whole reward."""
        n = self.nodes
        busiest = max(len(group) for group in self.member_hosts())
        submission = self.submission_window_s or 60 + 2 * n + math.ceil(WORK_MARGIN * busiest * round_s)
        commit = self.commit_window_s or 60 + n + math.ceil(WORK_MARGIN * (round_s + n * evaluate_s))
        reveal = self.reveal_window_s or 60
        grace = self.finalize_grace_s or 60 + n // 2
        timeout = self.timeout_s or max(600.0, 120.0 + self.rounds * (submission + commit + reveal + grace))
        return dataclasses.replace(
            self,
            submission_window_s=submission,
            commit_window_s=commit,
            reveal_window_s=reveal,
            finalize_grace_s=grace,
            timeout_s=timeout,
        )

    def member_hosts(self, cores: int | None = None) -> list[list[int]]:
        """The members (0-based) each member process hosts: one each with ``members_per_process`` 1, else in
        contiguous groups of ``members_per_process`` (0: as many as give one process per core, at least two)."""
        per = self.members_per_process
        if per == 0:
            processes = min(self.nodes, max(2, cores if cores is not None else os.cpu_count() or 2))
            per = math.ceil(self.nodes / processes)
        return [list(range(i, min(i + per, self.nodes))) for i in range(0, self.nodes, per)]

    @property
    def recipe_name(self) -> str:
        """What members and validators are told to load (a path made absolute: their working directory differs)."""
        if self.recipe is None:
            return _MODEL_RECIPES.get(self.model, self.model)
        path = Path(self.recipe).expanduser()
        return str(path.resolve()) if path.exists() else self.recipe

    def behaviour_of(self, node_index: int) -> str:
        """The last ``malicious`` members misbehave."""
        return self.behaviour if node_index >= self.nodes - self.malicious else "honest"

    def rule_table(self) -> dict[str, Any]:
        """The consortium file's rule keys for ``rule`` (trimmed mean trims the malicious share, at least 10 %)."""
        if self.rule == "trimmed-mean":
            share = self.malicious / self.nodes
            return {"rule": self.rule, "trim_bps": min(4_999, max(1_000, round(10_000 * share)))}
        if self.rule == "multi-krum":
            return {"rule": self.rule, "krum_f": self.malicious}
        return {"rule": self.rule}


WORK_MARGIN = 3.0
"""How many times the recipe's measured work (an honest round, an evaluation; on an idle machine) a window allows
for it: members, validators and the chain share two cores while a round runs."""


class DemoFailed(MeshprovError):
    def __init__(self, what: str, detail: str, *, log: Path | None = None) -> None:
        self.what = what
        self.detail = detail
        super().__init__(f"the demo failed: {what}\n{detail}".rstrip(), hint=f"see {log}" if log else None)


def _last_error(log_tail: str, width: int = 400) -> str:
    """The end of the last ``ERROR`` line of a worker's log, where the exception's own message is (a Celery failure
    line carries the whole traceback, escaped), or the log's last lines when it has none."""
    errors = [line for line in log_tail.splitlines() if line.startswith("ERROR ")]
    if not errors:
        return "\n".join(log_tail.splitlines()[-8:])
    line = errors[-1].replace("\\n", "\n").replace("\\'", "'")
    return line if len(line) <= width else "… " + line[-width:]


class NotADemoDirectory(ConfigError):
    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"{path} is not empty and was not made by `meshprov demo`: refusing to delete it",
            hint="pass another --data-dir (the demo empties its own directory on every run)",
        )


def prepare_directory(path: Path) -> Path:
    """An empty demo directory at ``path`` (see the module docstring). Returns it resolved."""
    from ledger.dev.services import DevServices
    from ledger.settings import load_settings

    path = path.resolve()
    if path.exists() and not path.is_dir():
        raise NotADemoDirectory(path)
    if path.is_dir() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise NotADemoDirectory(path)
        stop_recorded(path)
        DevServices(load_settings(environ={}, data_dir=path)).down()
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("made by `meshprov demo`; emptied by the next run\n")
    return path


def demo_settings(data_dir: Path, environ: dict[str, str] | None = None) -> Settings:
    """The demo's settings: everything embedded in ``data_dir``, whatever MESHPROV_* the caller's shell has."""
    from ledger.settings import load_settings

    env = dict(os.environ if environ is None else environ)
    kept = {k: v for k, v in env.items() if not k.startswith("MESHPROV_") or k in _PASSED_SETTINGS}
    return load_settings(environ=kept, data_dir=data_dir)


def meshprov_command(cwd: Path | None = None, path: str | None = None) -> str:
    """How a fresh shell in ``cwd`` runs the ``meshprov`` this interpreter runs.

    ``meshprov`` itself when that name on ``path`` (default ``$PATH``) is the script beside this interpreter and
    the interpreter is not a virtual environment's (whose bin directory is on PATH only while it is activated);
    else that script's path, relative to ``cwd`` when it is inside it (``.venv/bin/meshprov`` after ``make
    demo``); else ``python -m ledger.cli.app`` with this interpreter."""
    here = Path(os.path.abspath(sys.executable)).parent
    script = here / "meshprov"
    if not script.is_file():
        return f"{shlex.quote(os.path.abspath(sys.executable))} -m ledger.cli.app"
    found = shutil.which("meshprov", path=path)
    in_venv = sys.prefix != sys.base_prefix
    if found and not in_venv and Path(found).resolve() == script.resolve():
        return "meshprov"
    base = Path(os.path.abspath(cwd or Path.cwd()))
    shown = script.relative_to(base) if script.is_relative_to(base) else script
    return shlex.quote(str(shown))


def next_commands(data_dir: Path, model: str, cwd: Path | None = None) -> list[str]:
    """The commands the demo suggests afterwards, each runnable as printed in a fresh shell in ``cwd``."""
    meshprov = f"{meshprov_command(cwd)} --data-dir {shlex.quote(str(data_dir))}"
    return [
        f"{meshprov} audit lineage {shlex.quote(model)}",
        f"{meshprov} dashboard serve",
        f"{meshprov} dev down",
    ]


DEV_BALANCE_WEI = 10_000 * 10**18
"""What anvil gives each of its dev accounts; the demo gives the same to the ones beyond anvil's 20."""


def fund_dev_accounts(w3: Any, keys: list[tuple[str, str]]) -> int:
    """Give every account of ``keys`` without ether a dev account's balance (``anvil_setBalance``): the embedded
    anvil funds 20 accounts and a demo may need up to 2 + 32 + 112. Returns how many were funded."""
    funded = 0
    for address, _key in keys:
        if int(w3.eth.get_balance(address)) == 0:
            reply = w3.provider.make_request("anvil_setBalance", [address, hex(DEV_BALANCE_WEI)])
            if "error" in reply:
                raise DemoFailed(f"funding {address}", str(reply["error"]))
            funded += 1
    return funded


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the demo the way Ctrl-C does (cleanup runs): both raise :class:`lab.procs.Interrupted`, a
    KeyboardInterrupt (:func:`lab.procs.interrupting` says why a subclass, and what else it guards against). SIGINT
    is installed explicitly too: a process started in the background by a non-interactive shell inherits SIGINT
    *ignored*, and Ctrl-C (or a supervisor's SIGINT) must still stop it."""
    with interrupting((signal.SIGINT, signal.SIGTERM)):
        yield


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
    """A second Ctrl-C must not cut the cleanup short and leave processes behind (:func:`lab.procs.uninterruptible`:
    nor can one pending as it begins)."""
    with _uninterruptible((signal.SIGINT, signal.SIGTERM)):
        yield


@dataclass
class Demo:
    config: DemoConfig
    console: Console
    say: Callable[[str], None]
    children: Children | None = None
    timings: dict[str, float] = field(default_factory=dict)
    recipe: Recipe | None = None
    spec: TaskSpec | None = None
    spec_cid: str | None = None
    sized_checks: dict[str, float | int] = field(default_factory=dict)
    """What the task anchors beyond ``zscore`` and ``loss_delta``, sized for the recipe before anything starts."""
    _datasets: dict[tuple[int, int], tuple[Any, Any]] = field(default_factory=dict, repr=False)
    member_processes: list[list[str]] = field(default_factory=list)
    """The members each member process hosted, by name."""

    # ─── the run ────────────────────────────────────────────────────────────────────────────────────────────
    def run(self) -> dict[str, Any]:
        from ledger.cli.output import dumps
        from ledger.dev.services import DevServices

        started = time.monotonic()
        self.config.validate()
        from lab.members import cache_federations

        cache_federations()  # the demo asks the recipe for every member's data (their sizes, the split check)
        self.recipe = self._load_recipe()  # a broken recipe is refused before anything starts
        self._fit_alpha()  # so is a split the recipe cannot make
        self._check_heldout()  # and a test set too small for the validators to share
        self._warn_identical_shards()
        timings: dict[str, float] = {}
        # An evaluate() that fails on the genesis is refused here too; what it and a round took sizes the windows.
        self.sized_checks = self._size_bounds(self.recipe, timings)
        self.config = self.config.sized(
            round_s=timings.get("round", 0.0), evaluate_s=timings.get("evaluate", 0.0)
        )
        if timings.get("round", 0.0) >= 1.0:  # worth saying: the windows grew by seconds at least
            c = self.config
            self.say(
                f"windows sized for the recipe (a round took {timings['round']:.1f} s here, an evaluation "
                f"{timings['evaluate']:.1f} s): submission {c.submission_window_s} s, commit {c.commit_window_s} s"
            )
        self._task_spec()  # settings that JSON cannot hold are refused before anything starts
        data_dir = prepare_directory(self.config.data_dir)
        settings = demo_settings(data_dir)
        services = DevServices(settings)
        children = self.children = Children(data_dir)
        self.say(f"demo in {data_dir}")
        # The cleanup runs inside the handlers' context: between the two a second signal would find SIGTERM's
        # default action (death, children left running).
        with sigterm_as_interrupt():
            try:
                endpoints = services.up()
                anvil_url, redis_url = endpoints["anvil"].url, endpoints["redis"].url
                settings = settings.model_copy(update={"chain_rpc_url": anvil_url})  # for its clients
                self.say(f"anvil {anvil_url}, redis {redis_url}")
                record, members = self._deploy(settings, anvil_url)
                env = self._env(settings, anvil_url, redis_url, record.task_id)
                workers = self._start_workers(env, data_dir)
                nodes = self._start_nodes(env, data_dir, members)
                self.timings["startup"] = time.monotonic() - started
                rounds = self._follow(settings, record, members, workers, nodes)
                self.timings["rounds"] = time.monotonic() - started - self.timings["startup"]
                self._finish_members(nodes)
                children.signal(workers, signal.SIGTERM)  # their warm shutdown overlaps the audit
                summary = self._summarise(settings, record, members, rounds, anvil_url)
                children.stop(workers)
            finally:
                with uninterruptible():
                    children.stop()
                    services.down()  # anvil writes its state on SIGTERM: audits can restart it later
        summary["wall_seconds"] = round(time.monotonic() - started, 2)
        summary["timings"] = {k: round(v, 2) for k, v in self.timings.items()}

        path = data_dir / SUMMARY
        path.write_text(dumps(summary) + "\n")  # strict JSON: a metric the recipe reports as NaN is null
        return summary

    # ─── set-up ─────────────────────────────────────────────────────────────────────────────────────────────
    def _deploy(self, settings: Settings, anvil_url: str) -> tuple[DeploymentRecord, list[Member]]:
        from lab.consortium import RoleKeys, deploy_consortium
        from ledger.chain.client import connect_web3
        from ledger.content import open_store
        from node.packaging import put_update, write_recipe_genesis

        c = self.config
        data_dir = settings.data_dir
        roles = RoleKeys.dev(c.validators, c.nodes, settings.anvil_mnemonic)
        keys = data_dir / "keys"
        keys.mkdir(mode=0o700, exist_ok=True)
        named = [("admin", roles.admin), ("aggregator", roles.aggregator)]
        named += [(f"validator-{i + 1}", v) for i, v in enumerate(roles.validators)]
        named += [(f"node-{i + 1}", m) for i, m in enumerate(roles.contributors)]
        for name, (_address, key) in named:
            path = keys / f"{name}.key"
            path.write_text(key + "\n")
            path.chmod(0o600)

        recipe = self.recipe
        assert recipe is not None
        store = open_store(settings)
        genesis = put_update(store, write_recipe_genesis(data_dir / "genesis.safetensors", recipe, c.seed))
        sizes = [len(self._data(i, c.nodes)[0]) for i in range(c.nodes)]
        spec = self._task_spec()
        spec_path = data_dir / "task-spec.json"
        spec_path.write_text(spec.to_json())
        spec_cid = store.put_file(spec_path)
        store.close()
        if spec_cid != spec.cid:
            raise DemoFailed("the store's CID of the task specification", f"{spec_cid} is not {spec.cid}")
        self.spec, self.spec_cid = spec, spec_cid
        task = {
            "spec": spec_cid,
            "genesis": genesis,
            **c.rule_table(),
            "quorum": c.quorum,
            "submission_window_s": c.submission_window_s,
            "commit_window_s": c.commit_window_s,
            "reveal_window_s": c.reveal_window_s,
            "finalize_grace_s": c.finalize_grace_s,
            "max_samples": max(sizes),
            "reward_per_round": c.reward_per_round,
        }
        (data_dir / "consortium.json").write_text(json.dumps(roles.document(task), indent=2))
        w3 = connect_web3(anvil_url)
        fund_dev_accounts(w3, [roles.admin, roles.aggregator, *roles.validators, *roles.contributors])
        record = deploy_consortium(
            w3,
            roles,
            task,
            record_path=settings.resolved_deployment_file,
            timeout=settings.tx_timeout_s,
            source="the demo",
        ).record
        self.say(
            f"deployed ledger {record.ledger} (task {record.task_id}, {c.rule}, quorum {c.quorum}); "
            f"recipe {recipe.ref}; genesis {genesis}"
        )
        members = [Member(i + 1, m[0], c.behaviour_of(i), sizes[i]) for i, m in enumerate(roles.contributors)]
        return record, members

    def _load_recipe(self) -> Recipe:
        from node.recipe import load_recipe

        return load_recipe(self.config.recipe_name)

    def _task_spec(self) -> TaskSpec:
        """The schema-2 specification: the recipe by name, version and the hash of its files, the hyperparameters
        members train with (written out in full), the seed, the split and the validators' checks. Built once before
        anything starts too, so that a recipe whose settings cannot be written in it is refused then."""
        from node.recipe import task_spec

        assert self.recipe is not None
        c = self.config
        checks: dict[str, Any] = {"zscore": c.zscore, "loss_delta": c.loss_delta, **self.sized_checks}
        return task_spec(
            self.recipe,
            members=c.nodes,
            seed=c.seed,
            alpha=c.alpha,
            checks=checks,
            dataset="sklearn digits (8x8), fixed split" if c.recipe is None else None,
        )

    def _warn_identical_shards(self) -> None:
        """Say when the recipe's ``data()`` gives two members the same training samples (it ignores ``member``):
        their honest updates then point alike and the later one is rejected as a copy (``DUPLICATE``,
        docs/scoring.md "Copies"), which the run would otherwise show without a word of why."""
        from lab.shard_fingerprint import fingerprint

        seen: dict[str, int] = {}
        twins: list[tuple[int, int]] = []
        for i in range(self.config.nodes):
            key = fingerprint(self._data(i, self.config.nodes)[0])
            if key in seen:
                twins.append((seen[key], i))
            else:
                seen[key] = i
        if twins:
            pairs = ", ".join(f"node-{a + 1} and node-{b + 1}" for a, b in twins[:3])
            more = f" (and {len(twins) - 3} more)" if len(twins) > 3 else ""
            self.say(
                f"warning: the recipe's data() gives {pairs}{more} the same training samples: their honest updates "
                'will look like copies and all but one be rejected as duplicate (docs/scoring.md, "Copies"); '
                "give each member its own shard"
            )

    def _check_heldout(self) -> None:
        """Refuse, before anything starts, a recipe whose test set cannot give every validator a sample of the
        held-out half (``lab.recipe_validator.check_shareable``, the rule each validator applies as it starts: before,
        they refused it then, after the chain and the members were up). Those down still hold their slice."""
        from lab.recipe_validator import check_shareable

        assert self.recipe is not None
        check_shareable(self.recipe.name, len(self._data(0, 1)[1]), self.config.validators)

    def _fit_alpha(self) -> None:
        """Check that the recipe splits its data over the members; when α was not given and it cannot, raise α
        step by step (:data:`ALPHA_STEPS`) until it can, and say so."""
        from node.errors import ShardingFailed

        c = self.config
        try:
            self._data(0, c.nodes)
            return
        except ShardingFailed as exc:
            if c.alpha_given:
                raise
            failed = exc
        for alpha in (a for a in ALPHA_STEPS if a > c.alpha):
            self.config = dataclasses.replace(c, alpha=alpha)
            self._datasets.clear()
            try:
                self._data(0, c.nodes)
            except ShardingFailed:
                continue
            self.say(
                f"α = {c.alpha:g} cannot split the recipe's data over {c.nodes} members ({failed.message}); "
                f"using α = {alpha:g} (pass --alpha to choose)"
            )
            return
        self.config = c
        raise failed

    def _size_bounds(self, recipe: Recipe, timings: dict[str, float] | None = None) -> dict[str, float | int]:
        """The checks sized for a recipe that is not a builtin (``node.task_bounds``): the loss gate unless
        ``--loss-delta`` was given (``self.config`` takes it: validators get it on their command line too), and
        ``max_scale_ratio`` where the default would reject an honest update, ``reference_steps`` where a member's
        round takes fewer optimiser steps than the validators' default reference."""
        from node.task_bounds import sized_checks

        c = self.config
        checks, said = sized_checks(
            recipe,
            seed=c.seed,
            shards=[self._data(i, c.nodes)[0] for i in range(c.nodes)],
            test=self._data(0, c.nodes)[1],
            loss_gate=not c.loss_delta_given,
            timings=timings,
        )
        for line in said:
            self.say(line)
        self.config = dataclasses.replace(c, loss_delta=float(checks.pop("loss_delta", c.loss_delta)))
        return checks

    def _data(self, member: int, members: int) -> tuple[Any, Any]:
        """The recipe's data for ``member`` of ``members``, with the split settings a member passes too."""
        assert self.recipe is not None
        key = (member, members)
        if key not in self._datasets:  # a recipe may generate its data: once per shard is enough
            self._datasets[key] = self.recipe.data(member, members, self.config.seed, alpha=self.config.alpha)
        return self._datasets[key]

    def _env(self, settings: Settings, anvil_url: str, redis_url: str, task_id: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHPROV_") or k in _PASSED_SETTINGS}
        env.update(
            {
                "MESHPROV_DATA_DIR": str(settings.data_dir),
                "MESHPROV_CHAIN_RPC_URL": anvil_url,
                "MESHPROV_REDIS_URL": redis_url,
                "MESHPROV_STORE": "local",
                "MESHPROV_TASK_ID": str(task_id),
                "MESHPROV_TX_TIMEOUT_S": "30",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _meshprov(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ledger.cli.app", *args]

    def _start_workers(self, env: dict[str, str], data_dir: Path) -> list[Child]:
        assert self.children is not None
        c = self.config
        tuning = [
            "--pool", "threads", "--concurrency", "1", "--loglevel", "WARNING",
            "--poll-interval", "0.25", "--job-ttl", "15", "--heartbeat", "1",
            "--retry-backoff", "1", "--retry-backoff-max", "4",
        ]  # fmt: skip
        # Each validator judges with the task's recipe: its evaluate for the held-out loss, its training for the
        # reference update on the validator's own slice of the held-out data (HELDOUT_SLICE).
        checks = ["--recipe", c.recipe_name, "--loss-delta", f"{c.loss_delta:g}", "--zscore", f"{c.zscore:g}"]
        workers = []
        for i in range(c.validators - c.validators_down):
            key_env = {
                **env,
                "MESHPROV_PRIVATE_KEY_FILE": str(data_dir / "keys" / f"validator-{i + 1}.key"),
                "HELDOUT_SLICE": f"{i}/{c.validators}",
            }
            # The first --lying-validators accept what the checks reject: `audit rejudge` must find them.
            lie = ["--lie"] if i < c.lying_validators else []
            argv = self._meshprov("worker", "run", "--role", "validator", *tuning, *checks, *lie)
            workers.append(self.children.start(f"validator-{i + 1}", argv, key_env))
        key_env = {**env, "MESHPROV_PRIVATE_KEY_FILE": str(data_dir / "keys" / "aggregator.key")}
        argv = self._meshprov("worker", "run", "--role", "aggregator", "--watch", *tuning)
        workers.append(self.children.start("aggregator", argv, key_env))
        if c.relay:
            key_env = {**env, "MESHPROV_PRIVATE_KEY_FILE": str(data_dir / "keys" / "admin.key")}
            workers.append(self.children.start("relayer", self._meshprov("node", "relay"), key_env))
        down = (
            f" ({', '.join(f'validator-{i + 1}' for i in range(c.validators - c.validators_down, c.validators))}"
            " down: absent from every round)"
            if c.validators_down
            else ""
        )
        self.say(
            f"started {c.validators - c.validators_down} of {c.validators} validator(s){down} and the aggregator "
            "(+ watcher)" + (" and a relayer" if c.relay else "")
        )
        return workers

    def _start_nodes(self, env: dict[str, str], data_dir: Path, members: list[Member]) -> list[Child]:
        assert self.children is not None
        c = self.config
        # Many members poll the same anvil: the longest poll interval grows with them (100 members: 2 s).
        max_poll = max(0.5, c.nodes / 50)
        hosts = c.member_hosts()
        self.member_processes = [[members[i].name for i in group] for group in hosts]
        nodes = []
        if all(len(group) == 1 for group in hosts):
            for m in members:
                key_env = {**env, "MESHPROV_PRIVATE_KEY_FILE": str(data_dir / "keys" / f"{m.name}.key")}
                argv = self._meshprov(
                    "node", "run",
                    *(["--model", c.model] if c.recipe is None else ["--recipe", c.recipe_name]),
                    "--shard", str(m.node - 1), "--shards", str(c.nodes),
                    "--alpha", f"{c.alpha:g}", "--seed", str(c.seed), "--rounds", str(c.rounds),
                    "--behaviour", m.behaviour, "--poll", "0.1", "--max-poll", f"{max_poll:g}", "--no-progress",
                    *(["--relay"] if c.relay else []),
                )  # fmt: skip
                nodes.append(self.children.start(m.name, argv, key_env))
            how = "each in its own process"
        else:
            from lab.members import HostedMember, HostPlan

            plans = data_dir / "hosts"
            plans.mkdir(exist_ok=True)
            for h, group in enumerate(hosts, start=1):
                plan = HostPlan(
                    members=tuple(
                        HostedMember(
                            members[i].name,
                            data_dir / "keys" / f"{members[i].name}.key",
                            i,
                            members[i].behaviour,
                        )
                        for i in group
                    ),
                    shards=c.nodes,
                    log_dir=data_dir / "logs",
                    recipe=None if c.recipe is None else c.recipe_name,
                    model=c.model if c.recipe is None else None,
                    alpha=c.alpha,
                    seed=c.seed,
                    rounds=c.rounds,
                    relay=c.relay,
                    poll_s=0.1,
                    max_poll_s=max_poll,
                )
                path = plans / f"members-{h}.json"
                path.write_text(plan.to_json())
                argv = [sys.executable, "-m", "lab.members", str(path)]
                nodes.append(self.children.start(f"members-{h}", argv, env))
            how = f"in {len(hosts)} processes of up to {max(len(g) for g in hosts)} (lab.members)"
        bad = [m for m in members if m.malicious]
        self.say(
            f"started {len(members)} member(s) {how}"
            + (f"; {', '.join(m.name for m in bad)} {c.behaviour}" if bad else ", all honest")
        )
        return nodes

    # ─── following the rounds ───────────────────────────────────────────────────────────────────────────────
    def _follow(
        self,
        settings: Settings,
        record: DeploymentRecord,
        members: list[Member],
        workers: list[Child],
        nodes: list[Child],
    ) -> list[RoundResult]:
        from lab.demo_report import print_round
        from ledger.chain.client import LedgerClient

        client = LedgerClient.from_settings(settings, read_only=True)
        by_address = {m.address: m for m in members}
        tracker = RoundTracker(record.task_id, by_address)
        _, test = self._data(0, 1)  # the recipe's test set (member 0 of 1: the whole pool)
        results: list[RoundResult] = []
        scanned = record.deploy_block - 1
        timeout = self.config.timeout_s or 600.0
        deadline = time.monotonic() + timeout
        ticked = 0.0
        while len(results) < self.config.rounds:
            raise_if_interrupted()  # one whose exception a __del__ swallowed
            self._check_children(workers, nodes)
            if time.monotonic() - ticked >= 1.0:
                ticked = time.monotonic()
                self._tick(client)
            head = client.block_number()
            if head > scanned:
                for event in client.events(scanned + 1, head):
                    result = tracker.add(event)
                    if result is not None and len(results) < self.config.rounds:
                        finished = self._block_time(client, event.block_number)
                        opened = tracker.opened.get(result.round, finished)
                        result.seconds = max(0, finished - opened)
                        result.stages = self._stages(client, tracker, result.round, opened, finished)
                        self._evaluate(settings, result, test, results)
                        results.append(result)
                        print_round(self.console, result, by_address)
                        self._check_quorum(result, workers)
                scanned = head
            if time.monotonic() > deadline:
                raise DemoFailed(
                    f"{len(results)} of {self.config.rounds} rounds finalized within {timeout:.0f} s",
                    "\n".join(f"--- {c.name} ---\n{c.tail(8)}" for c in [*workers, *nodes]),
                )
            time.sleep(0.2)
        return results

    def _check_quorum(self, result: RoundResult, workers: list[Child]) -> None:
        """Stop the demo when fewer validators revealed than the quorum: the demo starts at least a quorum of them
        (``DemoConfig.validate``), so they failed, nothing could be accepted, and every later round would fail
        alike. Before, a recipe whose reference training failed on the validators' slices ran every round with
        every validator absent and the demo exited 0."""
        revealed = sum(not v.absent for v in result.validators)
        if revealed >= self.config.quorum:
            return
        validators = [c for c in workers if c.name.startswith("validator-")]  # which one failed is in its log
        raise DemoFailed(
            f"round {result.round}: {revealed} of {len(result.validators)} validators revealed their scores, fewer "
            f"than the quorum of {self.config.quorum}, so no update could be accepted",
            "\n".join(f"--- {c.name} ---\n{_last_error(c.tail(200))}" for c in validators),
            log=validators[0].log if validators else None,
        )

    @staticmethod
    def _tick(client: LedgerClient) -> None:
        """Mine an empty block on the demo's anvil once a second, as a real chain (and the compose anvil's
        ``--block-time 1``) produces blocks: anvil mines only on demand, and a transaction whose window ended by
        time alone (a validator down: the commit window) is judged against the latest block's clock."""
        client.rpc(lambda: client.w3.provider.make_request("evm_mine", []))  # type: ignore[arg-type]

    def _stages(
        self, client: LedgerClient, tracker: RoundTracker, round_: int, opened: int, finished: int
    ) -> dict[str, float]:
        """How long each stage of the round took in chain time (see :attr:`RoundResult.stages`)."""
        stages: dict[str, float] = {}
        previous = opened
        for stage, block in tracker.stage_blocks(round_).items():
            at = self._block_time(client, block)
            stages[stage] = float(max(0, at - previous))
            previous = at
        stages["finalize"] = float(max(0, finished - previous))
        return stages

    @staticmethod
    def _block_time(client: LedgerClient, number: int) -> int:
        return int(client.rpc(lambda: client.w3.eth.get_block(number))["timestamp"])

    def _check_children(self, workers: list[Child], nodes: list[Child]) -> None:
        for child in workers:
            if not child.alive():
                raise DemoFailed(
                    f"{child.name} exited with code {child.returncode}", child.tail(), log=child.log
                )
        for child in nodes:
            code = child.returncode
            if code not in (None, 0):
                raise DemoFailed(f"{child.name} exited with code {code}", child.tail(), log=child.log)

    def _evaluate(self, settings: Settings, result: RoundResult, test: Any, done: list[RoundResult]) -> None:
        """The aggregate's accuracy on the test split (the previous value when the model carried over)."""
        if done and result.aggregate == done[-1].aggregate:
            result.accuracy, result.loss = done[-1].accuracy, done[-1].loss
            result.metrics = dict(done[-1].metrics)
            return
        from ledger.content import open_store
        from node.basemodel import fetch_base, load_weights
        from node.statedict import load_numpy_state

        store = open_store(settings)
        try:
            path = fetch_base(
                store, result.aggregate, settings.data_dir / "models", round_=result.round,
                max_bytes=settings.max_update_bytes,
            )  # fmt: skip
        finally:
            store.close()
        assert self.recipe is not None
        model = self.recipe.build_model(self.config.seed)
        load_numpy_state(model, load_weights(path, result.aggregate))
        metrics = self.recipe.evaluate(model, test)
        result.metrics = metrics
        result.loss = metrics["loss"]
        result.accuracy = metrics.get("accuracy")

    def _finish_members(self, nodes: list[Child]) -> None:
        """Members exit by themselves once they have their last verdict; stop any that does not."""
        assert self.children is not None
        if not self.children.wait(nodes, 20.0):
            self.say("some members did not exit after their last round; stopping them")
        self.children.stop(nodes)

    # ─── the summary ────────────────────────────────────────────────────────────────────────────────────────
    def _summarise(
        self,
        settings: Settings,
        record: DeploymentRecord,
        members: list[Member],
        rounds: list[RoundResult],
        anvil_url: str,
    ) -> dict[str, Any]:
        from ledger.chain.client import LedgerClient

        began = time.monotonic()
        client = LedgerClient.from_settings(settings, read_only=True)
        final_round = rounds[-1]
        final = self._audit(settings, client, record.task_id, final_round)
        self.timings["audit"] = time.monotonic() - began
        began = time.monotonic()
        baseline = self._baseline()
        self.timings["baseline"] = time.monotonic() - began
        validators = validator_totals(list(record.consortium.get("validators", [])), rounds, client)
        c = self.config
        reached = next((r.round for r in rounds if (r.accuracy or 0) >= 0.95), None)
        return {
            "demo": {
                "nodes": c.nodes,
                "rounds": c.rounds,
                "malicious": c.malicious,
                "behaviour": c.behaviour,
                "rule": c.rule,
                "model": c.model,
                "recipe": c.recipe,
                "alpha": c.alpha,
                "seed": c.seed,
                "validators": c.validators,
                "validators_down": c.validators_down,
                "lying_validators": c.lying_validators,
                "quorum": c.quorum,
                "windows_s": {
                    "submission": c.submission_window_s,
                    "commit": c.commit_window_s,
                    "reveal": c.reveal_window_s,
                    "finalize_grace": c.finalize_grace_s,
                },
                "relay": c.relay,
                "loss_delta": c.loss_delta,
                "zscore": c.zscore,
            },
            "data_dir": str(settings.data_dir),
            "summary_file": str(settings.data_dir / SUMMARY),
            "chain": {
                "rpc_url": anvil_url,
                "chain_id": record.chain_id,
                "ledger": record.ledger,
                "token": record.token,
                "task_id": record.task_id,
                "deploy_block": record.deploy_block,
            },
            "recipe": self._recipe_summary(),
            "members": member_totals(members, rounds),
            "validators": validators,
            "rounds": [r.to_dict() for r in rounds],
            "final": final,
            "baseline": baseline,
            "rounds_to_95": reached,
            "processes": {
                "started": len(self.children.children) if self.children else 0,
                "members": self.member_processes,
            },
            "next": next_commands(settings.data_dir, final["model"]),
        }

    def _recipe_summary(self) -> dict[str, Any]:
        """The task's recipe (name, version, hash of its files, where it was loaded from) and the specification
        anchored on chain (its CID and content)."""
        assert self.recipe is not None
        assert self.spec is not None
        return {
            **self.recipe.ref.to_dict(),
            "source": str(self.recipe.source),
            "spec": {"cid": self.spec_cid, **self.spec.to_dict()},
        }

    def _baseline(self) -> dict[str, Any]:
        """The same model trained centrally on the pooled training set with the members' budget (``rounds`` ×
        ``epochs``): ``lab.central`` for the builtin digits models (as before recipes), the recipe's own training
        and ``evaluate`` for any other recipe."""
        c = self.config
        if c.recipe is None:
            from lab.central import train_central

            central = train_central(c.model, rounds=c.rounds, seed=c.seed)
            return {
                "model": central.model,
                "accuracy": central.accuracy,
                "epochs": central.epochs,
                "seconds": round(central.seconds, 2),
            }
        recipe = self.recipe
        assert recipe is not None
        assert self.spec is not None
        began = time.monotonic()
        train, test = self._data(0, 1)
        settings = recipe.merged_settings(self.spec.hyperparameters)
        epochs = int(settings.get("epochs", 1)) * c.rounds
        settings.update(epochs=epochs, seed=c.seed)
        model = recipe.build_model(c.seed)
        try:
            recipe.fit(model, train, settings)
            metrics = recipe.evaluate(model, test)
        except Exception as exc:  # the recipe's own code: the run and its audit stand without a baseline
            detail = f"{type(exc).__name__}: {exc}"
            self.say(f"the central baseline failed ({detail}); the summary has none")
            return {"model": recipe.name, "accuracy": None, "loss": None, "epochs": epochs, "error": detail}
        return {
            "model": recipe.name,
            "accuracy": metrics.get("accuracy"),
            "loss": metrics["loss"],
            "metrics": metrics,
            "epochs": epochs,
            "seconds": round(time.monotonic() - began, 2),
        }

    def _audit(
        self, settings: Settings, client: LedgerClient, task_id: int, final: RoundResult
    ) -> dict[str, Any]:
        """The final model's lineage and `audit verify` of its file, by the auditor's own code (index synced)."""
        from ledger.audit import reports
        from ledger.audit.source import open_source
        from ledger.content import digest_to_cid

        model_file = settings.data_dir / "models" / f"{final.aggregate}.safetensors"
        final_copy = settings.data_dir / "final-model.safetensors"
        shutil.copyfile(model_file, final_copy)
        source = open_source(settings, sync=True)
        try:
            lineage = reports.lineage(source, final.aggregate)
            verify = reports.verify(source, final_copy, task_id=task_id, round_=final.round)
        finally:
            source.close()
        first = lineage.lineages[0] if lineage.lineages else None
        steps = []
        for r in (first.rounds if first else [])[::-1]:
            steps.append(
                {
                    "round": r.round,
                    "base": digest_to_cid(r.base_digest),
                    "aggregate": digest_to_cid(r.aggregate_digest) if r.aggregate_digest else None,
                    "accepted": len(r.accepted_indexes),
                    "submissions": r.submission_count if r.submission_count is not None else len(r.updates),
                }
            )
        anchors = verify.anchors
        anchored_as = (
            ", ".join(
                f"{a.role} of task {a.task_id}" + (f" round {a.round}" if a.round else "") for a in anchors
            )
            or "not anchored"
        )
        return {
            "model": final.aggregate,
            "file": str(final_copy),
            "round": final.round,
            "accuracy": final.accuracy,
            "loss": final.loss,
            "metrics": final.metrics,
            "recipe": self.recipe.ref.to_dict() if self.recipe is not None else None,
            "lineage": {
                "verified": lineage.verified,
                "exit_code": int(lineage.exit_code),
                "depth": first.depth if first else 0,
                "genesis": digest_to_cid(first.task.genesis_digest) if first else None,
                "problems": list(first.problems) if first else [],
                "rounds": steps,
            },
            "verify": {
                "status": verify.status,
                "exit_code": int(verify.exit_code),
                "cid": verify.cid,
                "expected_from": verify.expected_from,
                "anchored_as": anchored_as,
            },
        }
