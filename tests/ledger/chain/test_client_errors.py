"""The revert table: every ABI error of MeshLedger and MeshToken has a named class, every class names an ABI error,
and revert data of each decodes to its class with its arguments and a filled-in hint. And nothing outside
``ledger/chain`` matches a revert by its name string instead of catching its class."""

from __future__ import annotations

import ast
import re
from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode

from ledger.chain import errors
from ledger.chain.artifacts import Artifact
from ledger.chain.errors import REVERT_CLASSES
from ledger.chain.revert import ContractRevert, ErrorSpec, RevertDecoder, UnknownRevert, error_specs
from ledger.errors import NotFound
from ledger.exit_codes import ExitCode
from tests.support import REPO

BUILTINS = {"Error", "Panic"}


def _abi_errors(contracts: dict[str, Artifact]) -> dict[str, ErrorSpec]:
    specs = {}
    for name in ("MeshLedger", "MeshToken"):
        for spec in error_specs(contracts[name].abi):
            specs[spec.name] = spec
    return specs


def test_every_abi_error_has_a_class(contracts: dict[str, Artifact]) -> None:
    missing = sorted(set(_abi_errors(contracts)) - set(REVERT_CLASSES))
    assert missing == [], f"add classes to ledger/chain/errors.py for {missing}"


def test_every_class_names_an_abi_error(contracts: dict[str, Artifact]) -> None:
    stale = sorted(set(REVERT_CLASSES) - set(_abi_errors(contracts)) - BUILTINS)
    assert stale == [], f"ledger/chain/errors.py maps errors no ABI declares: {stale}"


def test_every_class_has_a_hint_naming_only_real_arguments(contracts: dict[str, Artifact]) -> None:
    specs = _abi_errors(contracts)
    for name, cls in REVERT_CLASSES.items():
        assert cls.default_hint, f"{name} has no hint"
        assert cls.error_name == name
        if name in specs:
            placeholders = set(re.findall(r"{(\w+)}", cls.default_hint))
            assert placeholders <= set(specs[name].names), f"{name}'s hint names {placeholders}"


def _sample(kind: str) -> Any:
    if kind == "address":
        return "0x" + "11" * 20
    if kind.startswith("uint"):
        return 7
    if kind.startswith("int"):
        return -3
    if kind == "bool":
        return True
    if kind == "bytes32":
        return b"\xab" * 32
    if kind == "string":
        return "some text"
    if kind == "bytes":
        return b"\x01\x02"
    raise AssertionError(f"no sample for {kind}")


def test_revert_data_of_every_error_decodes_to_its_class(contracts: dict[str, Artifact]) -> None:
    decoder = RevertDecoder([contracts["MeshLedger"].abi, contracts["MeshToken"].abi])
    for spec in _abi_errors(contracts).values():
        values = [_sample(t) for t in spec.types]
        data = spec.selector + abi_encode(list(spec.types), values)
        exc = decoder.decode("0x" + data.hex())
        assert type(exc) is REVERT_CLASSES[spec.name]
        assert exc.error_name == spec.name
        assert list(exc.args_by_name) == list(spec.names)
        assert exc.hint is not None
        assert not re.search(r"{\w+}", exc.hint), exc.hint  # every placeholder filled
        assert spec.name in str(exc)


def test_builtin_error_and_panic_decode() -> None:
    decoder = RevertDecoder([])
    message = decoder.decode(bytes.fromhex("08c379a0") + abi_encode(["string"], ["nope"]))
    assert isinstance(message, errors.SolidityError)
    assert message["message"] == "nope"
    assert "nope" in (message.hint or "")
    panic = decoder.decode(bytes.fromhex("4e487b71") + abi_encode(["uint256"], [0x12]))
    assert isinstance(panic, errors.Panic)
    assert panic["meaning"] == "division or modulo by zero"


def test_unknown_and_malformed_revert_data_never_crash() -> None:
    decoder = RevertDecoder([])
    assert isinstance(decoder.decode(None), UnknownRevert)
    assert isinstance(decoder.decode("0xdeadbeef"), UnknownRevert)
    assert isinstance(decoder.decode("not hex"), UnknownRevert)
    truncated = bytes.fromhex("08c379a0") + b"\x00" * 5  # Error(string) selector, broken body
    assert isinstance(decoder.decode(truncated), UnknownRevert)
    assert isinstance(decoder.decode({"data": "0x"}), UnknownRevert)


def test_exit_codes_of_membership_and_missing_things() -> None:
    assert (
        errors.NotContributor("MeshLedger_NotContributor", {"account": "0x1"}).exit_code
        == ExitCode.NOT_MEMBER
    )
    assert errors.AccessControlUnauthorizedAccount("x", {}).exit_code == ExitCode.NOT_MEMBER
    unknown = errors.UnknownTask("MeshLedger_UnknownTask", {"taskId": 9})
    assert isinstance(unknown, NotFound)
    assert unknown.exit_code == ExitCode.NOT_FOUND
    assert "task 9" in (unknown.hint or "")
    assert errors.WrongRound("x", {}).exit_code == ExitCode.ERROR


@pytest.mark.parametrize("cls", sorted(REVERT_CLASSES.values(), key=lambda c: c.error_name))
def test_classes_are_contract_reverts(cls: type[ContractRevert]) -> None:
    assert issubclass(cls, ContractRevert)


# --- reverts are caught by class, never matched by name ---------------------------------------------------------

_SHIPPED = ("ledger", "node", "worker", "lab", "benchmarks")
_REVERT_NAME = re.compile(r"(MeshLedger|MeshToken)_[A-Za-z]+")


def _reads_error_name(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and sub.attr == "error_name":
            return True
        if (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Name)
            and sub.func.id == "getattr"
            and any(isinstance(a, ast.Constant) and a.value == "error_name" for a in sub.args)
        ):
            return True
    return False


def revert_name_matches(source: str) -> list[str]:
    """Where ``source`` inspects a revert by its name string: a comparison or ``match`` on ``error_name``, or an
    ABI error name written as a string (the key of a table of names)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and _reads_error_name(node):
            found.append(f"line {node.lineno}: compares error_name")
        elif isinstance(node, ast.Match) and _reads_error_name(node.subject):
            found.append(f"line {node.lineno}: matches on error_name")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _REVERT_NAME.fullmatch(node.value)
        ):
            found.append(f"line {node.lineno}: the revert name {node.value!r} as a string")
    return found


def test_the_guard_sees_every_way_of_matching_a_revert_by_name() -> None:
    assert revert_name_matches('if exc.error_name == "MeshLedger_AlreadyVoted": pass')
    assert revert_name_matches('if getattr(exc, "error_name", "") in DONE: pass')
    assert revert_name_matches('DONE = {"MeshLedger_VotingClosed": "vote-window-closed"}')
    assert revert_name_matches("match exc.error_name:\n    case _: pass")
    assert not revert_name_matches('log.info("reverted with %s", exc.error_name)')
    assert not revert_name_matches(
        "try:\n    vote()\nexcept (errors.VotingClosed, errors.WrongRound):\n    pass"
    )
    assert not revert_name_matches('"""Docs may say MeshLedger_AlreadyVoted in a sentence."""')


def test_no_module_outside_ledger_chain_matches_a_revert_by_name() -> None:
    """``ledger.chain.errors`` has a class per ABI error: everywhere else catches the class."""
    offences = []
    for package in _SHIPPED:
        for path in sorted((REPO / package).rglob("*.py")):
            if path.is_relative_to(REPO / "ledger" / "chain"):
                continue
            offences += [f"{path.relative_to(REPO)} {o}" for o in revert_name_matches(path.read_text())]
    assert offences == [], "catch the named class of ledger.chain.errors instead:\n" + "\n".join(offences)
