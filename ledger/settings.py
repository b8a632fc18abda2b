"""One typed settings object for every role (node, validator, aggregator, auditor, dashboard, dev services).

Sources, highest precedence first:

1. CLI flags (passed as keyword overrides to :func:`load_settings`; the global ones, such as ``--data-dir`` and
   ``--rpc-url``, through ``ledger/cli/state.py``),
2. environment variables ``MESHPROV_<FIELD>`` (for example ``MESHPROV_CHAIN_RPC_URL``),
3. a TOML file of flat ``field = value`` pairs: ``--config FILE``, else ``$MESHPROV_CONFIG``,
   else ``<data_dir>/meshprov.toml`` when it exists,
4. the defaults below, which run everything embedded on one machine.

Unknown keys are errors in every source (a typo must not silently fall back to a default). Private keys are
``SecretStr``: never printed, never logged, and best read from a file (``private_key_file``).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from ledger.errors import ConfigError

ENV_PREFIX = "MESHPROV_"
# Environment variables with our prefix that are not settings fields.
_NON_FIELD_ENV = {"MESHPROV_CONFIG"}


class Settings(BaseSettings):
    """Configuration shared by every meshprov role. Each field is documented below its declaration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        frozen=True,
        use_attribute_docstrings=True,
    )

    data_dir: Path = Path(".meshprov")
    """Where embedded services, the deployment record, the local block store and the index live (also
    `--data-dir`)."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Logging threshold for every role (logs go to stderr; also `--log-level`)."""

    # --- chain -------------------------------------------------------------------------------------------
    chain_rpc_url: str | None = None
    """EVM JSON-RPC endpoint (also `--rpc-url`). Unset: commands that need a chain use the embedded anvil of
    `meshprov dev up` (started on demand when anvil is installed); audits answer from the index."""

    chain_id: int | None = None
    """Expected chain id; when set, every command refuses an endpoint that reports another."""

    confirmations: int = Field(default=0, ge=0, le=1000)
    """Blocks a log must be buried under before the index records it (0 on anvil, 6-12 on public chains)."""

    tx_timeout_s: float = Field(default=60.0, gt=0)
    """Seconds to wait for a transaction receipt before giving up."""

    private_key: SecretStr | None = None
    """Hex private key of this member (prefer `private_key_file`). Never printed or logged."""

    private_key_file: Path | None = None
    """File holding this member's hex private key (first line). Takes precedence over `private_key`."""

    deployment_file: Path | None = None
    """Deployment record (chain id, contract addresses, block) of `meshprov chain deploy`.
    Unset: `<data_dir>/deployment.json`."""

    task_id: int = Field(default=1, ge=1)
    """The consortium task this process works on."""

    # --- content -----------------------------------------------------------------------------------------
    store: Literal["local", "kubo"] = "local"
    """Content store: `local` is an embedded block directory; `kubo` talks to a Kubo RPC API."""

    store_dir: Path | None = None
    """Directory of the local block store. Unset: `<data_dir>/blocks`."""

    kubo_api_url: str = "http://127.0.0.1:5001"
    """Kubo RPC API base URL (used when `store = "kubo"`)."""

    gateways: Annotated[list[str], NoDecode] = []
    """Trustless gateways (`http(s)://host:port`) asked, in order, for content the local store lacks; every block
    is verified against its CID (docs/gateway.md). TOML: a list; environment: comma- or space-separated URLs."""

    keep_verified: bool = True
    """Keep (write and pin in the local store) the blocks fetched from gateways as they are verified, and so serve
    them: the replication rule that keeps an update fetchable after its author goes offline (docs/gateway.md)."""

    max_update_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    """Largest update or aggregate file accepted, checked before the download completes."""

    # --- broker and index --------------------------------------------------------------------------------
    redis_url: str | None = None
    """Redis URL for the Celery broker and results. Unset: the embedded redis-server of `meshprov dev up`."""

    index_url: str | None = None
    """SQLAlchemy URL of the event index. Unset: SQLite at `<data_dir>/index.sqlite`."""

    # --- embedded dev services -----------------------------------------------------------------------------
    anvil_bin: Path | None = None
    """Path to anvil. Unset: `node_modules/@foundry-rs/anvil-*/bin/anvil` of the source tree, then PATH."""

    redis_server_bin: Path | None = None
    """Path to redis-server. Unset: PATH (Debian's `redis-server` package)."""

    anvil_port: int = Field(default=0, ge=0, le=65535)
    """Port for the embedded anvil; 0 picks a free one."""

    redis_port: int = Field(default=0, ge=0, le=65535)
    """Port for the embedded redis-server; 0 picks a free one."""

    anvil_mnemonic: str = "test test test test test test test test test test test junk"
    """Mnemonic of the embedded anvil's funded dev accounts (public: development only)."""

    service_start_timeout_s: float = Field(default=15.0, gt=0)
    """Seconds an embedded service may take to answer before start-up is abandoned and it is stopped."""

    # --- workers (validators, the aggregator and the watcher; checked together in worker/config.py) --------
    worker_poll_interval_s: float = Field(default=2.0, gt=0)
    """Seconds between the watcher's looks at the chain."""

    worker_job_ttl_s: int = Field(default=120, ge=1)
    """The watcher enqueues a job at most once per this many seconds while the chain shows it still to do."""

    worker_time_limit_s: int = Field(default=600, ge=1)
    """Hard time limit of a job, seconds: the pool kills its process after this long."""

    worker_soft_time_limit_s: int | None = Field(default=None, ge=1)
    """A job gets SoftTimeLimitExceeded (and is retried) after this many seconds.
    Unset: 90% of `worker_time_limit_s`."""

    worker_visibility_timeout_s: int | None = Field(default=None, ge=1)
    """Redis redelivers a job not acknowledged within this many seconds. Unset: 3 x `worker_time_limit_s`."""

    worker_lock_lease_s: int | None = Field(default=None, ge=1)
    """Lease of the per-round Redis lock, seconds (renewed while the job progresses).
    Unset: `worker_time_limit_s`."""

    worker_max_retries: int = Field(default=6, ge=0)
    """Retries of a transient fault before a job is given up (the watcher re-enqueues it later)."""

    worker_retry_backoff_s: int = Field(default=2, ge=1)
    """Bound of the first retry's delay, seconds (full jitter); each retry doubles it."""

    worker_retry_backoff_max_s: int = Field(default=120, ge=1)
    """Largest retry delay, seconds."""

    worker_heartbeat_s: float = Field(default=5.0, gt=0)
    """Seconds between a worker's health records (each expires after three periods)."""

    worker_cache_dir: Path | None = None
    """Downloaded bases and updates, and the verdict cache. Unset: `<data_dir>/worker`."""

    # --- dashboard -----------------------------------------------------------------------------------------
    dashboard_host: str = "127.0.0.1"
    """Address the dashboard listens on."""

    dashboard_port: int = Field(default=8787, ge=0, le=65535)
    """Port the dashboard listens on."""

    @field_validator("gateways", mode="before")
    @classmethod
    def _gateway_list(cls, value: object) -> object:
        if isinstance(value, str):  # from the environment: "http://a:8080, http://b:8080"
            return [g for g in value.replace(",", " ").split() if g]
        return value

    @field_validator("gateways")
    @classmethod
    def _gateway_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"gateway {url!r} is not an http:// or https:// URL")
        return value

    @field_validator("chain_rpc_url", "redis_url", "index_url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    # --- derived -------------------------------------------------------------------------------------------
    @property
    def resolved_store_dir(self) -> Path:
        return self.store_dir if self.store_dir is not None else self.data_dir / "blocks"

    @property
    def resolved_deployment_file(self) -> Path:
        return self.deployment_file if self.deployment_file is not None else self.data_dir / "deployment.json"

    @property
    def resolved_index_url(self) -> str:
        if self.index_url:
            return self.index_url
        return f"sqlite:///{(self.data_dir / 'index.sqlite').resolve()}"

    def signing_key(self) -> str | None:
        """The member's private key (hex), from the file if one is configured, else from the setting."""
        if self.private_key_file is not None:
            try:
                text = self.private_key_file.read_text(encoding="utf-8").strip().splitlines()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read private_key_file {self.private_key_file}: {exc.strerror}",
                    hint="point MESHPROV_PRIVATE_KEY_FILE at a readable file holding a hex key",
                ) from None
            if not text:
                raise ConfigError(f"private_key_file {self.private_key_file} is empty")
            return text[0].strip()
        return self.private_key.get_secret_value() if self.private_key is not None else None

    def public_dict(self) -> dict[str, Any]:
        """Every setting as JSON-ready values, secrets masked: safe to print."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                out[name] = "**********" if value.get_secret_value() else ""
            elif isinstance(value, Path):
                out[name] = str(value)
            else:
                out[name] = value
        return out


FIELDS = tuple(Settings.model_fields)


def markdown_table() -> str:
    """The configuration table of README.md, generated from the fields so the two cannot drift apart."""
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.default
        shown = "unset" if default is None else f"`{default}`"
        if isinstance(default, str) and name == "anvil_mnemonic":
            shown = "anvil's public test mnemonic"
        description = " ".join((info.description or "").split()).replace("|", "\\|")
        rows.append(f"| `{name}` | `{ENV_PREFIX}{name.upper()}` | {shown} | {description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # pragma: no cover - `python -m ledger.settings` prints the README table
    print(markdown_table(), end="")


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, FIELDS, n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else "see the configuration table in README.md"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror}", hint="pass an existing TOML file"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", hint="fix the line named") from None
    for key, value in data.items():
        if key not in FIELDS:
            raise ConfigError(f"unknown setting `{key}` in {path}", hint=_suggest(key))
        if isinstance(value, dict):
            raise ConfigError(f"setting `{key}` in {path} is a table; settings are flat `key = value` pairs")
    return data


def _check_env(environ: dict[str, str]) -> None:
    for name in environ:
        if name.startswith(ENV_PREFIX) and name not in _NON_FIELD_ENV:
            key = name[len(ENV_PREFIX) :].lower()
            if key not in FIELDS:
                raise ConfigError(f"unknown setting in environment variable {name}", hint=_suggest(key))


def _format_validation(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        parts.append(f"`{loc}`: {err['msg']}")
    return f"invalid settings ({source}): " + "; ".join(parts)


def load_settings(
    config_file: Path | None = None, environ: dict[str, str] | None = None, **overrides: Any
) -> Settings:
    """Build the settings from overrides (CLI flags) > environment > TOML file > defaults.

    ``overrides`` whose value is ``None`` are ignored, so CLI options can pass their defaults straight through.
    """
    env = dict(os.environ if environ is None else environ)
    _check_env(env)
    flags = {k: v for k, v in overrides.items() if v is not None}
    for key in flags:
        if key not in FIELDS:
            raise ConfigError(f"unknown setting `{key}`", hint=_suggest(key))

    if config_file is None and env.get("MESHPROV_CONFIG"):
        config_file = Path(env["MESHPROV_CONFIG"])
    file_values: dict[str, Any] = {}
    if config_file is not None:
        file_values = _read_toml(config_file)
    else:
        data_dir = (
            flags.get("data_dir")
            or env.get(ENV_PREFIX + "DATA_DIR")
            or Settings.model_fields["data_dir"].default
        )
        implicit = Path(data_dir) / "meshprov.toml"
        if implicit.is_file():
            file_values = _read_toml(implicit)

    env_values = {
        k[len(ENV_PREFIX) :].lower(): v
        for k, v in env.items()
        if k.startswith(ENV_PREFIX) and k not in _NON_FIELD_ENV
    }
    # pydantic-settings would read os.environ itself; we pass the merged values explicitly instead so that the
    # precedence is ours, tests can inject an environment, and unknown keys are caught above with a hint.
    merged = {**file_values, **env_values, **flags}
    try:
        return _Explicit(**merged)
    except ValidationError as exc:
        raise ConfigError(
            _format_validation(exc, "flags, environment and config file"),
            hint="fix the value named, or unset it to use the default",
        ) from None


class _Explicit(Settings):
    """Settings built only from the values given: :func:`load_settings` has already merged every source."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)
