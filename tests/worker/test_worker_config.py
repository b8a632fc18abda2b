"""The worker's tuning comes from the settings like every role's: flags > MESHPROV_WORKER_* > TOML > defaults, with
the invariants between the values checked and unknown keys refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.errors import ConfigError
from ledger.settings import load_settings
from worker.cli import _settings_and_config
from worker.config import WorkerConfig


def test_defaults_derive_from_the_hard_time_limit() -> None:
    cfg = WorkerConfig.from_settings(load_settings(environ={}))
    assert (cfg.time_limit_s, cfg.soft_time_limit_s, cfg.visibility_timeout_s, cfg.lock_lease_s) == (
        600,
        540,
        1800,
        600,
    )
    assert (cfg.poll_interval_s, cfg.job_ttl_s, cfg.max_retries, cfg.heartbeat_s) == (2.0, 120, 6, 5.0)
    changed = WorkerConfig.from_settings(load_settings(environ={"MESHPROV_WORKER_TIME_LIMIT_S": "100"}))
    assert (changed.soft_time_limit_s, changed.visibility_timeout_s, changed.lock_lease_s) == (90, 300, 100)


def test_environment_and_file_set_the_tuning(tmp_path: Path) -> None:
    config = tmp_path / "m.toml"
    config.write_text("worker_poll_interval_s = 0.5\nworker_job_ttl_s = 30\nworker_max_retries = 2\n")
    env = {"MESHPROV_WORKER_POLL_INTERVAL_S": "0.25", "MESHPROV_WORKER_CACHE_DIR": str(tmp_path / "c")}
    cfg = WorkerConfig.from_settings(load_settings(config, environ=env))
    assert cfg.poll_interval_s == 0.25  # env beats file
    assert cfg.job_ttl_s == 30  # file beats default
    assert cfg.max_retries == 2
    assert cfg.resolved_cache_dir(tmp_path) == tmp_path / "c"


def test_flags_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHPROV_WORKER_POLL_INTERVAL_S", "7")
    monkeypatch.setenv("MESHPROV_WORKER_HEARTBEAT_S", "3")
    _, cfg = _settings_and_config(worker_poll_interval_s=1.5, worker_heartbeat_s=None)
    assert cfg.poll_interval_s == 1.5  # the flag
    assert cfg.heartbeat_s == 3.0  # no flag: the environment


def test_a_broken_relation_from_the_environment_names_the_setting() -> None:
    settings = load_settings(
        environ={"MESHPROV_WORKER_TIME_LIMIT_S": "100", "MESHPROV_WORKER_VISIBILITY_TIMEOUT_S": "50"}
    )
    with pytest.raises(ConfigError) as err:
        WorkerConfig.from_settings(settings)
    assert "worker_visibility_timeout_s=50" in err.value.message
    assert "MESHPROV_WORKER_VISIBILITY_TIMEOUT_S" in str(err.value.hint)


def test_out_of_range_and_unknown_worker_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="worker_poll_interval_s"):
        load_settings(environ={"MESHPROV_WORKER_POLL_INTERVAL_S": "0"})
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"MESHPROV_WORKER_POLL_INTERVAL": "1"})
    assert "did you mean `worker_poll_interval_s`" in str(err.value)
    config = tmp_path / "m.toml"
    config.write_text("worker_job_tll_s = 3\n")
    with pytest.raises(ConfigError, match="did you mean `worker_job_ttl_s`"):
        load_settings(config, environ={})
