"""`meshprov worker relay` as a process (``python -m worker.relay_cli``, what worker/cli.py registers) relaying
for members that run the real node loop with ``--relay-via http://…`` (NodeRunner with an HttpRelay)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.relay import HttpRelay
from node.runner import NodeOptions
from tests.support import REPO
from tests.support.node import NodeNet

pytestmark = [pytest.mark.anvil]

FAST = {"poll_s": 0.05, "max_poll_s": 0.2, "base_backoff_s": 0.01}
RELAYER = 18


@pytest.fixture
def net(anvil: Any, tmp_path: Path, dev_keys: list[tuple[str, str]]) -> Iterator[NodeNet]:
    n = NodeNet.create(anvil.url, tmp_path, dev_keys, contributors=2)
    yield n
    n.close()


def relayer_env(net: NodeNet, key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHPROV_")}
    env.update(
        MESHPROV_CHAIN_RPC_URL=net.url,
        MESHPROV_DEPLOYMENT_FILE=str(net.deployment_file),
        MESHPROV_DATA_DIR=str(net.root / "relayer"),
    )
    if key is not None:
        env["MESHPROV_PRIVATE_KEY"] = key
    return env


def start_relayer(net: NodeNet, key: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.relay_cli", "--listen", "127.0.0.1:0", "--batch-wait", "0.2", *args],
        env=relayer_env(net, key),
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if found:
            return proc, found.group(1)
    proc.wait(10)
    pytest.fail(f"the relayer exited {proc.returncode} before listening")


@pytest.mark.slow  # two members train (about 30 s)
def test_members_relay_through_the_http_relayer_process(
    net: NodeNet, dev_keys: list[tuple[str, str]]
) -> None:
    proc, url = start_relayer(net, dev_keys[RELAYER][1])
    w3 = net.client().w3
    balances = [w3.eth.get_balance(a) for a, _ in net.contributor_keys]
    try:
        assert httpx.get(url + "/healthz", timeout=10).json()["relayer"] == dev_keys[RELAYER][0]
        threads = [
            net.start(
                net.runner(
                    i,
                    NodeOptions(shard=i, shards=2, rounds=1, relay=True, **FAST),
                    read_only=True,
                    relay_redis=HttpRelay(url),
                )
            )
            for i in range(2)
        ]
        subs = net.wait_submissions(1, 2)
        net.judge_round(1)
        records = [t.join_result()[0] for t in threads]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert {s.args["relayer"] for s in subs} == {dev_keys[RELAYER][0]}
    assert [r.status for r in records] == ["accepted", "accepted"]
    assert all(r.relayed for r in records)
    assert [w3.eth.get_balance(a) for a, _ in net.contributor_keys] == balances
    assert "relayed 2 in " in " ".join(err.split())


def test_the_relayer_without_a_key_or_with_a_bad_address_exits_with_a_message(net: NodeNet) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker.relay_cli", "--listen", "127.0.0.1:0"],
        env=relayer_env(net, None),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "needs a funded key" in " ".join(done.stderr.split())
    done = subprocess.run(
        [sys.executable, "-m", "worker.relay_cli", "--listen", "nowhere"],
        env=relayer_env(net, "0x" + "11" * 32),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "HOST:PORT" in done.stderr
