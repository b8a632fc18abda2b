"""Canonical JSON: the one byte string a metadata value serialises to, on every machine and Python run.

Sorted keys, no whitespace (``,`` and ``:`` separators), UTF-8 without ``\\u`` escapes for non-ASCII, no NaN or
infinities, floats in Python's shortest round-trip form. Only JSON's own types are allowed (dict with string keys,
list, str, int, float, bool, None), so nothing depends on an object's ``repr`` or a dict's insertion order.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ledger.errors import MeshprovError

_MAX_DEPTH = 32


class NotCanonical(MeshprovError, ValueError):
    """A value that cannot be, or a text that is not, canonical JSON."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"not canonical JSON: {problem}")


def _check(value: Any, depth: int, where: str) -> None:
    if depth > _MAX_DEPTH:
        raise NotCanonical(f"nested deeper than {_MAX_DEPTH} levels at {where}")
    if value is None or isinstance(value, bool | str | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotCanonical(f"{value!r} at {where} is not a finite number")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, depth + 1, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"key {key!r} at {where} is not a string")
            _check(item, depth + 1, f"{where}.{key}")
        return
    raise NotCanonical(f"{type(value).__name__} at {where} is not a JSON type")


def canonical_json(value: Any) -> str:
    """Serialise ``value`` canonically (see the module docstring); :class:`NotCanonical` for non-JSON values."""
    _check(value, 0, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _reject_constant(name: str) -> Any:
    raise NotCanonical(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise NotCanonical(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_canonical(text: str) -> Any:
    """Parse ``text`` and require it to be exactly the canonical serialisation of what it holds."""
    try:
        value = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except NotCanonical:
        raise
    except RecursionError:
        raise NotCanonical("nested too deeply") from None
    except ValueError as exc:
        raise NotCanonical(str(exc)) from None
    if canonical_json(value) != text:
        raise NotCanonical("valid JSON, but not in canonical form (sorted keys, no spaces, shortest numbers)")
    return value
