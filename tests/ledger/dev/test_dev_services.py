"""`meshprov dev up | status | down`: real anvil and redis-server children, as a user runs them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from ledger.dev.services import proc_start_time

pytestmark = [pytest.mark.anvil, pytest.mark.redis]

# Runtime bytecode `PUSH1 42 PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN` behind a minimal constructor.
RUNTIME = "602a60005260206000f3"
INIT = "600a600c600039600a6000f3" + RUNTIME


def meshprov(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MESHPROV_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ledger.cli.app", "--json", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


def rpc(url: str, method: str, params: list[object] | None = None) -> object:
    reply = httpx.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}, timeout=5
    )
    return reply.json()["result"]


def our_pids(data_dir: Path) -> list[int]:
    """Live anvil or redis-server processes started for ``data_dir``.

    anvil's command line names its state file in the data dir; redis-server retitles itself to
    ``redis-server 127.0.0.1:PORT``, so it is found by its working directory instead.
    """
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        program = Path(argv[0].decode(errors="replace").split(" ")[0]).name
        if program in ("anvil", "redis-server") and (
            str(data_dir) in b" ".join(argv).decode(errors="replace") or cwd.startswith(str(data_dir))
        ):
            pids.append(int(proc.name))
    return pids


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "data"
    yield d
    meshprov(d, "dev", "down")  # never leave a child behind, whatever the test did


def test_up_gives_answering_services_within_5s_and_down_leaves_nothing(data_dir: Path) -> None:
    started = time.monotonic()
    up = meshprov(data_dir, "dev", "up")
    assert up.returncode == 0, up.stderr
    records = json.loads(up.stdout)
    assert time.monotonic() - started < 5.0
    anvil_url, redis_url = records["anvil"]["url"], records["redis"]["url"]
    assert anvil_url.startswith("http://127.0.0.1:")
    assert rpc(anvil_url, "eth_chainId") == "0x7a69"
    assert redis.Redis.from_url(redis_url).ping() is True
    assert json.loads((data_dir / "services.json").read_text())["anvil"]["url"] == anvil_url
    pids = [records["anvil"]["pid"], records["redis"]["pid"]]

    status = meshprov(data_dir, "dev", "status")
    assert status.returncode == 0
    assert all(row["answering"] for row in json.loads(status.stdout).values())

    down = meshprov(data_dir, "dev", "down")
    assert down.returncode == 0
    assert sorted(json.loads(down.stdout)["stopped"]) == ["anvil", "redis"]
    assert all(proc_start_time(pid) is None for pid in pids)
    assert our_pids(data_dir) == []
    assert not (data_dir / "services.json").exists()
    assert meshprov(data_dir, "dev", "status").returncode == 6


def test_up_is_idempotent(data_dir: Path) -> None:
    first = json.loads(meshprov(data_dir, "dev", "up").stdout)
    second = json.loads(meshprov(data_dir, "dev", "up").stdout)
    assert first["anvil"]["pid"] == second["anvil"]["pid"]
    assert first["redis"]["pid"] == second["redis"]["pid"]
    assert sorted(our_pids(data_dir)) == sorted([first["anvil"]["pid"], first["redis"]["pid"]])


def test_restart_keeps_the_chain_and_the_queue(data_dir: Path) -> None:
    records = json.loads(meshprov(data_dir, "dev", "up").stdout)
    url = records["anvil"]["url"]
    sender = rpc(url, "eth_accounts")[0]  # type: ignore[index]
    tx = rpc(url, "eth_sendTransaction", [{"from": sender, "data": "0x" + INIT}])
    receipt = rpc(url, "eth_getTransactionReceipt", [tx])
    address = receipt["contractAddress"]  # type: ignore[index]
    assert rpc(url, "eth_getCode", [address, "latest"]) == "0x" + RUNTIME
    queue = redis.Redis.from_url(records["redis"]["url"])
    queue.rpush("celery", b"task-1")
    queue.close()

    assert meshprov(data_dir, "dev", "down").returncode == 0
    restarted = json.loads(meshprov(data_dir, "dev", "up").stdout)
    new_url = restarted["anvil"]["url"]
    assert rpc(new_url, "eth_getCode", [address, "latest"]) == "0x" + RUNTIME
    assert int(rpc(new_url, "eth_blockNumber"), 16) >= int(receipt["blockNumber"], 16)  # type: ignore[index, arg-type]
    assert redis.Redis.from_url(restarted["redis"]["url"]).lrange("celery", 0, -1) == [b"task-1"]


def test_restarts_a_service_that_died(data_dir: Path) -> None:
    first = json.loads(meshprov(data_dir, "dev", "up").stdout)
    os.kill(first["redis"]["pid"], 9)
    time.sleep(0.2)
    second = json.loads(meshprov(data_dir, "dev", "up").stdout)
    assert second["redis"]["pid"] != first["redis"]["pid"]
    assert second["anvil"]["pid"] == first["anvil"]["pid"]
    assert redis.Redis.from_url(second["redis"]["url"]).ping()


def test_port_in_use_is_reported_and_nothing_is_left_running(data_dir: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = meshprov(data_dir, "dev", "up", env={"MESHPROV_REDIS_PORT": str(port)})
    assert result.returncode == 6
    assert "already in use" in result.stderr
    assert "MESHPROV_REDIS_PORT" in result.stderr
    assert "Traceback" not in result.stderr
    assert our_pids(data_dir) == []  # the anvil started first was stopped again


def test_missing_binary_is_named(data_dir: Path) -> None:
    result = meshprov(data_dir, "dev", "up", env={"MESHPROV_ANVIL_BIN": "/nonexistent/anvil"})
    assert result.returncode == 7
    assert "anvil not found" in result.stderr
    assert our_pids(data_dir) == []


def test_unreachable_configured_redis_stops_what_was_started(data_dir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]  # bound, never listening: connections are refused
        result = meshprov(data_dir, "dev", "up", env={"MESHPROV_REDIS_URL": f"redis://127.0.0.1:{dead}/0"})
    assert result.returncode == 6
    assert "redis" in result.stderr
    assert "unavailable" in result.stderr
    assert our_pids(data_dir) == []


def test_configured_chain_is_used_not_started(data_dir: Path, anvil: object) -> None:
    url = anvil.rpc_url  # type: ignore[attr-defined]
    result = meshprov(data_dir, "dev", "up", "--only", "anvil", env={"MESHPROV_CHAIN_RPC_URL": url})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["anvil"] == {
        "external": True,
        "log": None,
        "name": "anvil",
        "pid": None,
        "port": None,
        "start_time": None,
        "url": url,
    }
    assert our_pids(data_dir) == []


def test_unreachable_configured_rpc(data_dir: Path) -> None:
    result = meshprov(data_dir, "dev", "up", env={"MESHPROV_CHAIN_RPC_URL": "http://127.0.0.1:9/"})
    assert result.returncode == 6
    assert "chain RPC at http://127.0.0.1:9/ is unavailable" in result.stderr


def test_a_chosen_port_taken_before_the_service_binds_it_is_chosen_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger.dev import services

    with socket.socket() as thief:
        thief.bind(("127.0.0.1", 0))
        thief.listen()
        stolen = thief.getsockname()[1]
        offered = iter([stolen])
        real = services.free_port
        monkeypatch.setattr(services, "free_port", lambda: next(offered, None) or real())
        with services.RedisProcess.start(tmp_path) as proc:
            assert proc.port != stolen
            assert redis.Redis.from_url(proc.url).ping()
        # A port the user named is never swapped for another: the error says it is in use.
        with pytest.raises(services.ServiceUnavailable, match="in use"):
            services.RedisProcess.start(tmp_path, port=stolen)
