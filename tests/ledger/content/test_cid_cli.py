"""`meshprov cid`: the CID line `ipfs add --only-hash -Q` prints, JSON, and clear errors."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from ledger.cli.app import main
from ledger.exit_codes import ExitCode
from tests.support.unixfs_reference import load_vectors, vector_bytes

HELLO_V0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
HELLO_V1 = "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello world\n")
    return path


def test_prints_just_the_cid_line(hello: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cid", str(hello)]) == 0
    captured = capsys.readouterr()
    assert captured.out == HELLO_V0 + "\n"


def test_v1_flag_prints_the_cidv1_of_the_same_dag(hello: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cid", "--v1", str(hello)]) == 0
    assert capsys.readouterr().out == HELLO_V1 + "\n"


@pytest.mark.parametrize("args", [["cid", "--json"], ["--json", "cid"]])
def test_json_output(args: list[str], hello: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*args, str(hello)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == {
        "cid": HELLO_V0,
        "cid_v1": HELLO_V1,
        "digest": "0x46d44814b9c5af141c3aaab7c05dc5e844ead5f91f12858b021eba45768b4c0e",
        "size": 12,
        "file": str(hello),
    }


def test_matches_kubo_on_a_multi_chunk_vector(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vector = next(v for v in load_vectors() if v["name"] == "one-mib-plus-7")
    path = tmp_path / "v"
    path.write_bytes(vector_bytes("one-mib-plus-7"))
    assert main(["cid", "--workers", "2", str(path)]) == 0
    assert capsys.readouterr().out.strip() == vector["cid_v0"]


def test_reads_standard_input(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"hello world\n")))
    assert main(["cid", "-"]) == 0
    assert capsys.readouterr().out == HELLO_V0 + "\n"


def test_large_file_progress_goes_to_stderr_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"\x01" * (9 * 1024 * 1024))
    assert main(["cid", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith("Qm")


def test_missing_file_is_not_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cid", str(tmp_path / "nope")]) == ExitCode.NOT_FOUND
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no such file" in captured.err


def test_directory_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cid", str(tmp_path)]) == ExitCode.ERROR
    assert "is a directory" in capsys.readouterr().err
