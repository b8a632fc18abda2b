"""The operator's admin process of a multi-host lab (``python -m lab.host_driver CONFIG``), run inside the
operator host's namespace by :mod:`lab.hosts`.

It is the only part of the lab that talks to the chain on the lab's behalf, so it runs where the operator does
(the harness itself stays in the root namespace, which has no route to the hosts):

1. waits for the chain host's anvil to answer;
2. puts the genesis model and the task's specification in the operator's own store (``<operator>/blocks``; the
   other hosts fetch them over the gateway) and deploys the consortium (``ledger.chain.deploy``, every aggregator
   address granted the role) — the record goes to ``<operator>/deployment.json``;
3. keeps a replica of every update and aggregate (:class:`Replica`), mines an empty block every second (anvil mines on demand; windows that end by time alone need a block, as in
   ``meshprov demo``) and follows ``RoundFinalized`` until the rounds asked for are finalized;
4. writes what it saw to ``<operator>/driver/rounds.json`` after every round, the live round and its phase to
   ``status.json`` four times a second; with ``hold_round`` set (a fault run), it stops the chain's mining once the
   round before it is finalized, writes ``hold`` and mines again once the harness wrote ``release`` (its faults are
   in place before the fault round's first submission is mined);
5. compares the operator's followed index with one rebuilt from the chain alone (``index.json``), then ``done``
   (or ``error``).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

STATE_DIR = "driver"


def _write(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def wait_for_chain(url: str, timeout: float) -> None:
    from ledger.dev.services import anvil_chain_id
    from ledger.errors import ServiceUnavailable

    deadline = time.monotonic() + timeout
    while True:
        try:
            anvil_chain_id(url, timeout=1.0)
            return
        except ServiceUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def deploy(config: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """Genesis and spec in the operator's store, then the consortium on chain; returns the deployment summary."""
    from ledger.chain.client import connect_web3
    from ledger.chain.consortium import parse_consortium
    from ledger.chain.deploy import deploy as chain_deploy
    from ledger.content.local_store import LocalStore
    from node.packaging import put_update, write_recipe_genesis
    from node.recipe import load_recipe, task_spec
    from node.task_bounds import sized_checks

    recipe = load_recipe(config["recipe"])
    store = LocalStore(data_dir / "blocks")
    seed, alpha, members = int(config["seed"]), float(config["alpha"]), int(config["members"])
    genesis = put_update(store, write_recipe_genesis(data_dir / "genesis.safetensors", recipe, seed))
    shards: list[tuple[Any, Any]] = [recipe.data(i, members, seed, alpha=alpha) for i in range(members)]
    sizes = [len(train) for train, _ in shards]
    # A recipe that is not a builtin gets its loss gate and scale bound sized (node.task_bounds); validators take
    # them from the specification.
    sized, said = sized_checks(recipe, seed=seed, shards=[train for train, _ in shards], test=shards[0][1])
    for line in said:
        print(f"task: {line}", file=sys.stderr, flush=True)
    spec = task_spec(
        recipe,
        members=members,
        seed=seed,
        alpha=alpha,
        checks={**config["checks"], **sized},
        dataset="sklearn digits (8x8), fixed split" if config["recipe"] in ("digits", "digits_cnn") else None,
    )
    spec_path = data_dir / "task-spec.json"
    spec_path.write_text(spec.to_json())
    spec_cid = store.put_file(spec_path)
    windows = config["windows"]
    document = {
        "admin": config["admin"][0],
        "aggregators": [a for a, _ in config["aggregators"]],
        "validators": [a for a, _ in config["validators"]],
        "contributors": [a for a, _ in config["contributors"]],
        "role_delay_s": 60,
        "task": {
            "spec": spec_cid,
            "genesis": genesis,
            "rule": "fedavg",
            "quorum": int(config["quorum"]),
            "submission_window_s": windows["submission"],
            "commit_window_s": windows["commit"],
            "reveal_window_s": windows["reveal"],
            "finalize_grace_s": windows["finalize_grace"],
            "max_samples": max(sizes),
            "reward_per_round": "1000",
        },
    }
    (data_dir / "consortium.json").write_text(json.dumps(document, indent=2))
    consortium = parse_consortium(document, "the multi-host lab")
    record = chain_deploy(connect_web3(config["rpc_url"]), config["admin"][1], consortium, timeout=60.0)
    record.write(data_dir / "deployment.json")
    return {"ledger": record.ledger, "task_id": record.task_id, "genesis": genesis, "spec": spec_cid}


class Replica:
    """The operator's replica (the lab's replication rule): every update submitted to the task and every aggregate
    is fetched from the other hosts' gateways once published, every block verified, and kept pinned in the
    operator's store, which its gateway serves — so an update stays fetchable after its author's host (or the
    aggregator's) goes offline. A thread, so a dead gateway's timeouts never hold up the driver's block a second."""

    def __init__(self, data_dir: Path, gateways: list[str], state: Path) -> None:
        from ledger.content.gateway import GatewayStore
        from ledger.content.local_store import LocalStore

        self.store = GatewayStore(LocalStore(data_dir / "blocks"), gateways, timeout=5.0)
        self.state = state
        self.pending: dict[str, str] = {}
        self.kept: dict[str, str] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="replica", daemon=True)
        self.thread.start()

    def want(self, cid: str, what: str) -> None:
        with self.lock:
            if cid not in self.kept:
                self.pending[cid] = what

    def _run(self) -> None:
        from ledger.errors import MeshprovError

        while not self.stop.wait(1.0):
            with self.lock:
                todo = list(self.pending.items())
            for cid, what in todo:
                try:
                    self.store.pin(cid)  # fetched from the gateways (verified) into the local store, pinned
                except MeshprovError:
                    continue  # not published yet, or its holders are unreachable: try again
                with self.lock:
                    self.pending.pop(cid, None)
                    self.kept[cid] = what
                    _write(self.state / "replica.json", {"kept": self.kept, "pending": self.pending})


def follow(config: dict[str, Any], data_dir: Path, state: Path, deployed: dict[str, Any]) -> None:
    from ledger.chain.client import LedgerClient, connect_web3
    from ledger.content import digest_to_cid

    replica = Replica(data_dir, list(config["gateways"]), state) if config.get("gateways") else None

    client = LedgerClient.connect(connect_web3(config["rpc_url"]), deployed["ledger"])
    task_id, wanted = int(deployed["task_id"]), int(config["rounds"])
    scanned = client.block_number()
    rounds: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + float(config["timeout_s"])
    hold_round = config.get("hold_round")
    while True:
        # Anvil mines on demand: a block a second keeps the ledger's clock moving (see the module docstring).
        client.rpc(lambda: client.w3.provider.make_request("evm_mine", []))  # type: ignore[arg-type]
        head = client.block_number()
        if head > scanned:
            for event in client.events(scanned + 1, head, names=["RoundFinalized", "UpdateSubmitted"]):
                if int(event.args["taskId"]) != task_id:
                    continue
                r = int(event.args["round"])
                entry = rounds.setdefault(r, {"round": r, "finalized": 0, "submissions": 0})
                if event.name == "UpdateSubmitted":
                    entry["submissions"] += 1
                    if replica is not None:
                        replica.want(digest_to_cid(bytes(event.args["digest"])), f"round {r} update")
                    continue
                entry["finalized"] += 1
                entry["aggregate"] = digest_to_cid(bytes(event.args["aggregateDigest"]))
                entry["by"] = str(event.args["by"])
                entry["carried_over"] = bool(event.args["carriedOver"])
                entry["accepted"] = bin(int(event.args["acceptedBitmap"])).count("1")
                if replica is not None and not entry["carried_over"]:
                    replica.want(entry["aggregate"], f"round {r} aggregate")
            scanned = head
            _write(state / "rounds.json", sorted(rounds.values(), key=lambda e: e["round"]))
        if hold_round is not None and rounds.get(int(hold_round) - 1, {}).get("finalized"):
            # The harness's faults go in while the chain mines nothing: the fault round's submissions wait in the
            # mempool, so no phase of it can pass before the faults are in place (lab.hosts._inject).
            client.rpc(lambda: client.w3.provider.make_request("evm_setAutomine", [False]))  # type: ignore[arg-type]
            _write(state / "hold", {"round": int(hold_round), "block": head})
            while not (state / "release").exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the harness did not release the chain before round {hold_round}")
                time.sleep(0.1)
            client.rpc(lambda: client.w3.provider.make_request("evm_setAutomine", [True]))  # type: ignore[arg-type]
            hold_round = None
            continue
        current = client.task(task_id).current_round
        view = client.round_view(task_id, current)
        # Where the chain stands, for the harness's fault injection (it has no route to the chain itself).
        _write(state / "status.json", {"round": current, "phase": view.phase.name, "block": head})
        if all(rounds.get(r, {}).get("finalized") for r in range(1, wanted + 1)):
            return
        if time.monotonic() > deadline:
            done = sum(1 for r in range(1, wanted + 1) if rounds.get(r, {}).get("finalized"))
            raise TimeoutError(f"{done} of {wanted} rounds finalized within {config['timeout_s']} s")
        time.sleep(0.25)  # the harness injects faults by this status: a short phase must not fall between two


def check_index(config: dict[str, Any], deployed: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """The operator's followed index (``meshprov index follow``) against one rebuilt from the chain's logs alone
    (``ledger.index.service.trustless``), table by table, once the follower reached the chain's head."""
    from ledger.chain.client import LedgerClient, connect_web3
    from ledger.index import service
    from ledger.index.db import IndexDB

    client = LedgerClient.connect(connect_web3(config["rpc_url"]), deployed["ledger"])
    head = client.block_number()
    deadline = time.monotonic() + timeout
    followed = None
    try:
        while True:
            try:
                followed = followed or IndexDB(config["index_url"], create=False)
                checkpoint = followed.checkpoint()
                if checkpoint is not None and checkpoint.block_number >= head:
                    break
            except Exception:  # the follower has not made its database yet  # noqa: S110
                pass
            if time.monotonic() > deadline:
                return {
                    "equal": False,
                    "error": f"the index follower did not reach block {head} in {timeout:.0f} s",
                }
            time.sleep(0.5)
        memory, result = service.trustless(client)
        mine, theirs = followed.dump(), memory.dump()
        memory.dispose()
    finally:
        if followed is not None:
            followed.dispose()
    differing = sorted(t for t in set(mine) | set(theirs) if mine.get(t) != theirs.get(t))
    return {
        "equal": not differing,
        "differing_tables": differing,
        "rows": sum(len(v) for v in mine.values()),
        "events": result.events,
        "head": head,
    }


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[0]).read_text())
    data_dir = Path(config["data_dir"])
    state = data_dir / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    if config.get("record"):
        from lab.host_exec import install_record

        install_record(config["record"])  # the replica's fetches count with every host's
    try:
        wait_for_chain(config["rpc_url"], 60.0)
        deployed = deploy(config, data_dir)
        _write(state / "deployed.json", deployed)
        follow(config, data_dir, state, deployed)
        if config.get("index_url"):
            _write(state / "index.json", check_index(config, deployed))
    except Exception as exc:  # reported to the harness through the file, and in the log
        (state / "error").write_text(f"{type(exc).__name__}: {exc}\n")
        raise
    (state / "done").write_text("ok\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
