"""Which chain a command uses: a configured endpoint always; the embedded anvil only when anvil is installed (and,
for audits, only to restart a data directory's saved chain); hints fit a source checkout or a pip install."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.chain.client import LedgerClient
from ledger.cli.endpoints import NoChain, audit_chain_url, chain_url, with_chain
from ledger.dev import toolchain
from ledger.errors import ConfigError, ServiceUnavailable
from ledger.exit_codes import ExitCode
from ledger.settings import load_settings


@pytest.fixture
def no_anvil(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As on a machine with only the wheel: no node_modules anvil, none on PATH."""
    monkeypatch.setattr(toolchain, "source_root", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))


def test_a_configured_endpoint_is_used_as_given(tmp_path: Path) -> None:
    s = load_settings(environ={}, data_dir=tmp_path / "d", chain_rpc_url="http://127.0.0.1:9")
    assert audit_chain_url(s, sync=True) == "http://127.0.0.1:9"
    with pytest.raises(
        ServiceUnavailable, match=r"127\.0\.0\.1:9"
    ):  # a command that needs it checks it answers
        chain_url(s)
    assert not (tmp_path / "d").exists()


def test_without_anvil_a_command_that_needs_a_chain_says_what_to_configure(
    tmp_path: Path, no_anvil: None
) -> None:
    s = load_settings(environ={}, data_dir=tmp_path / "d")
    with pytest.raises(NoChain) as err:
        chain_url(s)
    assert err.value.exit_code == ExitCode.CONFIG
    assert "anvil not found" in err.value.message
    hint = str(err.value.hint)
    assert "--rpc-url" in hint
    assert "MESHPROV_CHAIN_RPC_URL" in hint
    assert "make" not in hint  # a pip user has no Makefile
    assert not (tmp_path / "d").exists(), "nothing was written for a command that could not run"


def test_only_a_source_checkout_is_sent_to_make_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    assert toolchain.in_source_checkout()  # the tests run from one
    assert "`make setup`" in str(NoChain("x").hint)
    assert "`make setup`" in str(toolchain.install_hint("Foundry's binaries", "install anvil"))
    monkeypatch.setattr(toolchain, "source_root", lambda: None)
    assert "make" not in str(NoChain("x").hint)
    assert toolchain.install_hint("Foundry's binaries", "install anvil") == "install anvil"


def test_without_anvil_an_audit_reads_the_index_alone(tmp_path: Path, no_anvil: None) -> None:
    data = tmp_path / "d"
    (data / "anvil").mkdir(parents=True)
    (data / "anvil" / "state.json").write_text("{}")  # a saved chain it cannot restart
    s = load_settings(environ={}, data_dir=data)
    assert audit_chain_url(s, sync=True) is None
    assert audit_chain_url(s, sync=False) is None
    assert not (data / "services.json").exists()


def test_the_library_client_never_picks_a_chain_itself(tmp_path: Path) -> None:
    s = load_settings(environ={}, data_dir=tmp_path)
    with pytest.raises(ConfigError) as err:
        LedgerClient.from_settings(s, read_only=True)
    assert "chain_rpc_url is not set" in err.value.message
    assert "--rpc-url" in str(err.value.hint)
    assert not (tmp_path / "services.json").exists()
    assert with_chain(s, None) is s
    assert with_chain(s, "http://127.0.0.1:1").chain_rpc_url == "http://127.0.0.1:1"
