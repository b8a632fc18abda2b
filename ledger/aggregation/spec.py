"""A task's aggregation rule as the chain stores it: a rule id (uint8) and one packed parameter (uint32).

Rule ids::

    0 fedavg         mean of the deltas weighted by the consensus scores (``Contribution.weight``)
    1 trimmed-mean   per coordinate, drop the k lowest and k highest values, average the rest
    2 median         per coordinate median
    3 multi-krum     keep the m updates with the lowest Krum scores, average them

The parameter, bit by bit (bit 0 is the least significant)::

    bits  0-15  rule argument
                  fedavg, median: 0
                  trimmed-mean:   trim fraction per side in basis points, 1..4999 (k = floor(n * bp / 10000))
                  multi-krum:     bits 0-7 f (Byzantine inputs tolerated), bits 8-15 m (updates kept; 0 = n - f)
    bits 16-27  clip mantissa M (12 bits)    norm clipping bound = M * 10**(E - 6); M = 0: no clipping (E ignored)
    bits 28-31  clip exponent E (4 bits)     (from 0.000001 to 4095e9; M at most 4095)

Every parameter the contract accepts for a task decodes (a task must never become impossible to aggregate);
:meth:`AggregationSpec.encode` writes the canonical form (E = 0 without clipping). The clipping bound is decimal
so that the value a consortium writes ("clip at 2.5") is exactly what every
member decodes; it is turned into a float by exact integer arithmetic, identically on every machine.

Inputs are always aggregated in ascending order of their 32-byte digest (the sha-256 inside the CID, compared as
bytes, which is the order of the ``bytes32`` values on chain and of their hex strings): see
:func:`sort_by_digest`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from itertools import pairwise
from typing import Any, TypeVar

from ledger.aggregation.errors import DuplicateInput, SpecError

T = TypeVar("T")

_MANTISSA_BITS = 12
_MANTISSA_MAX = (1 << _MANTISSA_BITS) - 1
_EXPONENT_BIAS = 6
_EXPONENT_MAX = 15
BASIS_POINTS = 10_000


class Rule(IntEnum):
    FEDAVG = 0
    TRIMMED_MEAN = 1
    MEDIAN = 2
    MULTI_KRUM = 3

    @property
    def slug(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def from_slug(cls, name: str) -> Rule:
        for rule in cls:
            if rule.slug == name.strip().lower().replace("_", "-"):
                return rule
        raise SpecError("rule", name, "one of " + ", ".join(r.slug for r in cls))


@dataclass(frozen=True)
class ClipBound:
    """A decimal norm bound ``mantissa * 10**(exponent - 6)``, exactly as packed on chain."""

    mantissa: int
    exponent: int

    def __post_init__(self) -> None:
        if not 1 <= self.mantissa <= _MANTISSA_MAX:
            raise SpecError("clip mantissa", self.mantissa, f"1..{_MANTISSA_MAX}")
        if not 0 <= self.exponent <= _EXPONENT_MAX:
            raise SpecError("clip exponent", self.exponent, f"0..{_EXPONENT_MAX}")

    @property
    def value(self) -> float:
        shift = self.exponent - _EXPONENT_BIAS
        # int / int is correctly rounded in Python, unlike float ** int, which goes through the C library.
        return float(self.mantissa * 10**shift) if shift >= 0 else self.mantissa / 10**-shift

    @classmethod
    def of(cls, bound: float | str | Decimal) -> ClipBound:
        """The exact encoding of a decimal bound (``2.5``, ``"0.001"``); refuses values it would have to round."""
        try:
            dec = Decimal(str(bound)) if not isinstance(bound, Decimal) else bound
        except InvalidOperation:
            raise SpecError("clip bound", bound, "a positive decimal number") from None
        if not dec.is_finite() or dec <= 0:
            raise SpecError("clip bound", bound, "a positive decimal number")
        _sign, digits, exp = dec.normalize().as_tuple()
        assert isinstance(exp, int)  # finite, checked above
        mantissa = int("".join(map(str, digits)))
        exponent = exp + _EXPONENT_BIAS
        while exponent > _EXPONENT_MAX and mantissa * 10 <= _MANTISSA_MAX:
            mantissa, exponent = mantissa * 10, exponent - 1
        if mantissa > _MANTISSA_MAX or not 0 <= exponent <= _EXPONENT_MAX:
            raise SpecError(
                "clip bound", bound, "at most 4 significant digits (mantissa <= 4095), 1e-6..4.095e12"
            )
        return cls(mantissa, exponent)

    def __str__(self) -> str:
        return format(Decimal(self.mantissa).scaleb(self.exponent - _EXPONENT_BIAS), "f")


@dataclass(frozen=True)
class AggregationSpec:
    """A rule and its arguments. Build with :meth:`fedavg` … :meth:`multi_krum` or :meth:`decode`."""

    rule: Rule
    trim_bp: int = 0
    krum_f: int = 0
    krum_m: int = 0
    clip: ClipBound | None = None

    def __post_init__(self) -> None:
        if self.rule is Rule.TRIMMED_MEAN:
            if not 0 < self.trim_bp < BASIS_POINTS // 2:
                raise SpecError("trim fraction", self.trim_bp, "1..4999 basis points per side")
        elif self.trim_bp:
            raise SpecError("trim fraction", self.trim_bp, f"only for trimmed-mean, not {self.rule.slug}")
        if self.rule is Rule.MULTI_KRUM:
            if not 0 <= self.krum_f <= 0xFF or not 0 <= self.krum_m <= 0xFF:
                raise SpecError("multi-krum f/m", (self.krum_f, self.krum_m), "each 0..255")
        elif self.krum_f or self.krum_m:
            raise SpecError("multi-krum f/m", (self.krum_f, self.krum_m), f"not used by {self.rule.slug}")

    # --- constructors ---------------------------------------------------------------------------------------
    @classmethod
    def fedavg(cls, *, clip: float | str | None = None) -> AggregationSpec:
        return cls(Rule.FEDAVG, clip=_clip(clip))

    @classmethod
    def trimmed_mean(cls, trim: float | str, *, clip: float | str | None = None) -> AggregationSpec:
        """``trim`` is the fraction cut from *each* end, e.g. 0.1 (exact to a basis point)."""
        bp = Decimal(str(trim)) * BASIS_POINTS
        if bp != bp.to_integral_value():
            raise SpecError("trim fraction", trim, "a multiple of 0.0001")
        return cls(Rule.TRIMMED_MEAN, trim_bp=int(bp), clip=_clip(clip))

    @classmethod
    def median(cls, *, clip: float | str | None = None) -> AggregationSpec:
        return cls(Rule.MEDIAN, clip=_clip(clip))

    @classmethod
    def multi_krum(cls, f: int, m: int = 0, *, clip: float | str | None = None) -> AggregationSpec:
        return cls(Rule.MULTI_KRUM, krum_f=f, krum_m=m, clip=_clip(clip))

    # --- chain encoding -------------------------------------------------------------------------------------
    @property
    def rule_id(self) -> int:
        return int(self.rule)

    def encode(self) -> int:
        """The packed uint32 parameter (module docstring)."""
        low = self.trim_bp if self.rule is Rule.TRIMMED_MEAN else self.krum_f | (self.krum_m << 8)
        high = 0 if self.clip is None else self.clip.mantissa | (self.clip.exponent << _MANTISSA_BITS)
        return low | (high << 16)

    @classmethod
    def decode(cls, rule_id: int, param: int) -> AggregationSpec:
        if not 0 <= param <= 0xFFFFFFFF:
            raise SpecError("parameter", param, "a uint32")
        try:
            rule = Rule(rule_id)
        except ValueError:
            raise SpecError("rule id", rule_id, "0 fedavg, 1 trimmed-mean, 2 median, 3 multi-krum") from None
        low = param & 0xFFFF
        mantissa = (param >> 16) & _MANTISSA_MAX
        exponent = param >> (16 + _MANTISSA_BITS)
        clip = ClipBound(mantissa, exponent) if mantissa else None
        if rule is Rule.TRIMMED_MEAN:
            return cls(rule, trim_bp=low, clip=clip)
        if rule is Rule.MULTI_KRUM:
            return cls(rule, krum_f=low & 0xFF, krum_m=low >> 8, clip=clip)
        if low:
            raise SpecError("parameter", param, f"the low 16 bits must be 0 for {rule.slug}")
        return cls(rule, clip=clip)

    # --- derived --------------------------------------------------------------------------------------------
    @property
    def clip_norm(self) -> float | None:
        return None if self.clip is None else self.clip.value

    def trim_count(self, n: int) -> int:
        """Values dropped from each end of a coordinate's n values (trimmed mean; the median drops all but 1-2)."""
        if self.rule is Rule.MEDIAN:
            return (n - 1) // 2
        if self.rule is Rule.TRIMMED_MEAN:
            return n * self.trim_bp // BASIS_POINTS
        return 0

    def describe(self) -> dict[str, Any]:
        """JSON-ready description, for the aggregate's metadata and the auditor's report."""
        out: dict[str, Any] = {"rule": self.rule.slug, "rule_id": self.rule_id, "param": self.encode()}
        if self.rule is Rule.TRIMMED_MEAN:
            out["trim_bp"] = self.trim_bp
        if self.rule is Rule.MULTI_KRUM:
            out["f"] = self.krum_f
            out["m"] = self.krum_m
        if self.clip is not None:
            out["clip"] = str(self.clip)
        return out

    def __str__(self) -> str:
        args = []
        if self.rule is Rule.TRIMMED_MEAN:
            args.append(f"trim={Decimal(self.trim_bp) / BASIS_POINTS}")
        if self.rule is Rule.MULTI_KRUM:
            args += [f"f={self.krum_f}", f"m={self.krum_m or 'n-f'}"]
        if self.clip is not None:
            args.append(f"clip={self.clip}")
        return self.rule.slug + (f"({', '.join(args)})" if args else "")


def _clip(bound: float | str | None) -> ClipBound | None:
    return None if bound is None else ClipBound.of(bound)


def sort_by_digest(items: Iterable[T], digest: Callable[[T], bytes]) -> list[T]:
    """The protocol's input order: ascending raw digest bytes. A digest given twice is an error."""
    ordered = sorted(items, key=digest)
    for prev, cur in pairwise(ordered):
        if digest(prev) == digest(cur):
            raise DuplicateInput(digest(cur))
    return ordered
