"""Turn revert data into named Python exceptions.

A contract revert reaches web3.py as hex data: a 4-byte selector and ABI-encoded arguments. The selector table is
built from the ABIs of our contracts (custom errors, including OpenZeppelin's) plus Solidity's built-in
``Error(string)`` and ``Panic(uint256)``; each decoded error becomes the Python class registered for its name in
:mod:`ledger.chain.errors`, carrying the decoded arguments as fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.crypto import keccak

from ledger.errors import MeshprovError

PANIC_CODES = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "corrupt storage byte array",
    0x31: "pop on an empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to an uninitialised function pointer",
}


class ChainError(MeshprovError):
    """Base of every error that comes from the chain: reverts, timeouts, rejected transactions."""


class ContractRevert(ChainError):
    """A revert decoded from its data. Subclasses exist for every custom error of our contracts."""

    error_name: str = "unknown"

    def __init__(
        self, name: str, args: Mapping[str, Any], *, signature: str = "", hint: str | None = None
    ) -> None:
        self.error_name = name
        self.args_by_name = dict(args)
        self.signature = signature
        shown = ", ".join(f"{k}={_show(v)}" for k, v in self.args_by_name.items())
        super().__init__(f"the contract reverted with {name}({shown})", hint=hint)


class UnknownRevert(ContractRevert):
    """Revert data whose selector is not in the table (or no data at all)."""

    def __init__(self, data: bytes, message: str = "") -> None:
        self.data = data
        detail = f"0x{data.hex()}" if data else (message or "no revert data")
        ChainError.__init__(self, f"the transaction reverted: {detail}")
        self.error_name = "unknown"
        self.args_by_name = {"data": data}
        self.signature = ""


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def _canonical_type(param: Mapping[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param.get("components", []))
        return f"({inner}){kind[5:]}"
    return kind


@dataclass(frozen=True)
class ErrorSpec:
    name: str
    signature: str
    names: tuple[str, ...]
    types: tuple[str, ...]

    @property
    def selector(self) -> bytes:
        return keccak(text=self.signature)[:4]


BUILTIN = (
    ErrorSpec("Error", "Error(string)", ("message",), ("string",)),
    ErrorSpec("Panic", "Panic(uint256)", ("code",), ("uint256",)),
)


def error_specs(abi: Iterable[Mapping[str, Any]]) -> list[ErrorSpec]:
    specs = []
    for item in abi:
        if item.get("type") != "error":
            continue
        inputs = item.get("inputs", [])
        types = tuple(_canonical_type(p) for p in inputs)
        names = tuple(str(p.get("name") or f"arg{i}") for i, p in enumerate(inputs))
        specs.append(ErrorSpec(str(item["name"]), f"{item['name']}({','.join(types)})", names, types))
    return specs


class RevertDecoder:
    """Selector table over one or more ABIs, mapping revert data to exception instances."""

    def __init__(
        self,
        abis: Iterable[Iterable[Mapping[str, Any]]],
        classes: Mapping[str, type[ContractRevert]] | None = None,
    ) -> None:
        self.by_selector: dict[bytes, ErrorSpec] = {spec.selector: spec for spec in BUILTIN}
        for abi in abis:
            for spec in error_specs(abi):
                self.by_selector[spec.selector] = spec
        self.classes = dict(classes or {})

    def decode(self, data: object, message: str = "") -> ContractRevert:
        raw = _as_bytes(data)
        spec = self.by_selector.get(raw[:4]) if len(raw) >= 4 else None
        if spec is None:
            return UnknownRevert(raw, message)
        try:
            values = abi_decode(list(spec.types), raw[4:])
        except Exception:  # malformed revert data from an untrusted node: report it, never crash
            return UnknownRevert(raw, message)
        args = dict(zip(spec.names, values, strict=True))
        if spec.name == "Panic":
            code = int(args["code"])
            args["meaning"] = PANIC_CODES.get(code, "unknown panic code")
        cls = self.classes.get(spec.name, ContractRevert)
        error = cls.__new__(cls)
        ContractRevert.__init__(
            error, spec.name, args, signature=spec.signature, hint=getattr(cls, "default_hint", None)
        )
        return error


def _as_bytes(data: object) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        text = data[2:] if data.startswith("0x") else data
        try:
            return bytes.fromhex(text)
        except ValueError:
            return b""
    if isinstance(data, Mapping):  # some nodes nest it: {"data": "0x…"}
        return _as_bytes(data.get("data"))
    return b""
