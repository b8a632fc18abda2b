"""A member's cumulative privacy loss over a task: Rényi-DP composition of its updates' Gaussian releases.

Each update a member publishes with update-level differential privacy records its mechanism's parameters in its
metadata (``node.privacy``: ``{"mechanism": "gaussian", "clip", "noise_multiplier", "epsilon", "delta"}``, and
``sample_rate`` when the member takes part in a round with probability q < 1). The composition rule is the RDP
accountant's (Mironov 2017; Opacus's): the Rényi divergence of order α of each release is added up over every
update the member published in the task — the sampled Gaussian mechanism's RDP for (σ, q), ``steps`` times when the
record says it stands for several releases — and the total converts to (ε, δ) with the tighter conversion of Balle
et al. 2020, minimised over the orders. With q = 1 (no sampling amplification, the default when a record names no
rate: an upper bound) the RDP of one release is α / (2σ²) in closed form; with q < 1 it is computed for integer
orders (Mironov, Talwar and Zhang 2019), which bounds Opacus's fractional-order value from above.

What a record claims is not trusted: ε is recomputed from σ and q; a record's own ``epsilon`` is shown beside it.
Pure Python: no torch, no Opacus.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.errors import ConfigError

ORDERS_Q1: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))
"""Opacus's default orders; with q = 1 the closed form works for each."""
ORDERS_INT: tuple[int, ...] = tuple(range(2, 257))
"""Integer orders for a sampled mechanism (the exact binomial expansion)."""
DEFAULT_DELTA = 1e-5
MECHANISMS = frozenset({"gaussian"})


class UnaccountableRecord(ConfigError):
    """A privacy record the accountant cannot compose (another mechanism, no noise multiplier)."""


@dataclass(frozen=True)
class Release:
    """One accounted release of the Gaussian mechanism: noise multiplier σ, sampling rate q, repeated ``steps``
    times."""

    noise_multiplier: float
    sample_rate: float = 1.0
    steps: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise UnaccountableRecord(
                f"noise_multiplier must be a positive finite number, got {self.noise_multiplier}"
            )
        if not 0 < self.sample_rate <= 1:
            raise UnaccountableRecord(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        if self.steps < 1:
            raise UnaccountableRecord(f"steps must be at least 1, got {self.steps}")

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Release:
        """The release an update's privacy record describes (``steps`` defaults to 1: one update, one release)."""
        mechanism = record.get("mechanism")
        if mechanism not in MECHANISMS:
            raise UnaccountableRecord(
                f"mechanism {mechanism!r} is not one the accountant composes (gaussian)"
            )
        sigma = record.get("noise_multiplier")
        if isinstance(sigma, bool) or not isinstance(sigma, int | float):
            raise UnaccountableRecord("the record has no numeric noise_multiplier")
        rate = record.get("sample_rate", 1.0)
        steps = record.get("steps", 1)
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise UnaccountableRecord("sample_rate is not a number")
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise UnaccountableRecord("steps is not an integer")
        return cls(float(sigma), float(rate), max(1, steps))


def _log_add(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    if lo == -math.inf:
        return hi
    return hi + math.log1p(math.exp(lo - hi))


def _rdp_int(q: float, sigma: float, alpha: int) -> float:
    """RDP of order ``alpha`` (an integer ≥ 2) of the sampled Gaussian mechanism (Mironov et al. 2019, eq. 3)."""
    log_a = -math.inf
    for i in range(alpha + 1):
        term = (
            math.lgamma(alpha + 1)
            - math.lgamma(i + 1)
            - math.lgamma(alpha - i + 1)
            + i * math.log(q)
            + (alpha - i) * math.log1p(-q)
            + (i * i - i) / (2 * sigma * sigma)
        )
        log_a = _log_add(log_a, term)
    return log_a / (alpha - 1)


def rdp(release: Release, orders: Sequence[float]) -> list[float]:
    """The release's RDP at each order, ``steps`` times."""
    sigma, q = release.noise_multiplier, release.sample_rate
    if q == 1.0:
        return [release.steps * a / (2 * sigma * sigma) for a in orders]
    return [release.steps * _rdp_int(q, sigma, int(a)) for a in orders]


def epsilon(releases: Iterable[Release], delta: float = DEFAULT_DELTA) -> tuple[float, float]:
    """(ε, the order that gave it) of the composition of ``releases`` at ``delta``; (0, 0) for none."""
    items = list(releases)
    if not items:
        return 0.0, 0.0
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    orders: Sequence[float] = ORDERS_Q1 if all(r.sample_rate == 1.0 for r in items) else ORDERS_INT
    total = [0.0] * len(orders)
    for r in items:
        total = [t + x for t, x in zip(total, rdp(r, orders), strict=True)]
    best, best_order = math.inf, 0.0
    for a, value in zip(orders, total, strict=True):
        # Balle et al. 2020, as Opacus's get_privacy_spent converts.
        eps = value - (math.log(delta) + math.log(a)) / (a - 1) + math.log((a - 1) / a)
        if eps < best:
            best, best_order = eps, float(a)
    return max(best, 0.0), best_order
