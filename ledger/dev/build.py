"""Compile the contracts and export their ABI and bytecode into ``ledger/artifacts`` (``make contracts``).

``python -m ledger.dev.build`` compiles ``contracts/src`` with py-solc-x through the repo's solc wrapper, using
the settings of ``contracts/foundry.toml``'s default profile (optimizer runs, EVM version, via-IR, remappings), and
writes ``<Name>.json`` per deployable contract: ``abi``, ``bytecode``, ``deployedBytecode``, the compiler version
and settings, and ``sourcesHash`` — a sha-256 over every source unit the compiler read (OpenZeppelin's included)
and the settings. The artifacts are committed, so auditors and deployments need no compiler;
``python -m ledger.dev.build --check`` (and a test) fail when they drift from the sources.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import ConfigError, Mismatch, MissingBinary

CONTRACTS = ("MeshLedger", "MeshToken", "RoundSettlement", "Revocations")
# MeshLedger calls the external library RoundSettlement (it would not fit EIP-170's 24,576 bytes otherwise): its
# bytecode holds a 20-byte placeholder per call site, listed in the artifact's ``linkReferences``
# ({source unit: {library: [{"start": byte offset, "length": 20}]}}, offsets into the bytecode without "0x").
# A deployment deploys RoundSettlement first and writes its address over every placeholder (``link_bytecode``).
ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "artifacts"


class ArtifactsDrift(Mismatch):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "the exported contract artifacts differ from the sources: " + "; ".join(problems),
            hint="rebuild them with `make contracts` and commit ledger/artifacts",
        )


@dataclass(frozen=True)
class CompilerSettings:
    """The solc settings that decide the bytecode, read from foundry.toml so forge and the export agree."""

    optimizer_runs: int
    evm_version: str
    via_ir: bool
    remappings: tuple[str, ...]

    @classmethod
    def from_foundry_toml(cls, path: Path) -> CompilerSettings:
        try:
            profile = tomllib.loads(path.read_text())["profile"]["default"]
        except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
            raise ConfigError(f"cannot read the default profile of {path}: {exc}") from None
        if not profile.get("optimizer", False):
            raise ConfigError(f"{path}: the export assumes the optimizer is enabled")
        # foundry.toml's remappings are relative to contracts/; the export compiles from the repo root.
        remappings = tuple(
            r.replace("=../", "=") for r in profile.get("remappings", ()) if isinstance(r, str)
        )
        return cls(
            optimizer_runs=int(profile.get("optimizer_runs", 200)),
            evm_version=str(profile.get("evm_version", "cancun")),
            via_ir=bool(profile.get("via_ir", False)),
            remappings=remappings,
        )

    def solc(self) -> dict[str, Any]:
        return {
            "optimizer": {"enabled": True, "runs": self.optimizer_runs},
            "evmVersion": self.evm_version,
            "viaIR": self.via_ir,
            "remappings": list(self.remappings),
            # No metadata hash in the bytecode: the bytecode then depends on the code alone, not on the file
            # paths and comments of the machine that compiled it (our sourcesHash pins the sources instead).
            "metadata": {"bytecodeHash": "none", "appendCBOR": False},
            "outputSelection": {
                "*": {
                    "*": [
                        "abi",
                        "evm.bytecode.object",
                        "evm.bytecode.linkReferences",
                        "evm.deployedBytecode.object",
                        "evm.deployedBytecode.linkReferences",
                        "metadata",
                    ]
                }
            },
        }


def repo_root() -> Path:
    """The source checkout holding ``contracts/`` (compiling needs one; the artifacts do not)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "contracts" / "foundry.toml").is_file():
        raise MissingBinary(
            "contract sources",
            [str(root / "contracts")],
            hint="compile from a meshprov source checkout; installed packages ship the built artifacts",
        )
    return root


def _solc(root: Path) -> Path:
    wrapper = root / "contracts" / "tools" / "solc"
    if not wrapper.is_file() or not (root / "node_modules" / "solc" / "solc.js").is_file():
        raise MissingBinary("solc wrapper", [str(wrapper)], hint="run `make setup` (npm ci installs solc-js)")
    return wrapper


def _own_sources(root: Path) -> dict[str, str]:
    src = root / "contracts" / "src"
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(src.rglob("*.sol"))}


def sources_hash(units: dict[str, str], settings: dict[str, Any]) -> str:
    """sha-256 of every source unit (name and content) and the solc settings, canonically encoded."""
    body = {
        "sources": {name: hashlib.sha256(text.encode()).hexdigest() for name, text in sorted(units.items())},
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def compile_artifacts(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """Compile the contracts; {name: artifact} for every deployable contract in :data:`CONTRACTS`."""
    import solcx

    root = root or repo_root()
    settings = CompilerSettings.from_foundry_toml(root / "contracts" / "foundry.toml").solc()
    own = _own_sources(root)
    standard = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in own.items()},
        "settings": settings,
    }
    out = solcx.compile_standard(
        standard, solc_binary=str(_solc(root)), base_path=str(root), allow_paths=[str(root)]
    )
    # Every unit the compiler read, imports included, so that an OpenZeppelin change also shows as drift.
    units = {name: own.get(name) or (root / name).read_text() for name in sorted(out["sources"])}
    digest = sources_hash(units, settings)
    artifacts: dict[str, dict[str, Any]] = {}
    for unit, contracts in out["contracts"].items():
        for name, item in contracts.items():
            if name not in CONTRACTS or not unit.startswith("contracts/src/"):
                continue
            artifacts[name] = {
                "contractName": name,
                "sourceName": unit,
                "abi": item["abi"],
                "bytecode": "0x" + item["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + item["evm"]["deployedBytecode"]["object"],
                "linkReferences": item["evm"]["bytecode"].get("linkReferences", {}),
                "deployedLinkReferences": item["evm"]["deployedBytecode"].get("linkReferences", {}),
                "compiler": {
                    "version": json.loads(item["metadata"])["compiler"]["version"],
                    "settings": settings,
                },
                "sourcesHash": digest,
                "sources": {
                    name_: hashlib.sha256(text.encode()).hexdigest() for name_, text in units.items()
                },
            }
    missing = [name for name in CONTRACTS if name not in artifacts]
    if missing:
        raise ConfigError(f"the compiler produced no {', '.join(missing)} (contracts/src changed?)")
    return artifacts


def link_bytecode(
    bytecode: str, link_references: dict[str, dict[str, list[dict[str, int]]]], libraries: dict[str, str]
) -> str:
    """``bytecode`` (hex, with or without 0x) with every library placeholder replaced by the library's address.

    ``libraries`` maps a library name (``RoundSettlement``) to its deployed address. Raises ConfigError when a
    referenced library has no address, so an unlinked bytecode (which solc leaves as invalid hex) never deploys.
    """
    prefix = "0x" if bytecode.startswith("0x") else ""
    code = bytecode[len(prefix) :]
    for unit_refs in link_references.values():
        for name, places in unit_refs.items():
            address = libraries.get(name)
            if address is None:
                raise ConfigError(f"the bytecode needs library {name}: deploy it first and pass its address")
            hex_address = address.lower().removeprefix("0x")
            if len(hex_address) != 40:
                raise ConfigError(f"library {name}: {address!r} is not a 20-byte address")
            for place in places:
                start = 2 * place["start"]
                code = code[:start] + hex_address + code[start + 2 * place["length"] :]
    return prefix + code


def render(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def write_artifacts(artifacts: dict[str, dict[str, Any]], out_dir: Path = ARTIFACTS_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, artifact in sorted(artifacts.items()):
        path = out_dir / f"{name}.json"
        path.write_text(render(artifact))
        written.append(path)
    return written


def drift(artifacts: dict[str, dict[str, Any]], out_dir: Path = ARTIFACTS_DIR) -> list[str]:
    """How the exported artifacts in ``out_dir`` differ from freshly compiled ones (empty when they agree)."""
    problems = []
    for name, fresh in sorted(artifacts.items()):
        path = out_dir / f"{name}.json"
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            problems.append(f"{path.name} is missing or unreadable")
            continue
        for key in ("sourcesHash", "abi", "bytecode", "deployedBytecode", "linkReferences"):
            if stored.get(key) != fresh[key]:
                problems.append(f"{path.name}: {key} differs")
    return problems


def stale_sources(out_dir: Path = ARTIFACTS_DIR, root: Path | None = None) -> list[str]:
    """Without compiling: source units whose content no longer matches the hashes recorded in the artifacts,
    and contract sources the artifacts do not know. Quick enough for every test run."""
    root = root or repo_root()
    problems = []
    for name in CONTRACTS:
        path = out_dir / f"{name}.json"
        try:
            recorded: dict[str, str] = json.loads(path.read_text())["sources"]
        except (OSError, ValueError, KeyError):
            problems.append(f"{path.name} is missing or has no source list")
            continue
        for unit, digest in sorted(recorded.items()):
            file = root / unit
            if not file.is_file():
                problems.append(f"{unit} is gone")
            elif hashlib.sha256(file.read_text().encode()).hexdigest() != digest:
                problems.append(f"{unit} changed")
        for unit in _own_sources(root):
            if unit not in recorded:
                problems.append(f"{unit} is not in {path.name}")
    return sorted(set(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ledger.dev.build", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with ledger/artifacts instead of writing"
    )
    parser.add_argument(
        "--out", type=Path, default=ARTIFACTS_DIR, help="artifact directory (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    try:
        artifacts = compile_artifacts()
        if args.check:
            problems = drift(artifacts, args.out)
            if problems:
                raise ArtifactsDrift(problems)
            print(
                f"artifacts in {args.out} match the sources ({artifacts['MeshLedger']['sourcesHash'][:12]})"
            )
            return 0
        for path in write_artifacts(artifacts, args.out):
            print(f"wrote {path}")
    except (ConfigError, Mismatch, MissingBinary) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
