"""`meshprov store put | get | pin | stat | has`: exit codes, messages, atomic output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ledger.cli.app import main
from ledger.exit_codes import ExitCode
from tests.support.kubo import HELLO, HELLO_V0, MISSING_V0, FakeKubo, kubo_store

HELLO_V1 = "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MESHPROV_"):
            monkeypatch.delenv(name)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    path = tmp_path / "hello.txt"
    path.write_bytes(HELLO)
    return path


def run(data_dir: Path, *args: str) -> int:
    return main(["--data-dir", str(data_dir), "store", *args])


def test_put_prints_the_cid_and_stores_under_the_data_dir(
    data_dir: Path, hello: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(data_dir, "put", str(hello)) == 0
    assert capsys.readouterr().out == HELLO_V0 + "\n"
    assert (data_dir / "blocks" / "SHARDING").is_file()
    assert run(data_dir, "put", "--json", str(hello)) == 0
    assert json.loads(capsys.readouterr().out) == {
        "cid": HELLO_V0,
        "cid_v1": HELLO_V1,
        "digest": "0x46d44814b9c5af141c3aaab7c05dc5e844ead5f91f12858b021eba45768b4c0e",
        "size": 12,
        "store": "local",
    }


def test_get_writes_the_file(
    data_dir: Path, hello: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(data_dir, "put", str(hello)) == 0
    capsys.readouterr()
    out = tmp_path / "copy.txt"
    assert run(data_dir, "get", HELLO_V1, "-o", str(out), "--json") == 0
    assert out.read_bytes() == HELLO
    data = json.loads(capsys.readouterr().out)
    assert data == {"cid": HELLO_V0, "path": str(out), "size": 12, "store": "local"}


def test_get_of_missing_content_is_not_found_and_writes_nothing(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x"
    assert run(data_dir, "get", MISSING_V0, "-o", str(out)) == ExitCode.NOT_FOUND
    assert "not in the local store" in capsys.readouterr().err
    assert not out.exists()


def test_get_over_the_limit_is_refused_before_writing(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"\x02" * 300_000)
    assert run(data_dir, "put", str(big)) == 0
    cid = capsys.readouterr().out.strip()
    out = tmp_path / "out"
    assert run(data_dir, "get", cid, "-o", str(out), "--max-bytes", "1000") == ExitCode.ERROR
    assert "more than the limit of 1000 bytes" in capsys.readouterr().err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big", "data"]


def test_get_of_a_corrupt_block_is_a_mismatch_and_writes_nothing(
    data_dir: Path, hello: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(data_dir, "put", str(hello)) == 0
    (block,) = (data_dir / "blocks").glob("*/*.data")
    block.write_bytes(block.read_bytes().replace(b"hello", b"HELLO"))
    out = tmp_path / "out"
    assert run(data_dir, "get", HELLO_V0, "-o", str(out)) == ExitCode.MISMATCH
    assert "corrupt" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("command", [["get", "-o", "x"], ["pin"], ["stat"], ["has"]])
def test_a_cid_that_does_not_parse_is_a_usage_error(
    command: list[str], data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(data_dir, command[0], "Qm-not-a-cid", *command[1:]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "invalid CID 'Qm-not-a-cid'" in err
    assert "hint:" in err


def test_pin_stat_and_has(data_dir: Path, hello: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(data_dir, "put", str(hello)) == 0
    capsys.readouterr()
    assert run(data_dir, "pin", HELLO_V0) == 0
    assert f"pinned {HELLO_V0}" in capsys.readouterr().err
    assert run(data_dir, "stat", HELLO_V0) == 0
    assert "block_size  20" in capsys.readouterr().out
    assert run(data_dir, "stat", "--json", HELLO_V0) == 0
    stat = json.loads(capsys.readouterr().out)
    assert (stat["size"], stat["block_size"], stat["pinned"]) == (12, 20, True)
    assert run(data_dir, "has", HELLO_V0) == 0
    assert capsys.readouterr().out == "yes\n"
    assert run(data_dir, "has", MISSING_V0) == ExitCode.NOT_FOUND
    assert capsys.readouterr().out == "no\n"


def test_put_of_a_missing_file(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(data_dir, "put", str(tmp_path / "nope")) == ExitCode.NOT_FOUND
    assert "no such file" in capsys.readouterr().err


def test_the_kubo_store_is_chosen_by_option(
    data_dir: Path, hello: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ledger.content

    fake = FakeKubo()
    chosen: list[str] = []

    def fake_open(settings: object) -> object:
        chosen.append(settings.store)  # type: ignore[attr-defined]
        return kubo_store(fake)

    monkeypatch.setattr(ledger.content, "open_store", fake_open)
    assert run(data_dir, "put", "--store", "kubo", str(hello)) == 0
    assert capsys.readouterr().out == HELLO_V0 + "\n"
    assert chosen == ["kubo"]
    assert fake.commands() == ["add"]


def test_an_unreachable_kubo_is_unavailable(
    data_dir: Path, hello: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import functools

    import ledger.content.kubo_store as kubo

    monkeypatch.setattr(kubo, "RetryPolicy", functools.partial(kubo.RetryPolicy, sleep=lambda s: None))
    # Port 9 (discard) on loopback: nothing listens there in the test environment, so the connection is refused.
    code = run(data_dir, "put", "--store", "kubo", "--kubo-api-url", "http://127.0.0.1:9", str(hello))
    assert code == ExitCode.UNAVAILABLE
    err = capsys.readouterr().err
    assert "content store at http://127.0.0.1:9 is unavailable" in err
    assert "hint:" in err
