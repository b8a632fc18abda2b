"""`meshprov lab hosts`: hosts as network namespaces, content only over the gateway, and cleanup on every exit.

The namespace tests need root and `ip` (CI runs as root); elsewhere they are skipped with the reason. The end-to-end
run is the smallest the harness allows (3 members, 2 validators, 2 aggregators, 2 rounds, short windows)."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lab.host_postgres import server_binaries
from lab.host_postgres import unavailable_reason as postgres_unavailable_reason
from lab.hosts import HostsConfig, HostsLab, cleanup_directory, host_argv, plan_hosts, prepare_directory
from lab.netns import (
    NamespacesUnavailable,
    create_network,
    existing_namespaces,
    namespace_pids,
    pick_subnet,
    unavailable_reason,
)
from ledger.errors import ConfigError

REASON = unavailable_reason()
_SKIP = pytest.mark.skipif(REASON is not None, reason=f"cannot make network namespaces: {REASON}")


F = TypeVar("F", bound=Callable[..., Any])


def needs_netns(test: F) -> F:
    """Marked `hosts`, and skipped with the reason where namespaces cannot be made (not root, no `ip`)."""
    marked: F = pytest.mark.hosts(_SKIP(test))
    return marked


def _ours(tag: str) -> list[str]:
    return [ns for ns in existing_namespaces() if ns.startswith(f"mp-{tag}-")]


# ─── without namespaces ───────────────────────────────────────────────────────────────────────────────────


def test_plan_has_every_role_on_its_own_host_and_validators_of_different_organisations() -> None:
    plans = plan_hosts(HostsConfig(members=6, validators=3))
    names = [p.name for p in plans]
    assert len(names) == len(set(names)) == 13
    roles = {p.name: p.roles[0] for p in plans}
    assert [n for n, r in roles.items() if r == "chain"] == ["chain"]
    assert sum(r == "aggregator" for r in roles.values()) == 2
    assert sum(r == "member" for r in roles.values()) == 6
    validator_orgs = [p.organisation for p in plans if p.roles[0] == "validator"]
    assert len(set(validator_orgs)) == 3
    assert not next(p for p in plans if p.name == "chain").gateway  # the chain host holds no content


@pytest.mark.parametrize(
    ("change", "option"),
    [
        ({"members": 2}, "--members"),
        ({"validators": 1}, "--validators"),
        ({"aggregators": 1}, "--aggregators"),
        ({"rounds": 0}, "--rounds"),
        ({"quorum": 3}, "--quorum"),
        ({"commit_window_s": 1}, "--commit-window"),
    ],
)
def test_bad_configuration_is_refused_before_anything_is_made(change: dict[str, int], option: str) -> None:
    with pytest.raises(ConfigError, match=option):
        HostsConfig(**change).validate()  # type: ignore[arg-type]


def test_postgres_binaries_are_found_only_where_every_one_is_executable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    partial, whole = tmp_path / "partial", tmp_path / "whole"
    for directory, names in (
        (partial, ["initdb", "postgres"]),
        (whole, ["initdb", "postgres", "pg_isready", "createdb"]),
    ):
        directory.mkdir()
        for name in names:
            (directory / name).write_text("#!/bin/sh\n")
            (directory / name).chmod(0o755)
    empty_path = {"PATH": str(tmp_path / "nowhere")}
    assert server_binaries({**empty_path, "MESHPROV_POSTGRES_BIN": str(whole)}) == whole
    found = server_binaries({**empty_path, "MESHPROV_POSTGRES_BIN": str(partial)})
    assert found != partial  # incomplete: Debian's directory, or nothing


def test_index_postgres_without_a_server_is_refused_and_auto_falls_back_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import lab.host_postgres

    monkeypatch.setattr(lab.host_postgres, "server_binaries", lambda environ=None: None)
    with pytest.raises(ConfigError, match="--index postgres: no PostgreSQL server binaries"):
        HostsConfig(index="postgres").validate()
    backend, why = HostsConfig(index="auto").index_backend()
    assert backend == "sqlite"
    assert why is not None
    assert "apt install postgresql" in why
    with pytest.raises(ConfigError, match="--index must be one of"):
        HostsConfig(index="mysql").validate()


def test_subnet_avoids_every_network_in_use() -> None:
    used = [ipaddress.IPv4Network("10.231.0.0/24"), ipaddress.IPv4Network("10.231.1.128/25")]
    assert str(pick_subnet(used)) == "10.231.2.0/24"


def test_a_subnet_that_covers_the_whole_range_is_refused() -> None:
    with pytest.raises(NamespacesUnavailable, match="in use"):
        pick_subnet([ipaddress.IPv4Network("10.0.0.0/8")])


def test_a_foreign_non_empty_directory_is_refused_not_deleted(tmp_path: Path) -> None:
    (tmp_path / "precious").write_text("x")
    with pytest.raises(ConfigError, match="refusing to delete"):
        prepare_directory(tmp_path)
    assert (tmp_path / "precious").read_text() == "x"


def test_without_root_the_command_says_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("lab.netns.unavailable_reason", lambda: "network namespaces need root")
    with pytest.raises(NamespacesUnavailable, match="need root"):
        HostsLab(HostsConfig(data_dir=tmp_path / "lab")).run()
    assert not (tmp_path / "lab").exists()


# ─── namespaces ───────────────────────────────────────────────────────────────────────────────────────────


@needs_netns
def test_hosts_reach_each_other_and_nothing_else_and_removal_leaves_nothing(tmp_path: Path) -> None:
    net = create_network(["a", "b"], tmp_path / "netns.json")
    try:
        addresses = [h.address for h in net.hosts]
        assert len(set(addresses)) == 2
        assert all(ipaddress.ip_address(a) in ipaddress.ip_network(net.subnet) for a in addresses)
        server = subprocess.Popen(
            [*net.exec_prefix("b"), sys.executable, "-c",
             f"import socket; s = socket.create_server(('{addresses[1]}', 9000)); c, _ = s.accept(); c.send(b'hi')"],
        )  # fmt: skip
        time.sleep(0.5)
        client = (
            f"import socket, time\nfor _ in range(50):\n    try:\n"
            f"        print(socket.create_connection(('{addresses[1]}', 9000), timeout=2).recv(2).decode()); break\n"
            f"    except OSError: time.sleep(0.1)\n"
        )
        assert subprocess.run([*net.exec_prefix("a"), sys.executable, "-c", client], capture_output=True,
                              text=True, timeout=30, check=False).stdout.strip() == "hi"  # fmt: skip
        server.wait(10)
        # No default route: an address outside the lab is unreachable at once (no packet leaves).
        outside = subprocess.run(
            [*net.exec_prefix("a"), sys.executable, "-c",
             "import socket; socket.create_connection(('198.51.100.1', 80), timeout=2)"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert "Network is unreachable" in outside.stderr
        routes = subprocess.run(
            [*net.exec_prefix("a"), "ip", "route"], capture_output=True, text=True, check=False
        ).stdout
        assert "default" not in routes
    finally:
        removed = net.remove()
    assert set(removed) == set(net.namespaces)
    assert _ours(net.tag) == []
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=False).stdout
    assert f"mp{net.tag}" not in links  # nothing of the lab ever was in the root namespace


@needs_netns
def test_a_host_sees_its_own_directory_and_not_another_hosts(tmp_path: Path) -> None:
    for host in ("a", "b"):
        (tmp_path / "hosts" / host).mkdir(parents=True)
        (tmp_path / "hosts" / host / "secret").write_text(f"{host}'s key")
    (tmp_path / "ctl").mkdir()
    (tmp_path / "ctl" / "keys").write_text("everyone's keys")
    net = create_network(["a", "b"])
    try:
        read = "import sys; print(open(sys.argv[1]).read())"

        def as_a(path: Path) -> subprocess.CompletedProcess[str]:
            argv = host_argv(
                tmp_path, "a", ["a", "b"], net.host("a").namespace, [sys.executable, "-c", read, str(path)]
            )
            return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)

        assert as_a(tmp_path / "hosts" / "a" / "secret").stdout.strip() == "a's key"
        assert "No such file" in as_a(tmp_path / "hosts" / "b" / "secret").stderr
        assert "No such file" in as_a(tmp_path / "ctl" / "keys").stderr
    finally:
        net.remove()
    assert (tmp_path / "hosts" / "b" / "secret").read_text() == "b's key"  # hidden, not touched


@needs_netns
@pytest.mark.anvil
@pytest.mark.redis
@pytest.mark.parametrize("step", ["network", "services"])
def test_an_interrupt_removes_every_namespace_and_process(tmp_path: Path, step: str) -> None:
    lab = HostsLab(HostsConfig(data_dir=tmp_path / "lab"))
    lab._interrupt_after = step
    with pytest.raises(KeyboardInterrupt):
        lab.run()
    assert lab.net is not None
    assert _ours(lab.net.tag) == []
    assert lab.children is not None
    assert all(not c.record.alive() for c in lab.children.children)
    if step == "services":
        assert {c.name.split(".")[1] for c in lab.children.children} >= {"anvil", "redis", "gateway"}


@needs_netns
@pytest.mark.anvil
def test_what_a_killed_run_left_is_removed_by_the_next(tmp_path: Path) -> None:
    data_dir = tmp_path / "lab"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledger.cli.app", "lab", "hosts", "--data-dir", str(data_dir)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    registry = data_dir / "ctl" / "netns.json"
    try:
        deadline = time.monotonic() + 60
        while not (data_dir / "ctl" / "processes.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert registry.exists()
        time.sleep(1)
        proc.send_signal(signal.SIGKILL)  # no cleanup runs
        proc.wait(10)
        tag = json.loads(registry.read_text())["tag"]
        assert _ours(tag), "the killed run left its namespaces"
        left = cleanup_directory(data_dir)
        assert left["namespaces"]
        assert _ours(tag) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        cleanup_directory(data_dir)


@needs_netns
@pytest.mark.anvil
@pytest.mark.redis
def test_sigterm_stops_the_lab_with_everything_removed(tmp_path: Path) -> None:
    data_dir = tmp_path / "lab"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledger.cli.app", "lab", "hosts", "--data-dir", str(data_dir)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        processes = data_dir / "ctl" / "processes.json"
        while time.monotonic() < deadline:
            if processes.exists() and len(json.loads(processes.read_text() or "[]")) >= 5:
                break
            time.sleep(0.2)
        tag = json.loads((data_dir / "ctl" / "netns.json").read_text())["tag"]
        started = json.loads(processes.read_text())
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            cleanup_directory(data_dir)
    assert proc.returncode == 130, err
    assert _ours(tag) == []
    for rec in started:  # pid and start time: never a reused pid
        from ledger.dev.services import proc_start_time

        assert proc_start_time(rec["pid"]) != rec["start_time"], rec["name"]


@needs_netns
@pytest.mark.slow
@pytest.mark.anvil
@pytest.mark.redis
def test_two_rounds_across_hosts_finalized_once_with_every_fetched_block_verified(tmp_path: Path) -> None:
    """Round 1 clean; round 2 with every fault at once, put in while the driver holds the chain's mining after round 1
    (lab.host_driver): the last validator's link down until 10 s into round 2's commit phase,
    the aggregator that finalized round 1 killed with its host (its gateway gone: round 1's aggregate, round 2's
    base, must come from a replica), member-1's gateway killed once the operator's replica has the updates."""
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "ledger.cli.app", "lab", "hosts", "--members", "3", "--validators", "3",
         "--fault", "validator-link", "--fault", "aggregator-kill", "--fault", "member-store",
         "--rounds", "2", "--submission-window", "60", "--commit-window", "30", "--reveal-window", "20",
         "--finalize-grace", "20", "--timeout", "400", "--data-dir", str(tmp_path / "lab"), "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    summary = json.loads(out.stdout)
    hosts = summary["hosts"]
    assert len(hosts) >= 8
    assert len({h["address"] for h in hosts}) == len(hosts)
    assert {h["namespace"] for h in hosts}.isdisjoint(existing_namespaces())  # all removed
    roles = [h["roles"][0] for h in hosts]
    assert (roles.count("validator"), roles.count("aggregator"), roles.count("member")) == (3, 2, 3)
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    for r in summary["rounds"]:
        r["faults"] = summary["faults"]  # shown when an assertion below fails
        assert r["finalized"] == 1, r
        assert r["submissions"] == 3, r
        assert r["accepted"] >= 2, r  # the members' updates crossed hosts and were judged
        assert not r["carried_over"], r  # nothing lost: round 2 aggregated its updates despite the faults
    assert summary["rounds"][0]["aggregate"] != summary["chain"]["genesis"]
    blocks = summary["blocks"]
    assert blocks["verified"] > 0
    assert blocks["refused"] == 0
    assert blocks["fetched_from_other_hosts"] == blocks["verified"]
    assert blocks["requests_served_to_other_hosts"] > 0
    index = summary["index"]  # the operator's followed index = one rebuilt from the chain alone
    assert index["equal"], index
    assert index["events"] > 0
    operator = next(h for h in hosts if h["name"] == "operator")
    if postgres_unavailable_reason() is None:  # its own PostgreSQL on its own address, password required
        assert index["backend"] == "postgresql", index
        assert index["url"].startswith(f"postgresql+psycopg://meshprov@{operator['address']}:5432/"), index
        refusals = summary["isolation"]["postgres"]["operator"].split("; ")
        assert [r.split(":")[0] for r in refusals] == ["refused", "refused"], refusals
        assert "password authentication failed" in refusals[1]  # the server checked, not only the client
    else:
        assert index["backend"] == "sqlite", index
        assert index["why_not_postgresql"], index
    dashboard = summary["dashboard"]  # served on the operator's address, read over the lab network
    assert dashboard["url"] == f"http://{operator['address']}:8787"
    assert dashboard["fetched_from"] == "member-1"
    assert dashboard["equal"], dashboard
    assert [(r["round"], r["aggregate"]) for r in dashboard["rounds"]] == [
        (r["round"], r["aggregate"]) for r in summary["rounds"]
    ]
    assert dashboard["contributors"] == 3
    faults = {f["fault"]: f for f in summary["faults"]}
    assert set(faults) == {"validator-link", "aggregator-kill", "member-store"}
    assert all(f["round"] == 2 and f["finalized"] == 1 for f in faults.values())
    killed = faults["aggregator-kill"]
    assert killed["address"] == summary["rounds"][0]["by"]  # the one holding round 2's base
    assert killed["finalized_by_another"]
    assert summary["rounds"][1]["by"] != killed["address"]
    for validator in ("val-1", "val-2"):
        assert blocks["by_host"][validator]["verified"] >= 3  # at least every member's update once
    isolation = summary["isolation"]
    assert all(v.startswith("refused") for v in isolation["redis"].values()), isolation
    assert set(isolation["redis"]) == {"operator", "val-1", "val-2", "val-3"}
    assert (
        len(isolation["admin"]) == len(hosts) - 2
    )  # every gateway but the prober's own (the chain has none)
    assert all(v.startswith("refused") for v in isolation["admin"].values()), isolation
    assert all(entries == [] for entries in isolation["dirs"].values()), isolation
    assert summary["cleanup"] == {
        "namespaces_left": [],
        "namespaces_removed": len(hosts) + 1,
        "processes_left": [],
    }
    for h in hosts:
        assert not namespace_pids(h["namespace"])
    print(f"lab hosts (3 members, 2 rounds) took {time.monotonic() - started:.1f} s")
    assert os.path.exists(summary["data_dir"])
