"""`meshprov demo`: a whole consortium end to end in real processes (small: 3 members, 2 rounds, 1 malicious, 3
validators on protocol v2), its summary (scores and consensus per update, validators' distances), the state it
leaves for auditors and the commands it prints (each run as printed in a fresh shell). Misbehaving validators:
test_demo_validators.py; Ctrl-C and SIGTERM: test_demo_signals.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab.demo import (
    MARKER,
    SUMMARY,
    DemoConfig,
    NotADemoDirectory,
    demo_settings,
    meshprov_command,
    prepare_directory,
)
from lab.procs import recorded
from ledger.exit_codes import ExitCode
from ledger.recipe import RecipeRef, parse_task_spec, recipe_cid
from tests.support import REPO
from tests.support.dashboard import free_port

# What a scaled update may be rejected for: the norm bounds, its scale next to the base, or (with too few peers for
# a z-score) the held-out loss.
SCALE_REASONS = {"norm-too-large", "scale-out-of-proportion", "norm-outlier", "loss-regression"}


def meshprov(*args: str) -> list[str]:
    return [sys.executable, "-m", "ledger.cli.app", *args]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MESHPROV_")}


def run_meshprov(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``meshprov ARGS`` run from the repository without the caller's MESHPROV_* settings, its output captured."""
    return subprocess.run(
        meshprov(*args),
        cwd=REPO,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stop_demo_services(data_dir: Path) -> None:
    """``dev down`` for a demo's directory: what a test started does not outlive it, even when an assertion failed."""
    run_meshprov("--data-dir", str(data_dir), "dev", "down", timeout=60)


VENV_BIN = Path(os.path.abspath(sys.executable)).parent


def fresh_shell_env() -> dict[str, str]:
    """A new terminal's environment after `make demo`: no MESHPROV_* settings, no activated virtual environment
    (the venv's bin directory is not on PATH)."""
    env = {k: v for k, v in clean_env().items() if k != "VIRTUAL_ENV"}
    entries = os.environ.get("PATH", "").split(os.pathsep)
    env["PATH"] = os.pathsep.join(e for e in entries if e and Path(os.path.abspath(e)) != VENV_BIN)
    return env


def printed_commands(stderr: str) -> list[str]:
    """The command lines the demo printed after its `next` label (one per line, continuation lines indented)."""
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("next "))
    commands = [lines[start].removeprefix("next").strip()]
    for line in lines[start + 1 :]:
        if not line.startswith(" " * 14) or not line.strip():
            break
        commands.append(line.strip())
    return commands


def processes_using(path: Path) -> list[str]:
    """Every live process whose command line or environment names ``path`` (the demo's children and services)."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in cmdline or needle in environ:
            shown = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
            found.append(f"{entry.name}: {shown}")
    return found


# --- the directory and the configuration ----------------------------------------------------------------------


def test_a_directory_the_demo_did_not_make_is_never_deleted(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(NotADemoDirectory) as caught:
        prepare_directory(tmp_path)
    assert caught.value.exit_code == ExitCode.CONFIG
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_a_demo_directory_is_emptied_for_the_next_run(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    assert prepare_directory(target) == target.resolve()
    (target / "blocks").mkdir()
    (target / SUMMARY).write_text("{}")
    prepare_directory(target)
    assert sorted(p.name for p in target.iterdir()) == [MARKER]


def test_the_demo_ignores_the_callers_services_but_keeps_binary_paths(tmp_path: Path) -> None:
    env = {
        "MESHPROV_CHAIN_RPC_URL": "http://127.0.0.1:1",
        "MESHPROV_REDIS_URL": "redis://127.0.0.1:1/0",
        "MESHPROV_STORE": "kubo",
        "MESHPROV_ANVIL_BIN": "/opt/anvil",
    }
    s = demo_settings(tmp_path, env)
    assert s.chain_rpc_url is None
    assert s.redis_url is None
    assert s.store == "local"
    assert s.anvil_bin == Path("/opt/anvil")
    assert s.data_dir == tmp_path


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"nodes": 113}, "--nodes"),
        ({"validators": 33, "quorum": 2}, "--validators"),
        ({"members_per_process": -1}, "--members-per-process"),
        ({"malicious": 4, "nodes": 3}, "--malicious"),
        ({"behaviour": "honest"}, "--behaviour"),
        ({"rule": "mean"}, "--rule"),
        ({"model": "resnet"}, "--model"),
        ({"quorum": 4}, "quorum"),
        ({"validators_down": 2}, "--validators-down"),
        ({"lying_validators": 2}, "--lying-validators"),
        ({"lying_validators": 1, "validators": 3, "validators_down": 1}, "--lying-validators"),
        ({"commit_window_s": 1}, "--commit-window"),
    ],
)
def test_bad_demo_settings_are_refused(change: dict[str, Any], problem: str) -> None:
    from ledger.errors import ConfigError

    with pytest.raises(ConfigError, match=problem):
        DemoConfig(**change).validate()


def test_windows_and_the_timeout_left_open_are_sized_to_the_members_and_given_ones_are_kept() -> None:
    small, large = DemoConfig(nodes=5).sized(), DemoConfig(nodes=100, rounds=1).sized()
    assert (small.submission_window_s, large.submission_window_s) == (70, 260)
    assert (small.commit_window_s, large.commit_window_s) == (65, 160)
    assert (large.timeout_s or 0) >= 120 + 260 + 160 + 60 + 110
    given = DemoConfig(nodes=100, submission_window_s=30, commit_window_s=8, timeout_s=50).sized()
    assert (given.submission_window_s, given.commit_window_s, given.timeout_s) == (30, 8, 50)


def test_members_are_dealt_to_processes_in_contiguous_groups() -> None:
    assert DemoConfig(nodes=5, members_per_process=2).member_hosts() == [[0, 1], [2, 3], [4]]
    assert DemoConfig(nodes=3, members_per_process=1).member_hosts() == [[0], [1], [2]]
    assert DemoConfig(nodes=100).member_hosts(cores=2) == [list(range(50)), list(range(50, 100))]
    assert DemoConfig(nodes=2).member_hosts(cores=2) == [[0], [1]]  # as many processes as cores, no more
    assert DemoConfig(nodes=7).member_hosts(cores=1) == [[0, 1, 2, 3], [4, 5, 6]]  # at least two


@pytest.mark.slow
def test_an_alpha_left_to_the_demo_is_raised_until_the_recipe_can_split_its_data() -> None:
    """digits has 1,347 training samples: 100 members of at least 10 each need a flatter split than α = 0.5."""
    from rich.console import Console

    import node.data
    from lab.demo import ALPHA_STEPS, Demo
    from lab.members import cache_federations
    from node.errors import ShardingFailed

    original = node.data.make_federation
    cache_federations()
    try:
        said: list[str] = []
        demo = Demo(DemoConfig(nodes=100), console=Console(stderr=True), say=said.append)
        demo.recipe = demo._load_recipe()
        demo._fit_alpha()
        assert demo.config.alpha in ALPHA_STEPS
        assert f"using α = {demo.config.alpha:g}" in said[0]
        assert min(len(demo._data(i, 100)[0]) for i in range(100)) >= 10
        chosen = Demo(
            DemoConfig(nodes=100, alpha=0.5, alpha_given=True), console=Console(stderr=True), say=said.append
        )
        chosen.recipe = demo.recipe
        with pytest.raises(ShardingFailed):
            chosen._fit_alpha()
    finally:
        node.data.make_federation = original


def test_a_process_hosting_members_splits_the_data_once() -> None:
    import node.data
    from lab.members import cache_federations

    original = node.data.make_federation
    try:
        cache_federations()
        first = node.data.make_federation(7, 0.5, 3)
        assert node.data.make_federation(7, 0.5, 3) is first
        assert node.data.make_federation(7, 0.5, 4) is not first
    finally:
        node.data.make_federation = original


def test_the_last_members_misbehave_and_robust_rules_get_parameters() -> None:
    config = DemoConfig(nodes=5, malicious=2, behaviour="sign-flip")
    assert [config.behaviour_of(i) for i in range(5)] == ["honest"] * 3 + ["sign-flip"] * 2
    assert DemoConfig(nodes=5, malicious=2, rule="trimmed-mean").rule_table() == {
        "rule": "trimmed-mean",
        "trim_bps": 4000,
    }
    assert DemoConfig(malicious=1, rule="multi-krum").rule_table() == {"rule": "multi-krum", "krum_f": 1}


def test_the_printed_meshprov_is_the_script_beside_the_interpreter_unless_on_path(tmp_path: Path) -> None:
    script = VENV_BIN / "meshprov"
    assert script.is_file()  # `make setup` installs the entry point there
    # Not on PATH (a fresh shell after `make demo`): the script, relative to the repository when run from it.
    assert meshprov_command(REPO, path=str(tmp_path)) == str(script.relative_to(REPO))
    assert meshprov_command(tmp_path, path=str(tmp_path)) == str(script)
    # On PATH only because the virtual environment is activated: a fresh shell would not find it.
    assert meshprov_command(REPO, path=str(VENV_BIN)) == str(script.relative_to(REPO))


# --- end to end -----------------------------------------------------------------------------------------------


@pytest.mark.anvil
@pytest.mark.redis
@pytest.mark.slow
def test_the_demo_runs_a_consortium_end_to_end_and_leaves_an_auditable_record(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    started = time.monotonic()
    done = run_meshprov(
        "demo", "--nodes", "3", "--rounds", "2", "--malicious", "1", "--json", "--data-dir", str(data_dir),
        "--members-per-process", "2",
        timeout=240,
        env=fresh_shell_env(),  # as `make demo` runs it: the venv's bin directory is not on PATH
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout)
    assert json.loads((data_dir / SUMMARY).read_text()) == summary
    assert summary["summary_file"] == str(data_dir.resolve() / SUMMARY)

    # Nothing the demo started is still running: workers, members, anvil, redis.
    assert processes_using(data_dir.resolve()) == []
    # node-1 and node-2 share a process (lab.members), node-3 has one of its own; then validators, aggregator.
    assert [r.name for r in recorded(data_dir)] == [
        "validator-1", "validator-2", "validator-3", "aggregator", "members-1", "members-2",
    ]  # fmt: skip
    shared_process_members_did_not_interfere(data_dir, summary)

    members = {m["name"]: m for m in summary["members"]}
    assert [m["behaviour"] for m in summary["members"]] == ["honest", "honest", "scale"]
    assert members["node-3"]["accepted"] == 0
    assert members["node-3"]["rejected"] == 2
    assert set(members["node-3"]["reasons"]) <= SCALE_REASONS
    assert members["node-3"]["reasons"]
    assert members["node-3"]["reward"] == "0"
    for name in ("node-1", "node-2"):
        assert members[name]["accepted"] == 2
        assert int(members[name]["reward"]) > 0

    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    for r in summary["rounds"]:
        assert len(r["updates"]) == 3
        assert not r["carried_over"]
        for u in r["updates"]:
            assert len(u["scores"]) == 3  # every validator revealed a score for every update
            assert u["accepted"] == (u["behaviour"] == "honest")
            assert u["accepted"] == (u["consensus"] > 0)
            if not u["accepted"]:
                assert {v["reason_slug"] for v in u["scores"]} <= SCALE_REASONS
                assert u["consensus"] == -10_000
        # Every validator revealed; honest validators agree closely with the consensus.
        assert [v["absent"] for v in r["validators"]] == [False] * 3
        assert all(0 <= v["distance"] <= 2_500 for v in r["validators"])
    assert [v["revealed"] for v in summary["validators"]] == [2, 2, 2]
    assert all(int(v["reward"]) > 0 for v in summary["validators"])
    final = summary["final"]
    # The default task is the builtin digits recipe, named with its hash by the schema-2 spec anchored on chain.
    digits = RecipeRef("digits", "1", recipe_cid(REPO / "node" / "recipes" / "digits.py"))
    assert parse_task_spec((data_dir / "task-spec.json").read_bytes()).recipe == digits
    assert {k: summary["recipe"][k] for k in ("name", "version", "cid")} == digits.to_dict()
    assert final["recipe"] == digits.to_dict()
    assert final["metrics"]["accuracy"] == final["accuracy"]
    assert final["accuracy"] >= 0.9  # 2 rounds of 2 honest members; the simulation reaches ≈ 95 %
    assert summary["baseline"]["accuracy"] >= 0.95
    assert final["model"] == summary["rounds"][-1]["aggregate"]
    assert final["lineage"]["verified"] is True
    assert final["lineage"]["depth"] == 2
    assert final["verify"]["exit_code"] == 0
    assert final["verify"]["status"] == "anchored"
    print(f"demo (3 members, 2 rounds) took {elapsed:.1f} s; timings {summary['timings']}")

    # Every command the demo printed runs as printed in a fresh shell from the repository (no activated venv),
    # on the data directory alone: anvil is restarted from its saved state, and `dev down` stops it again.
    commands = printed_commands(done.stderr)
    assert commands == summary["next"]
    assert [c.split()[-2:] for c in commands] == [
        ["lineage", final["model"]],
        ["dashboard", "serve"],
        ["dev", "down"],
    ]
    fresh = fresh_shell_env()
    assert shutil.which("meshprov", path=fresh["PATH"]) is None  # so the printed commands cannot lean on PATH
    lineage_cmd, serve_cmd, down_cmd = commands
    try:
        lineage = bash(lineage_cmd, fresh)
        assert lineage.returncode == ExitCode.OK, lineage.stderr
        assert "verified: 2 rounds back to genesis" in lineage.stdout, lineage.stdout
        # The dashboard serves until Ctrl-C, which it reports as such (exit 130, after a clean shutdown). Only the
        # port is moved (the machine's tests run side by side); the command line is the printed one.
        port = free_port()
        served = subprocess.Popen(
            ["bash", "-c", serve_cmd],
            cwd=REPO, env={**fresh, "MESHPROV_DASHBOARD_PORT": str(port)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            overview = wait_for_json(served, f"http://127.0.0.1:{port}/api/overview")
            assert overview["task"]["finalized"] == 2
        finally:
            os.killpg(served.pid, signal.SIGINT)
            _, serve_err = served.communicate(timeout=30)
        assert served.returncode == ExitCode.INTERRUPTED, serve_err
        verify = run_meshprov(
            "--data-dir", str(data_dir), "audit", "verify", final["file"], "--task", "1", "--round", "2", timeout=60
        )  # fmt: skip
        assert verify.returncode == ExitCode.OK, verify.stderr
        auditor_questions_answer_on_the_demos_data(data_dir, summary)
        down = bash(down_cmd, fresh)
        assert down.returncode == ExitCode.OK, down.stderr
        assert processes_using(data_dir.resolve()) == []  # `dev down` stopped the anvil the audit restarted
    finally:
        stop_demo_services(data_dir)


def audit_json(data_dir: Path, *args: str) -> tuple[int, Any]:
    done = run_meshprov("--data-dir", str(data_dir), "audit", *args, "--json")
    assert done.stdout, done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


def auditor_questions_answer_on_the_demos_data(data_dir: Path, summary: dict[str, Any]) -> None:
    """Issue 16's goals on a real demo's record (not a fixture): taint of a round-1 update names every later model,
    influence has a row per accepted update and reproduces its leave-one-out CIDs, rejudge holds no honest ballot
    against the checks (the scaled member's rejections are deterministic and every validator cast them)."""
    first, last = summary["rounds"][0], summary["rounds"][-1]
    accepted = [u for u in first["updates"] if u["accepted"]]
    assert accepted
    code, taint = audit_json(data_dir, "taint", accepted[0]["cid"])
    assert code == ExitCode.OK, taint
    later = [(r["round"], r["aggregate"]) for r in summary["rounds"]]
    assert [(m["round"], m["model_cid"]) for m in taint["models"]] == later
    assert [m["depth"] for m in taint["models"]] == list(range(len(later)))
    assert taint["latest"] == [
        {"task_id": 1, "round": last["round"], "model_cid": last["aggregate"], "carries": True}
    ]

    code, influence = audit_json(data_dir, "influence", "1", "1")
    assert code == ExitCode.OK, influence
    assert influence["model_cid"] == first["aggregate"]
    assert sorted(r["cid"] for r in influence["updates"]) == sorted(u["cid"] for u in accepted)
    assert all(r["loo_cid"] != first["aggregate"] and r["distance"] > 0 for r in influence["updates"])
    _, again = audit_json(data_dir, "influence", "1", "1")
    assert {r["cid"]: r["loo_cid"] for r in again["updates"]} == {
        r["cid"]: r["loo_cid"] for r in influence["updates"]
    }

    for r in summary["rounds"]:
        code, rejudged = audit_json(data_dir, "rejudge", "1", str(r["round"]))
        assert code == ExitCode.OK, rejudged["disagreements"]
        assert rejudged["disagreements"] == []
        scaled = [u for u in rejudged["updates"] if u["reason"] != "ACCEPTED"]
        assert len(scaled) == 1  # the scaled member's update: rejected by the checks themselves


def shared_process_members_did_not_interfere(data_dir: Path, summary: dict[str, Any]) -> None:
    """Each member of a shared process submitted from its own key the file its own journal holds, naming it as
    the contributor; and the two that trained side by side (node-1, node-2) made exactly the updates each would
    have made alone (their trainings seed torch's global RNG: interleaved, they would change each other's)."""
    import numpy as np

    from ledger.updatefile import UpdateFile
    from ledger.updatefile.metadata import UpdateMeta
    from node.basemodel import load_weights
    from node.recipe import load_recipe
    from node.training import recipe_round, round_seed

    address = {m["name"]: m["address"] for m in summary["members"]}
    assert len(set(address.values())) == 3
    for r in summary["rounds"]:
        assert sorted(u["address"] for u in r["updates"]) == sorted(address.values())
        assert len({u["cid"] for u in r["updates"]}) == 3
        for u in r["updates"]:
            journal = data_dir / "node" / u["address"] / "updates"
            record = json.loads((journal / f"task-1-round-{r['round']}.json").read_text())
            assert record["cid"] == u["cid"]
            with UpdateFile.from_bytes(
                (journal / f"task-1-round-{r['round']}.safetensors").read_bytes()
            ) as f:
                assert isinstance(f.metadata, UpdateMeta)
                assert f.metadata.contributor == u["address"]
    assert "hosting 2 member(s): node-1, node-2" in (data_dir / "logs" / "members-1.log").read_text()

    import torch

    spec = parse_task_spec((data_dir / "task-spec.json").read_bytes())
    recipe = load_recipe("digits")
    genesis = summary["rounds"][0]["base"]
    base = load_weights(data_dir / "genesis.safetensors", genesis)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the member processes train
    try:
        for shard, name in enumerate(("node-1", "node-2")):
            data = recipe.data(shard, 3, spec.seed, **dict(spec.shards))[0]
            settings = {**spec.hyperparameters, "seed": round_seed(spec.seed, 1, shard)}
            alone = recipe_round(recipe, base, data, settings).delta
            path = data_dir / "node" / address[name] / "updates" / "task-1-round-1.safetensors"
            with UpdateFile.from_bytes(path.read_bytes()) as f:
                assert set(f) == set(alone)
                for k, v in alone.items():
                    np.testing.assert_allclose(
                        np.array(f.tensor(k)), v, rtol=1e-5, atol=1e-7, err_msg=f"{name} {k}"
                    )
    finally:
        torch.set_num_threads(threads)


def bash(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``command`` run as a user pastes it: a fresh ``bash -c`` in the repository's root."""
    return subprocess.run(
        ["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def wait_for_json(proc: subprocess.Popen[str], url: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        try:
            reply = httpx.get(url, timeout=5)
            if reply.status_code == 200:
                return reply.json()
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer within {timeout:.0f} s"
        time.sleep(0.2)


def test_windows_grow_with_what_a_recipes_round_and_evaluation_took() -> None:
    """A recipe whose round took 40 s had a member miss the 66 s submission window (its process trained two
    members one after the other): the windows add WORK_MARGIN rounds per member of the busiest process, and a
    round plus an evaluation per update for the validators."""
    from lab.demo import WORK_MARGIN

    config = DemoConfig(
        nodes=3, members_per_process=2
    )  # processes of [0, 1] and [2]: two rounds back to back
    plain = config.sized()
    heavy = config.sized(round_s=40.0, evaluate_s=2.0)
    assert heavy.submission_window_s == plain.submission_window_s + WORK_MARGIN * 2 * 40 == 306
    assert heavy.commit_window_s == plain.commit_window_s + WORK_MARGIN * (40 + 3 * 2) == 201
    assert (heavy.timeout_s or 0) > (plain.timeout_s or 0)
    given = DemoConfig(nodes=3, submission_window_s=30, commit_window_s=8).sized(round_s=40.0, evaluate_s=2.0)
    assert (given.submission_window_s, given.commit_window_s) == (30, 8)  # what the user gave is kept
