"""An auditor with only the wheel: `pip install meshprov` into a fresh virtualenv (base dependencies, no torch, no
repository on sys.path, no anvil anywhere) audits a data directory a real chain filled, from its index alone, and
against a chain with `--rpc-url` or MESHPROV_CHAIN_RPC_URL.

The wheel is built from the working tree's files (tracked and not ignored) copied to a temporary directory, so
the checkout gets no `build/` or `*.egg-info`. Its dependencies are installed from a wheelhouse kept in pytest's
cache (filled from the package index on the first run only), so later runs need no network.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.chain.client import connect_web3
from ledger.content import cid_of_file, cid_to_digest
from ledger.dev.services import AnvilProcess
from ledger.exit_codes import ExitCode
from tests.support import REPO
from tests.support.chain import Consortium

pytestmark = [pytest.mark.slow, pytest.mark.anvil]


def _pip(python: Path, *args: str) -> None:
    """The test environment's pip acting on ``python``'s environment (the fresh venv has no pip of its own)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "--quiet", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _working_tree_copy(dest: Path) -> Path:
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is not part of it
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A virtualenv holding the meshprov wheel and its base dependencies only; returns its bin directory."""
    work = tmp_path_factory.mktemp("wheel")
    source = _working_tree_copy(work / "src")
    dist = work / "dist"
    _pip(
        Path(sys.executable),
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        str(dist),
        str(source),
    )
    (wheel,) = dist.glob("meshprov-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    cache = request.config.cache
    wheelhouse = Path(str(cache.mkdir("meshprov-wheelhouse"))) if cache else work / "wheelhouse"
    offline = ["install", "--no-compile", "--no-index", "--find-links", str(wheelhouse), str(wheel)]
    try:
        _pip(python, *offline)
    except subprocess.CalledProcessError:  # first run, or new dependencies: fetch their wheels once
        _pip(python, "wheel", "--wheel-dir", str(wheelhouse), str(wheel))
        for own in wheelhouse.glob("meshprov-*.whl"):
            own.unlink()
        _pip(python, *offline)
    return venv / "bin"


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Audited:
    """A data directory whose index a real chain filled, and what the test knows about that chain."""

    data_dir: Path
    rpc_url: str
    model: Path  # round 1's aggregate, a file on disk
    model_cid: str
    later_cid: str  # round 2's aggregate: on the chain, not in the index
    contributor: str


@pytest.fixture(scope="module")
def audited(
    tmp_path_factory: pytest.TempPathFactory,
    wheel_venv: Path,
    dev_keys: list[tuple[str, str]],
) -> Iterator[Audited]:
    work = tmp_path_factory.mktemp("audited")
    data_dir = work / "data"
    model = work / "model.bin"
    model.write_bytes(b"round 1's aggregate model\n" * 1000)
    later = work / "later.bin"
    later.write_bytes(b"round 2's aggregate model\n" * 1000)
    with AnvilProcess.start(work / "anvil") as anvil:
        c = Consortium.deploy(connect_web3(anvil.rpc_url), dev_keys, validators=2, contributors=2, quorum=1)
        task_id = c.task_id
        c.run_round(task_id, aggregate=cid_to_digest(cid_of_file(model)))
        c.record.write(data_dir / "deployment.json")
        indexed = wheel(wheel_venv, work, "index", "follow", "--once", "--json", "--rpc-url", anvil.rpc_url,
                        "--data-dir", str(data_dir))  # fmt: skip
        assert indexed.code == ExitCode.OK, indexed.err
        assert indexed.json["events"] > 0
        c.run_round(task_id, aggregate=cid_to_digest(cid_of_file(later)))
        yield Audited(
            data_dir, anvil.rpc_url, model, cid_of_file(model), cid_of_file(later), c.contributors[0][0]
        )


def wheel(bin_dir: Path, cwd: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    """Run the wheel's `meshprov` as a pip user would: another cwd, no PYTHONPATH, no MESHPROV_*, no anvil."""
    path = "/usr/bin:/bin"
    assert shutil.which("anvil", path=path) is None
    clean = {"PATH": path, "HOME": str(cwd), "LANG": "C.UTF-8", **(env or {})}
    done = subprocess.run(
        [str(bin_dir / "meshprov"), *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return Run(done.returncode, done.stdout, done.stderr)


def test_the_wheel_is_installed_alone(wheel_venv: Path, tmp_path: Path) -> None:
    code = (
        "import importlib.util, json, ledger, sys\n"
        "print(json.dumps({'ledger': ledger.__file__, 'path': sys.path,"
        " 'torch': importlib.util.find_spec('torch') is not None}))\n"
    )
    done = subprocess.run(
        [str(wheel_venv / "python"), "-c", code],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(done.stdout)
    assert found["ledger"].startswith(str(wheel_venv.parent)), found
    assert not any(entry.startswith(str(REPO)) for entry in found["path"])
    assert found["torch"] is False


def test_audits_answer_from_the_index_with_no_chain(
    audited: Audited, wheel_venv: Path, tmp_path: Path
) -> None:
    data = ["--data-dir", str(audited.data_dir)]

    lineage = wheel(wheel_venv, tmp_path, "--json", "audit", "lineage", audited.model_cid, "--no-sync", *data)
    assert lineage.code == ExitCode.OK, lineage.err
    assert lineage.json["verified"] is True
    assert lineage.json["lineages"][0]["depth"] == 1
    assert lineage.json["source"]["head"] is None
    assert "no chain configured" in lineage.err

    verify = wheel(wheel_venv, tmp_path, "audit", "verify", str(audited.model), *data, "--json")
    assert verify.code == ExitCode.OK, verify.err
    assert verify.json["status"] == "anchored"
    assert [(a["role"], a["round"]) for a in verify.json["anchors"]] == [("aggregate", 1)]

    round_ = wheel(wheel_venv, tmp_path, "audit", "round", "1", "1", "--json", *data)
    assert round_.code == ExitCode.OK, round_.err
    assert round_.json["round"]["round"] == 1
    assert len(round_.json["round"]["updates"]) == 2

    contributor = wheel(wheel_venv, tmp_path, "audit", "contributor", audited.contributor, "--json", *data)
    assert contributor.code == ExitCode.OK, contributor.err
    assert contributor.json["account"]["address"] == audited.contributor
    assert contributor.json["token_balance"] is None  # a balance needs the chain

    for result in (lineage, verify, round_, contributor):
        assert "anvil not found" not in result.err
        assert "make setup" not in result.err


def test_what_needs_a_chain_says_what_to_configure(
    audited: Audited, wheel_venv: Path, tmp_path: Path
) -> None:
    trustless = wheel(
        wheel_venv,
        tmp_path,
        "audit",
        "lineage",
        audited.model_cid,
        "--trustless",
        "--data-dir",
        str(audited.data_dir),
    )
    assert trustless.code == ExitCode.CONFIG
    assert "--rpc-url" in trustless.err
    assert "MESHPROV_CHAIN_RPC_URL" in trustless.err
    assert "make" not in trustless.err  # a pip user has no Makefile
    assert not (audited.data_dir / "services.json").exists()


def test_audits_against_a_chain_by_option_or_environment(
    audited: Audited, wheel_venv: Path, tmp_path: Path
) -> None:
    data = ["--data-dir", str(audited.data_dir)]
    synced = wheel(
        wheel_venv,
        tmp_path,
        "audit",
        "lineage",
        audited.later_cid,
        "--json",
        *data,
        "--rpc-url",
        audited.rpc_url,
    )
    assert synced.code == ExitCode.OK, synced.err
    assert synced.json["verified"] is True
    assert synced.json["lineages"][0]["depth"] == 2
    assert synced.json["source"]["synced_events"] > 0
    assert synced.json["source"]["behind"] == 0

    by_env = wheel(
        wheel_venv,
        tmp_path,
        "audit",
        "contributor",
        audited.contributor,
        "--json",
        *data,
        env={"MESHPROV_CHAIN_RPC_URL": audited.rpc_url},
    )
    assert by_env.code == ExitCode.OK, by_env.err
    assert by_env.json["token_balance"] is not None
    assert by_env.json["source"]["head"] is not None
