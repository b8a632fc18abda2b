"""Many members in one process, for runs with more members than the machine has room for processes.

A `meshprov node run` process imports torch and holds ≈ 400 MB; a hundred of them do not fit two cores (issue 15:
16 of them missed every window). ``python -m lab.members PLAN.json`` hosts several members instead, each exactly
as its own `meshprov node run` would be: its own key and :class:`~ledger.chain.sender.TxSender` (its own nonces),
its own chain connection, store handle and journal (``<data_dir>/node/<address>/``), its own shard of the data and
its own log (``logs/<name>.log``), in its own thread running the same :class:`~node.runner.NodeRunner`.

What members of one process share is the process itself: the interpreter, torch (one thread:
``torch.set_num_threads(1)``, the host processes are the parallelism) and a lock under which they load their data
and train one at a time, because torch's global RNG is seeded per training (``node.recipe``): two trainings at once
would change each other's updates. Waiting, submitting, publishing and polling run concurrently.

The plan (JSON) names the shared options and the members::

    {"task": 1, "recipe": "digits", "shards": 32, "alpha": 0.5, "seed": 0, "rounds": 2, "relay": false,
     "poll_s": 0.1, "max_poll_s": 2.0, "log_dir": "…/logs",
     "members": [{"name": "node-1", "key_file": "…/keys/node-1.key", "shard": 0, "behaviour": "honest"}, …]}

Settings (chain, store, Redis, data directory) come from the environment, as for `meshprov node run`. The process
exits 0 once every member has done its rounds; when one member fails, the others are stopped and the process
exits with that member's exit code (its error is the last line of its log and of this process's output). SIGTERM
stops every member after its current step, exit 0.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ledger.errors import ConfigError, MeshprovError

MAX_PLAN_BYTES = 4 * 1024 * 1024
"""A plan is a few hundred bytes per member; anything larger is not one."""


@dataclass(frozen=True)
class HostedMember:
    name: str
    key_file: Path
    shard: int
    behaviour: str = "honest"


@dataclass(frozen=True)
class HostPlan:
    members: tuple[HostedMember, ...]
    shards: int
    log_dir: Path
    task: int = 1
    recipe: str | None = None
    model: str | None = None
    alpha: float | None = None
    seed: int = 0
    rounds: int | None = None
    relay: bool = False
    poll_s: float = 0.25
    max_poll_s: float = 2.0

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "task": self.task,
            "recipe": self.recipe,
            "model": self.model,
            "shards": self.shards,
            "alpha": self.alpha,
            "seed": self.seed,
            "rounds": self.rounds,
            "relay": self.relay,
            "poll_s": self.poll_s,
            "max_poll_s": self.max_poll_s,
            "log_dir": str(self.log_dir),
            "members": [
                {"name": m.name, "key_file": str(m.key_file), "shard": m.shard, "behaviour": m.behaviour}
                for m in self.members
            ],
        }
        return json.dumps(data, indent=2)

    @classmethod
    def read(cls, path: Path) -> HostPlan:
        try:
            with path.open("rb") as f:
                raw = f.read(MAX_PLAN_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read the member plan {path}: {exc.strerror}") from None
        if len(raw) > MAX_PLAN_BYTES:
            raise ConfigError(f"the member plan {path} is larger than {MAX_PLAN_BYTES} bytes")
        try:
            data = json.loads(raw)
            members = tuple(
                HostedMember(
                    str(m["name"]), Path(m["key_file"]), int(m["shard"]), str(m.get("behaviour", "honest"))
                )
                for m in data["members"]
            )
            plan = cls(
                members=members,
                shards=int(data["shards"]),
                log_dir=Path(data["log_dir"]),
                task=int(data.get("task", 1)),
                recipe=data.get("recipe"),
                model=data.get("model"),
                alpha=None if data.get("alpha") is None else float(data["alpha"]),
                seed=int(data.get("seed", 0)),
                rounds=None if data.get("rounds") is None else int(data["rounds"]),
                relay=bool(data.get("relay", False)),
                poll_s=float(data.get("poll_s", 0.25)),
                max_poll_s=float(data.get("max_poll_s", 2.0)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"the member plan {path} is not valid: {type(exc).__name__}: {exc}") from None
        names = [m.name for m in members]
        if not members or len(set(names)) != len(names):
            raise ConfigError(f"the member plan {path} needs members with distinct names")
        if any(not 0 <= m.shard < plan.shards for m in members):
            raise ConfigError(f"the member plan {path} has a shard outside 0..{plan.shards - 1}")
        return plan


def cache_federations() -> None:
    """Make ``node.data.make_federation`` compute each split once per process.

    The digits recipes' ``data(member, members, seed, alpha)`` splits the whole training set anew for every member
    it is asked for, by rejection sampling (every member at least 10 samples): for 40-100 members at α = 0.5 one
    split takes 2-20 s here, and a process hosting 50 members would pay it 50 times. The split is a pure function
    of its arguments and its result is only read (a member's data is a copy, ``Dataset.subset``), so one cached
    value serves every member of the process."""
    import functools

    import node.data

    if not hasattr(node.data.make_federation, "cache_info"):
        node.data.make_federation = functools.lru_cache(maxsize=8)(node.data.make_federation)


class MemberFailed(Exception):
    def __init__(self, name: str, error: BaseException) -> None:
        self.name = name
        self.error = error
        super().__init__(f"{name}: {type(error).__name__}: {error}")


def run_host(plan: HostPlan, *, stop: threading.Event | None = None, out: TextIO = sys.stdout) -> int:
    """Run every member of ``plan`` in its own thread until each has done its rounds; the exit code."""
    from ledger.settings import load_settings

    try:
        import torch

        torch.set_num_threads(1)  # the host processes are the parallelism; more threads only contend
    except ImportError:  # a recipe without torch: nothing to pin
        pass
    cache_federations()
    settings = load_settings()
    stop = stop or threading.Event()
    lock = threading.Lock()
    failures: list[MemberFailed] = []
    plan.log_dir.mkdir(parents=True, exist_ok=True)

    def member(m: HostedMember) -> None:
        with (plan.log_dir / f"{m.name}.log").open("a", encoding="utf-8", buffering=1) as log:

            def say(message: str) -> None:
                log.write(f"{time.strftime('%H:%M:%S')} {message}\n")

            try:
                _run_member(plan, m, settings=settings, lock=lock, stop=stop, say=say)
            except BaseException as exc:  # reported to the host, which stops the others and exits non-zero
                say(f"failed: {type(exc).__name__}: {exc}")
                failures.append(MemberFailed(m.name, exc))
                stop.set()

    threads = [threading.Thread(target=member, args=(m,), name=m.name, daemon=True) for m in plan.members]
    print(
        f"hosting {len(threads)} member(s): {', '.join(m.name for m in plan.members)}", file=out, flush=True
    )
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)
    if failures:
        first = failures[0]
        print(f"{first}", file=out, flush=True)
        error = first.error
        return int(error.exit_code) if isinstance(error, MeshprovError) else 1
    print("every member is done", file=out, flush=True)
    return 0


def _run_member(
    plan: HostPlan,
    m: HostedMember,
    *,
    settings: Any,
    lock: threading.Lock,
    stop: threading.Event,
    say: Any,
) -> None:
    from eth_account import Account

    from ledger.chain.client import LedgerClient
    from ledger.content import open_store
    from node.journal import Journal
    from node.runner import NodeOptions, NodeRunner

    key = settings.model_copy(update={"private_key_file": m.key_file}).signing_key()
    address = Account.from_key(key).address
    options = NodeOptions(
        task=plan.task,
        recipe=plan.recipe,
        model=plan.model,
        shard=m.shard,
        shards=plan.shards,
        alpha=plan.alpha,
        seed=plan.seed,
        rounds=plan.rounds,
        behaviour=m.behaviour,
        relay=plan.relay,
        poll_s=plan.poll_s,
        max_poll_s=max(plan.poll_s, plan.max_poll_s),
    )
    say(
        f"member {address}: task {plan.task}, shard {m.shard} of {plan.shards}, hosted with others (lab.members)"
    )
    client = LedgerClient.from_settings(settings, key=None if plan.relay else key, read_only=plan.relay)
    relay_redis = None
    if plan.relay:
        import redis

        relay_redis = redis.Redis.from_url(settings.redis_url, socket_timeout=30, socket_connect_timeout=5)
    store = open_store(settings)
    try:
        runner = NodeRunner(
            options,
            client=client,
            store=store,
            key=key,
            journal=Journal.for_member(settings.data_dir, address),
            max_update_bytes=settings.max_update_bytes,
            say=say,
            relay_redis=relay_redis,
            stop=stop,
            train_lock=lock,
        )
        records = runner.run()
        say(f"done: {', '.join(f'round {r.round} {r.status}' for r in records) or 'no rounds'}")
    finally:
        store.close()
        if relay_redis is not None:
            relay_redis.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lab.members PLAN.json", file=sys.stderr)
        return 2
    try:
        plan = HostPlan.read(Path(args[0]))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return run_host(plan, stop=stop)


if __name__ == "__main__":
    sys.exit(main())
