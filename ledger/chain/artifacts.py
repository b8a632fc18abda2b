"""The compiled contracts shipped inside the package (``ledger/artifacts/*.json``, written by ``ledger.dev.build``).

Loading needs no compiler and no source checkout: the JSON files are package data, read through
:mod:`importlib.resources`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from ledger.errors import ConfigError

KNOWN = ("MeshLedger", "MeshToken", "RoundSettlement", "Revocations")
"""RoundSettlement is the external library MeshLedger calls by DELEGATECALL (it keeps the ledger under EIP-170's
24,576 bytes): a deployment deploys it first and links its address into the ledger's bytecode."""

LinkReferences = dict[str, dict[str, list[dict[str, int]]]]
"""solc's ``linkReferences``: {source unit: {library: [{"start": byte offset, "length": 20}]}}."""


class ArtifactUnavailable(ConfigError):
    def __init__(self, name: str, problem: str) -> None:
        from ledger.dev.toolchain import artifacts_hint

        self.name = name
        super().__init__(f"the compiled contract {name} is unavailable: {problem}", hint=artifacts_hint())


@dataclass(frozen=True)
class Artifact:
    """One compiled contract: what web3 needs to deploy and call it, and what pins it to its sources."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    sources_hash: str
    compiler_version: str
    link_references: LinkReferences = field(default_factory=dict)

    @property
    def libraries(self) -> list[str]:
        """The libraries whose addresses the bytecode needs before it can be deployed."""
        return sorted({name for unit in self.link_references.values() for name in unit})

    def linked_bytecode(self, libraries: dict[str, str]) -> str:
        """The creation bytecode with every library placeholder replaced by that library's address."""
        code = self.bytecode.removeprefix("0x")
        for unit in self.link_references.values():
            for name, places in unit.items():
                if name not in libraries:
                    raise ArtifactUnavailable(
                        self.name, f"its bytecode needs the library {name}'s address and none was given"
                    )
                address = libraries[name].lower().removeprefix("0x")
                if len(address) != 40:
                    raise ArtifactUnavailable(self.name, f"{libraries[name]!r} is not an address for {name}")
                for place in places:
                    start, length = 2 * int(place["start"]), 2 * int(place["length"])
                    code = code[:start] + address + code[start + length :]
        return "0x" + code

    def abi_entries(self, kind: str) -> list[dict[str, Any]]:
        """The ABI entries of one kind: ``function``, ``event``, ``error``, ``constructor``."""
        return [entry for entry in self.abi if entry.get("type") == kind]


@cache
def load_artifact(name: str) -> Artifact:
    """The artifact of ``name`` (one of :data:`KNOWN`)."""
    if name not in KNOWN:
        raise ArtifactUnavailable(name, f"unknown contract (known: {', '.join(KNOWN)})")
    try:
        text = resources.files("ledger").joinpath("artifacts", f"{name}.json").read_text(encoding="utf-8")
        data = json.loads(text)
        return Artifact(
            name=name,
            abi=list(data["abi"]),
            bytecode=str(data["bytecode"]),
            deployed_bytecode=str(data["deployedBytecode"]),
            sources_hash=str(data["sourcesHash"]),
            compiler_version=str(data["compiler"]["version"]),
            link_references=dict(data.get("linkReferences") or {}),
        )
    except FileNotFoundError:
        raise ArtifactUnavailable(name, "the file is missing") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactUnavailable(name, f"the file does not parse ({exc})") from None
