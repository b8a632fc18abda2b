"""Settings: precedence (flags > env > TOML > defaults), unknown keys, malformed TOML, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.cli.app import main
from ledger.errors import ConfigError
from ledger.exit_codes import ExitCode
from ledger.settings import Settings, load_settings, markdown_table
from tests.support import REPO


def test_defaults_run_everything_embedded() -> None:
    s = load_settings(environ={})
    assert s.chain_rpc_url is None
    assert s.redis_url is None
    assert s.store == "local"
    assert s.resolved_store_dir == Path(".meshprov") / "blocks"
    assert s.resolved_index_url.endswith("/.meshprov/index.sqlite")


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text('task_id = 3\nconfirmations = 2\nlog_level = "ERROR"\n')
    env = {"MESHPROV_TASK_ID": "5", "MESHPROV_CONFIRMATIONS": "4"}
    s = load_settings(cfg, environ=env, task_id=9)
    assert s.task_id == 9  # flag beats env and file
    assert s.confirmations == 4  # env beats file
    assert s.log_level == "ERROR"  # file beats default
    assert s.tx_timeout_s == 60.0  # default


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text("task_id = 7\n")
    assert load_settings(environ={"MESHPROV_CONFIG": str(cfg)}).task_id == 7


def test_data_dir_toml_is_read_implicitly(tmp_path: Path) -> None:
    (tmp_path / "meshprov.toml").write_text("task_id = 11\n")
    assert load_settings(environ={"MESHPROV_DATA_DIR": str(tmp_path)}).task_id == 11


def test_none_flags_do_not_override(tmp_path: Path) -> None:
    s = load_settings(environ={"MESHPROV_TASK_ID": "5"}, task_id=None)
    assert s.task_id == 5


def test_unknown_key_in_toml_names_key_and_suggests(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text("redis_ulr = 'redis://x'\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, environ={})
    assert "redis_ulr" in str(err.value)
    assert "redis_url" in str(err.value)


def test_unknown_environment_variable_is_an_error() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"MESHPROV_CHAIN_RPC": "http://x"})
    assert "MESHPROV_CHAIN_RPC" in str(err.value)
    assert "chain_rpc_url" in str(err.value)


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("task_id = = 3\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, environ={})
    assert "bad.toml" in str(err.value)
    assert "line 1" in str(err.value)


def test_table_in_toml_is_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text("[chain_rpc_url]\nx = 1\n")
    with pytest.raises(ConfigError, match="flat"):
        load_settings(cfg, environ={})


def test_invalid_value_names_field() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"MESHPROV_CONFIRMATIONS": "-1"})
    assert "confirmations" in str(err.value)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(Path("/nonexistent/meshprov.toml"), environ={})


def test_private_key_is_never_printed(tmp_path: Path) -> None:
    key = "0x" + "ab" * 32
    s = load_settings(environ={"MESHPROV_PRIVATE_KEY": key})
    assert s.signing_key() == key
    assert key not in repr(s)
    assert key not in str(s)
    assert key not in str(s.public_dict())
    assert s.public_dict()["private_key"] == "**********"


def test_private_key_file_wins_over_value(tmp_path: Path) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_text("0x" + "cd" * 32 + "\n")
    s = load_settings(
        environ={"MESHPROV_PRIVATE_KEY": "0x" + "ab" * 32, "MESHPROV_PRIVATE_KEY_FILE": str(keyfile)}
    )
    assert s.signing_key() == "0x" + "cd" * 32


def test_unreadable_private_key_file() -> None:
    s = load_settings(environ={"MESHPROV_PRIVATE_KEY_FILE": "/nonexistent/key"})
    with pytest.raises(ConfigError, match="private_key_file"):
        s.signing_key()


def test_every_field_is_documented() -> None:
    undocumented = [
        name for name, info in Settings.model_fields.items() if not (info.description or "").strip()
    ]
    assert undocumented == []


def test_readme_configuration_table_is_current() -> None:
    readme = (REPO / "README.md").read_text()
    begin, end = "<!-- settings-table:begin -->\n", "<!-- settings-table:end -->"
    table = readme[readme.index(begin) + len(begin) : readme.index(end)]
    assert table == markdown_table(), (
        "README's table is stale: regenerate it with `python -m ledger.settings`"
    )


def test_cli_reports_config_error_with_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("not toml at all ===\n")
    code = main(["--config", str(cfg), "dev", "status", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == ExitCode.CONFIG
    assert "not valid TOML" in err
    assert "Traceback" not in err
