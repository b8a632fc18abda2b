"""Turn revert data into named Python exceptions.

A contract revert reaches web3.py as hex data: a 4-byte selector and ABI-encoded arguments. The selector table is
built from the ABIs of our contracts (custom errors, including OpenZeppelin's) plus Solidity's built-in
``Error(string)`` and ``Panic(uint256)``; each decoded error becomes the Python class registered for its name in
:mod:`ledger.chain.errors`, carrying the decoded arguments as fields (``exc.args_by_name``) and a hint written
for that error, filled in with its arguments.

    ChainError                       anything that comes from the chain (ledger.errors.MeshprovError)
    ├── ContractRevert               a decoded revert: error_name, args_by_name, signature
    │   ├── UnknownRevert            no data, or a selector that is in no ABI we know
    │   └── (one class per ABI error, in ledger.chain.errors)
    ├── TxTimeout, TxRejected        (ledger.chain.sender)
    └── ...
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from ledger.errors import MeshprovError

PANIC_CODES = {
    0x00: "generic compiler panic",
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
    """A revert decoded from its data. Subclasses exist for every error in our contracts' ABIs.

    ``default_hint`` may name the error's arguments in braces (``{taskId}``); they are filled in from the
    decoded values, so the hint can say *which* round is live or *which* nonce was expected.
    """

    error_name: str = "unknown"
    default_hint: ClassVar[str | None] = None

    def __init__(
        self, name: str, args: Mapping[str, Any], *, signature: str = "", hint: str | None = None
    ) -> None:
        self.error_name = name
        self.args_by_name = dict(args)
        self.signature = signature
        shown = ", ".join(f"{k}={show_value(v)}" for k, v in self.args_by_name.items())
        if hint is None:
            hint = self.hint_for(self.args_by_name)
        super().__init__(f"the contract reverted with {name}({shown})", hint=hint)

    @classmethod
    def hint_for(cls, args: Mapping[str, Any]) -> str | None:
        """``default_hint`` with the decoded arguments filled in (unknown placeholders are left as they are)."""
        if cls.default_hint is None:
            return None
        return _SafeFormatter().vformat(cls.default_hint, (), {k: show_value(v) for k, v in args.items()})

    def __getitem__(self, name: str) -> Any:
        """A decoded argument by its ABI name: ``exc["taskId"]``."""
        return self.args_by_name[name]


class UnknownRevert(ContractRevert):
    """Revert data whose selector is not in the table (or no data at all)."""

    def __init__(self, data: bytes, message: str = "") -> None:
        self.data = data
        detail = f"0x{data.hex()}" if data else (message or "no revert data")
        self.error_name = "unknown"
        self.args_by_name = {"data": data}
        self.signature = ""
        ChainError.__init__(
            self,
            f"the transaction reverted: {detail}",
            hint="the revert data matches no error of MeshLedger or MeshToken: is the address the right contract?"
            if data
            else None,
        )


class _SafeFormatter(string.Formatter):
    def get_value(self, key: int | str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        if isinstance(key, str) and key not in kwargs:
            return "{" + key + "}"
        return super().get_value(key, args, kwargs)


def show_value(value: Any) -> str:
    """How an error argument is shown to people: bytes as 0x-hex, the rest as str."""
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
    """Selector table over one or more ABIs, mapping revert data to exception instances.

    ``classes`` maps error names to exception classes; by default the table of :mod:`ledger.chain.errors`.
    """

    def __init__(
        self,
        abis: Iterable[Iterable[Mapping[str, Any]]],
        classes: Mapping[str, type[ContractRevert]] | None = None,
    ) -> None:
        self.by_selector: dict[bytes, ErrorSpec] = {spec.selector: spec for spec in BUILTIN}
        for abi in abis:
            for spec in error_specs(abi):
                self.by_selector[spec.selector] = spec
        if classes is None:
            from ledger.chain.errors import REVERT_CLASSES  # errors.py imports this module

            classes = REVERT_CLASSES
        self.classes = dict(classes)

    def decode(self, data: object, message: str = "") -> ContractRevert:
        raw = revert_bytes(data)
        spec = self.by_selector.get(raw[:4]) if len(raw) >= 4 else None
        if spec is None:
            return UnknownRevert(raw, message)
        try:
            values = abi_decode(list(spec.types), raw[4:])
        except Exception:  # malformed revert data from an untrusted node: report it, never crash
            return UnknownRevert(raw, message)
        args = {
            name: to_checksum_address(value) if kind == "address" else value
            for name, kind, value in zip(spec.names, spec.types, values, strict=True)
        }
        if spec.name == "Panic":
            args["meaning"] = PANIC_CODES.get(int(args["code"]), "unknown panic code")
        cls = self.classes.get(spec.name, ContractRevert)
        return cls(spec.name, args, signature=spec.signature)


def revert_bytes(data: object) -> bytes:
    """Revert data as web3.py or a node hands it over (bytes, 0x-hex, or nested in a dict) as bytes."""
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
        return revert_bytes(data.get("data"))
    return b""
