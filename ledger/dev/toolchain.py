"""Where the non-Python programs meshprov drives live: anvil, forge, cast, the solc wrapper, redis-server.

Foundry binaries come from npm (`@foundry-rs/<tool>-<os>-<arch>`), so a source checkout finds them under
``node_modules``; an installed meshprov (a wheel, a container) finds them on PATH or through a setting. Hints
name `make setup` only when running from a source checkout: a pip user has no Makefile.
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

from ledger.errors import MissingBinary

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def source_root() -> Path | None:
    """The meshprov source tree this package runs from (editable install), if any."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "package.json").is_file() and (here / "Makefile").is_file() else None


def in_source_checkout() -> bool:
    return source_root() is not None


def artifacts_hint() -> str:
    """What to do about missing or broken contract artifacts (``ledger/artifacts``)."""
    if in_source_checkout():
        return "rebuild them with `make contracts` (python -m ledger.dev.build) in the source checkout"
    return "reinstall meshprov: its package ships the compiled contracts in ledger/artifacts"


def install_hint(what: str, otherwise: str) -> str:
    """How to get ``what``: `make setup` in a source checkout, else ``otherwise`` (what a pip user can do)."""
    if in_source_checkout():
        return f"run `make setup` in the source checkout (it installs {what}), or {otherwise}"
    return otherwise


def _npm_platform() -> str:
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    return f"{system}-{arch}"


def foundry_binary(tool: str, configured: Path | None = None) -> Path:
    """Path to a Foundry binary (``anvil``, ``forge`` or ``cast``)."""
    looked: list[str] = []
    if configured is not None:
        if configured.is_file() and os.access(configured, os.X_OK):
            return configured
        raise MissingBinary(
            tool, [str(configured)], hint=f"the configured {tool} path is not an executable file"
        )
    root = source_root()
    if root is not None:
        candidate = root / "node_modules" / "@foundry-rs" / f"{tool}-{_npm_platform()}" / "bin" / tool
        looked.append(str(candidate))
        if candidate.is_file():
            return candidate
    found = shutil.which(tool)
    if found:
        return Path(found)
    looked.append("PATH")
    raise MissingBinary(
        tool,
        looked,
        hint=install_hint(
            "Foundry's binaries",
            f"install Foundry's {tool} (https://getfoundry.sh) on PATH or set MESHPROV_{tool.upper()}_BIN"
            if tool == "anvil"
            else f"install Foundry's {tool} (https://getfoundry.sh) on PATH",
        ),
    )


def redis_server_binary(configured: Path | None = None) -> Path:
    if configured is not None:
        if configured.is_file() and os.access(configured, os.X_OK):
            return configured
        raise MissingBinary(
            "redis-server", [str(configured)], hint="the configured path is not an executable"
        )
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    raise MissingBinary(
        "redis-server",
        ["PATH"],
        hint=install_hint(
            "Debian's redis-server",
            "install redis-server on PATH (Debian: `apt-get install redis-server`), or set MESHPROV_REDIS_URL",
        ),
    )


def solc_wrapper() -> Path:
    root = source_root()
    if root is not None:
        candidate = root / "contracts" / "tools" / "solc"
        if candidate.is_file():
            return candidate
    raise MissingBinary(
        "solc wrapper",
        ["contracts/tools/solc"],
        hint="compiling needs a meshprov source checkout (after `make setup` there); installed packages ship "
        "the built artifacts",
    )
