"""The exported contract artifacts: loadable without a compiler, complete, and in step with the sources."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from ledger.chain.artifacts import ArtifactUnavailable, load_artifact
from ledger.dev import build
from ledger.exit_codes import ExitCode
from tests.support import REPO


def test_artifacts_match_the_sources_without_compiling() -> None:
    # Every source unit recorded (ours and OpenZeppelin's) still hashes the same, and no contract source is new.
    assert build.stale_sources() == []


@pytest.mark.slow
def test_recompiling_reproduces_the_committed_artifacts() -> None:
    assert build.drift(build.compile_artifacts()) == []


def test_ledger_artifact_has_what_clients_use() -> None:
    ledger = load_artifact("MeshLedger")
    functions = {f["name"] for f in ledger.abi_entries("function")}
    assert {
        "createTask",
        "submitUpdate",
        "submitUpdateFor",
        "submitUpdatesFor",
        "commitScores",
        "revealScores",
        "scoreCommitment",
        "finalizeRound",
        "finalizeCarryOver",
        "claimRewards",
        "scheduleRoleChange",
        "executeRoleChange",
        "validatorSet",
        "roundView",
        "tally",
        "clock",
        "hashSubmission",
        "eip712Domain",
    } <= functions
    events = {e["name"] for e in ledger.abi_entries("event")}
    assert {
        "UpdateSubmitted",
        "ScoresCommitted",
        "ScoresRevealed",
        "RoundFinalized",
        "RewardsClaimed",
        "RoleChangeScheduled",
        "RoundOpened",
        "ReputationInitialized",
    } <= events
    errors = {e["name"] for e in ledger.abi_entries("error")}
    # Our errors carry the component prefix; the others are OpenZeppelin's, inherited from its base contracts.
    assert {name for name in errors if not name.startswith("MeshLedger_")} == {
        "AccessControlBadConfirmation",
        "AccessControlUnauthorizedAccount",
        "InvalidShortString",
        "StringTooLong",
    }
    assert "MeshLedger_NotContributor" in errors
    assert "vote" not in functions
    assert "VotesCast" not in events
    # EIP-170: the runtime code must fit in 24,576 bytes or no chain accepts the deployment; the settlement
    # lives in the RoundSettlement library, linked at deployment.
    # (a placeholder `__$…$__` has the length of the address it stands for)
    assert (len(ledger.deployed_bytecode) - 2) // 2 <= 24_576
    assert ledger.libraries == ["RoundSettlement"]
    library = load_artifact("RoundSettlement")
    assert len(bytes.fromhex(library.deployed_bytecode[2:])) <= 24_576
    # Linking writes the library's address over every placeholder, and only there.
    linked = ledger.linked_bytecode({"RoundSettlement": "0x" + "ab" * 20})
    assert "__" not in linked
    assert linked.count("ab" * 20) == 4  # the four call sites
    assert len(linked) == len(ledger.bytecode)
    assert ledger.compiler_version.startswith("0.8.30")
    assert ledger.sources_hash == load_artifact("MeshToken").sources_hash


def test_unknown_artifact_is_named() -> None:
    with pytest.raises(ArtifactUnavailable, match="unknown contract"):
        load_artifact("Nope")


def test_compiler_settings_follow_foundry_toml() -> None:
    settings = build.CompilerSettings.from_foundry_toml(REPO / "contracts" / "foundry.toml")
    toml = (REPO / "contracts" / "foundry.toml").read_text()
    assert f"optimizer_runs = {settings.optimizer_runs}" in toml
    assert f'evm_version = "{settings.evm_version}"' in toml
    assert settings.remappings == ("@openzeppelin/contracts/=node_modules/@openzeppelin/contracts/",)
    recorded = json.loads((build.ARTIFACTS_DIR / "MeshLedger.json").read_text())["compiler"]["settings"]
    assert recorded == settings.solc()


def _fake_checkout(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny checkout with one source file, and an artifact directory recording it."""
    root = tmp_path / "repo"
    (root / "contracts" / "src").mkdir(parents=True)
    (root / "contracts" / "src" / "A.sol").write_text("contract A {}\n")
    out = tmp_path / "artifacts"
    out.mkdir()
    recorded = {"contracts/src/A.sol": hashlib.sha256(b"contract A {}\n").hexdigest()}
    for name in build.CONTRACTS:
        (out / f"{name}.json").write_text(json.dumps({"sources": recorded}))
    return root, out


def test_stale_sources_notices_changed_new_and_removed_files(tmp_path: Path) -> None:
    root, out = _fake_checkout(tmp_path)
    assert build.stale_sources(out, root) == []
    (root / "contracts" / "src" / "A.sol").write_text("contract A { uint x; }\n")
    (root / "contracts" / "src" / "B.sol").write_text("contract B {}\n")
    problems = build.stale_sources(out, root)
    assert "contracts/src/A.sol changed" in problems
    assert "contracts/src/B.sol is not in MeshLedger.json" in problems
    (root / "contracts" / "src" / "A.sol").unlink()
    assert "contracts/src/A.sol is gone" in build.stale_sources(out, root)


def test_check_reports_drift_with_the_mismatch_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "artifacts"
    shutil.copytree(build.ARTIFACTS_DIR, out)
    fresh = {name: json.loads((out / f"{name}.json").read_text()) for name in build.CONTRACTS}
    monkeypatch.setattr(build, "compile_artifacts", lambda root=None: fresh)
    assert build.main(["--check", "--out", str(out)]) == 0
    fresh["MeshLedger"] = {**fresh["MeshLedger"], "bytecode": "0x00"}
    assert build.main(["--check", "--out", str(out)]) == ExitCode.MISMATCH
    assert "MeshLedger.json: bytecode differs" in capsys.readouterr().err


def test_build_writes_sorted_stable_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = {
        name: json.loads((build.ARTIFACTS_DIR / f"{name}.json").read_text()) for name in build.CONTRACTS
    }
    monkeypatch.setattr(build, "compile_artifacts", lambda root=None: stored)
    assert build.main(["--out", str(tmp_path)]) == 0
    for name in build.CONTRACTS:
        # Byte-identical to the committed file: a rebuild from unchanged sources leaves no diff in git.
        assert (tmp_path / f"{name}.json").read_bytes() == (build.ARTIFACTS_DIR / f"{name}.json").read_bytes()
