"""`meshprov dashboard serve` as a user runs it (a real process on 127.0.0.1), following a live chain; an empty
and an unreachable index; and the dashboard's pure parts (charts, memo, formatting)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.chain.scores import REJECT
from ledger.dashboard import charts, create_app
from ledger.dashboard import formatting as fmt
from ledger.dashboard.memo import VersionedMemo
from ledger.dev.services import AnvilProcess
from ledger.exit_codes import ExitCode
from ledger.index.db import IndexDB
from tests.support import REPO
from tests.support.chain import Consortium
from tests.support.dashboard import DemoRun, LiveServer, free_port


def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    def output(self) -> str:
        """What the server wrote (stdout and stderr), from its log file: never a pipe nobody reads, which a
        chatty server under load could fill and then block on."""
        return self.log.read_text(errors="replace")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start `meshprov dashboard serve ...` in its own process; stopped with Ctrl-C (SIGINT) afterwards."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> Served:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHPROV_")}
        log = tmp_path / f"dashboard-{len(started)}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ledger.cli.app",
                    "--data-dir",
                    str(tmp_path / "data"),
                    "dashboard",
                    "serve",
                    "--port",
                    str(port),
                    *args,
                ],
                env=env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        started.append(proc)
        served = Served(proc, f"http://127.0.0.1:{port}", log)

        def up() -> bool:
            assert proc.poll() is None, served.output()[-3000:]
            return httpx.get(served.url + "/healthz", timeout=5).status_code == 200

        wait_for(up, what="the dashboard to answer /healthz")
        return served

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.anvil
def test_serve_answers_on_loopback_and_stops_on_ctrl_c(
    serve: Callable[..., Served], demo_run: DemoRun
) -> None:
    served = serve("--index-url", demo_run.index_url)
    overview = httpx.get(served.url + "/api/overview", timeout=10).json()
    assert overview["task"]["finalized"] == 3
    page = httpx.get(served.url + "/", timeout=10)
    assert "Round 4" in page.text
    assert httpx.get(served.url + "/healthz", timeout=10).json()["follower"] is None
    served.proc.send_signal(signal.SIGINT)
    assert served.proc.wait(15) == ExitCode.INTERRUPTED  # a clean shutdown, reported as Ctrl-C
    err = served.output()
    assert f"dashboard on {served.url}" in err
    assert "Traceback" not in err


@pytest.mark.anvil
def test_follow_keeps_the_index_current(
    serve: Callable[..., Served],
    w3: Any,
    anvil: AnvilProcess,
    dev_keys: list[tuple[str, str]],
    tmp_path: Path,
) -> None:
    c = Consortium.deploy(w3, dev_keys, validators=2, contributors=2, quorum=2)
    c.record.write(tmp_path / "data" / "deployment.json")
    task_id = c.task_id
    c.run_round(task_id)
    served = serve(
        "--follow",
        "--poll",
        "0.3",
        "--rpc-url",
        anvil.rpc_url,
        "--index-url",
        f"sqlite:///{tmp_path / 'followed.sqlite'}",
    )

    def finalized(n: int) -> Callable[[], bool]:
        def check() -> bool:
            response = httpx.get(served.url + "/api/overview", timeout=5)
            # The index may exist before its first batch is in (no task yet): not ready.
            task = response.json().get("task") if response.status_code == 200 else None
            return task is not None and task["finalized"] == n

        return check

    def waited(n: int) -> None:
        try:
            # 3 s at idle; the server's first sync shares two cores with the rest of the suite (CI once took > 30 s)
            wait_for(finalized(n), timeout=90.0, what=f"round {n} in the followed index")
        except AssertionError as exc:
            health = httpx.get(served.url + "/healthz", timeout=5).text
            raise AssertionError(f"{exc}; /healthz: {health}; server: {served.output()[-3000:]}") from None

    waited(1)
    c.run_round(task_id, scores=lambda v, i, r: (REJECT, 16) if i == 1 else 5_000)
    waited(2)
    health = httpx.get(served.url + "/healthz", timeout=5).json()
    assert health["follower"].startswith("ok: indexed up to block")
    round2 = httpx.get(f"{served.url}/api/tasks/{task_id}/rounds/2", timeout=5).json()
    assert [u["verdict"] for u in round2["updates"]] == ["accepted", "rejected"]
    assert [u["consensus"] for u in round2["updates"]] == [5_000, REJECT]
    metrics = httpx.get(served.url + "/metrics", timeout=5).text
    assert f'meshprov_rounds_finalized_total{{task="{task_id}"}} 2.0' in metrics


def test_serve_help_lists_its_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ledger.cli.app", "dashboard", "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0
    for option in ("--host", "--port", "--index-url", "--follow", "--no-follow", "--poll"):
        assert option in result.stdout


# ─── empty and unreachable indexes ──────────────────────────────────────────────────────────────────────────


def test_an_empty_index_is_healthy_and_says_what_to_do(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "empty", "index": None, "follower": None}
        page = client.get("/")
        assert page.status_code == 404
        assert "is empty" in page.text
        assert "meshprov index follow --once" in page.text
        api = client.get("/api/contributors")
        assert api.status_code == 404
        assert "is empty" in api.json()["error"]["message"]
        metrics = client.get("/metrics").text
        assert "meshprov_index_up 1.0" in metrics
        assert "meshprov_current_round" not in metrics


def test_an_unreachable_index_is_503_not_500() -> None:
    app = create_app(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere")
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=20) as client:
        assert client.get("/healthz").status_code == 503
        page = client.get("/contributors")
        assert page.status_code == 503
        assert "index database" in page.text
        assert "unavailable" in client.get("/api/overview").json()["error"]["code"]
        assert "meshprov_index_up 0.0" in client.get("/metrics").text


# ─── pure parts ─────────────────────────────────────────────────────────────────────────────────────────────


def test_nice_ticks_cover_the_range_with_round_steps() -> None:
    assert charts.nice_ticks(0, 0.2057) == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25]
    assert charts.nice_ticks(0, 1000) == [0, 200, 400, 600, 800, 1000]
    ticks = charts.nice_ticks(3, 3)
    assert ticks[0] <= 3 <= ticks[-1]


def test_a_line_chart_draws_every_point_and_escapes_names() -> None:
    svg = charts.line_chart(
        [charts.Series("<script>x</script>", [(1, 5), (2, 7), (3, 6)], "s1")],
        title="t & u",
        desc="d",
        x_label="round",
        y_label="v",
        x_integer=True,
    )
    assert svg.count("<circle") == 3
    assert svg.count(" L") == 2
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "t &amp; u" in svg
    assert ">1.5<" not in svg  # whole-number rounds only
    empty = charts.line_chart([], title="t", desc="d", x_label="x", y_label="y")
    assert "no data yet" in empty


def test_a_step_line_holds_its_last_value_until_the_end() -> None:
    svg = charts.line_chart(
        [charts.Series("r", [(100, 1), (200, 3)], "s1", step=True)],
        title="t",
        desc="d",
        x_label="x",
        y_label="y",
        x_end=400,
    )
    path = re.search(r'class="line s1" d="([^"]+)"', svg).group(1)  # type: ignore[union-attr]
    vertices = path.split()
    assert len(vertices) == 4  # start, step across, step up, hold to the end
    assert vertices[-1].split(",")[1] == vertices[-2].split(",")[1]


def test_bars_link_to_their_rounds() -> None:
    svg = charts.bar_chart(
        [1, 2],
        [charts.Stack("accepted", [3, 2], "s1"), charts.Stack("rejected", [0, 1], "s2")],
        title="t",
        desc="d",
        x_label="round",
        y_label="updates",
        links=["/r/1", "/r/2"],
    )
    assert svg.count('<rect class="bar') == 3  # a zero value draws nothing
    assert '<a href="/r/2">' in svg


def test_memo_recomputes_only_when_the_version_changes() -> None:
    memo = VersionedMemo()
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert memo.get((1, "0xa"), "k", compute) == 1
    assert memo.get((1, "0xa"), "k", compute) == 1
    assert memo.get((2, "0xb"), "k", compute) == 2
    assert (memo.hits, memo.misses) == (1, 2)


def test_formatting_shortens_and_keeps_the_full_value() -> None:
    address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    html = str(fmt.address(address))
    assert 'title="0x70997970C51812dc3A010C7d01b50e0d17dc79C8"' in html
    assert ">0x7099…79C8<" in html
    assert fmt.tokens(10**18 + 5 * 10**17) == "1.5 MESH"
    assert fmt.tokens(0) == "0 MESH"
    assert fmt.size(2048) == "2.0 KiB"
    assert fmt.reason_slug(16) == "norm-outlier"
    assert fmt.reason_slug(200) == "unknown-200"
    assert fmt.ago(100, now=160) == "60 s ago"
    assert fmt.ago(1000, now=100) == "in 15 min"


def test_the_dashboard_module_keeps_node_and_worker_out() -> None:
    code = "import sys, ledger.dashboard, ledger.cli.dashboard; print(any(m.split('.')[0] in ('node', 'worker', 'torch') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.anvil
def test_the_index_db_is_used_read_only(demo_run: DemoRun) -> None:
    """Serving every page leaves the index byte for byte as it was."""
    db = IndexDB(demo_run.index_url)
    before = db.dump()
    app = create_app(db)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=20) as client:
        for url in (
            "/",
            "/contributors",
            f"/contributors/{demo_run.malicious}",
            "/tasks/1/rounds/2",
            "/metrics",
        ):
            assert client.get(url).status_code == 200
        assert client.get("/lineage", follow_redirects=True).status_code == 200
    assert db.dump() == before
    db.dispose()
