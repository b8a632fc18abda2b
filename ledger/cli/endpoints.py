"""Which chain and broker a command talks to: the configured endpoint, else an embedded dev service.

ledger's library code (``LedgerClient.from_settings``, the index, the audit) takes the endpoint it is given and
never starts a process; this is where a command line decides to. The configured endpoint (``--rpc-url``,
``MESHPROV_CHAIN_RPC_URL``, ``chain_rpc_url``; ``redis_url`` for the broker) always wins. Without one:

* a command that needs a chain (deploy, follow, `--trustless`, workers, nodes) reuses the anvil `meshprov dev up`
  recorded in ``<data_dir>/services.json``, or starts it there, when anvil is installed;
* an audit, which can answer from the index alone, reuses a running embedded anvil, restarts the data
  directory's saved one (a stopped demo) when anvil is installed, and otherwise answers from the index;
* a read that never needs the chain (`audit … --no-sync`, `index status`) only reuses a running one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.errors import ConfigError, MissingBinary

if TYPE_CHECKING:
    from ledger.settings import Settings


class NoChain(ConfigError):
    """No chain endpoint is configured and no embedded anvil can be started (a configuration problem, exit 5: a
    command that waits out an unavailable chain must not wait for this)."""

    def __init__(self, why: str) -> None:
        from ledger.dev.toolchain import in_source_checkout

        hint = (
            "pass --rpc-url URL or set MESHPROV_CHAIN_RPC_URL; for the embedded dev chain install Foundry's "
            "anvil (https://getfoundry.sh) on PATH or set MESHPROV_ANVIL_BIN"
        )
        if in_source_checkout():
            hint += " (in this source checkout `make setup` installs it)"
        super().__init__(why, hint=hint)


def with_chain(settings: Settings, url: str | None) -> Settings:
    """``settings`` with ``chain_rpc_url`` set to the endpoint a command resolved (unchanged for None)."""
    if url is None or url == settings.chain_rpc_url:
        return settings
    return settings.model_copy(update={"chain_rpc_url": url})


def chain_url(settings: Settings) -> str:
    """For a command that needs a chain: the configured endpoint (checked to answer), else the embedded anvil
    (reused or started)."""
    from ledger.dev.services import DevServices, anvil_chain_id

    if settings.chain_rpc_url:
        anvil_chain_id(settings.chain_rpc_url)
        return settings.chain_rpc_url

    services = DevServices(settings)
    running = services.running("anvil")
    if running is not None:
        return running.url
    _require_anvil(settings)
    return services.up(("anvil",))["anvil"].url


def audit_chain_url(settings: Settings, *, sync: bool) -> str | None:
    """For a command that can answer from the index alone: the configured endpoint, a running embedded anvil,
    or (``sync`` only) the data directory's saved embedded chain restarted when anvil is installed; else None."""
    if settings.chain_rpc_url:
        return settings.chain_rpc_url
    from ledger.dev.services import AnvilProcess, DevServices

    services = DevServices(settings)
    running = services.running("anvil")
    if running is not None:
        return running.url
    saved = (settings.data_dir / AnvilProcess.name / "state.json").is_file()
    if not (sync and saved and _anvil_installed(settings)):
        return None
    return services.up(("anvil",))["anvil"].url


def redis_url(settings: Settings) -> str:
    """The broker: the configured URL (checked to answer), else the embedded redis-server (reused or started)."""
    from ledger.dev.services import DevServices, redis_ping

    if settings.redis_url:
        redis_ping(settings.redis_url)
        return settings.redis_url

    return DevServices(settings).up(("redis",))["redis"].url


def _anvil_installed(settings: Settings) -> bool:
    try:
        _require_anvil(settings)
    except NoChain:
        return False
    return True


def _require_anvil(settings: Settings) -> None:
    from ledger.dev.services import AnvilProcess

    try:
        AnvilProcess.binary(settings)
    except MissingBinary as exc:
        raise NoChain(
            f"no chain to talk to: chain_rpc_url is not set and the embedded anvil cannot start ({exc.message})"
        ) from None
