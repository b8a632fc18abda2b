"""The parameters of the validator checks: one frozen dataclass, every field documented, safe defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ledger.errors import ConfigError

DEFAULT_MAX_UPDATE_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_HEADER_BYTES = 16 * 1024 * 1024
"""Kept at 16 MiB for any state dict: a header costs about 75 bytes per tensor plus its name (a 1,000-tensor
transformer with 50-character names: 129 KB), so the bound admits more than 100,000 tensors while still refusing
a header bomb before a byte of it is parsed (docs/content.md, "Many tensors")."""
DEFAULT_MAX_SCALE_RATIO = 5.0
"""Honest digits updates (``node.training`` with each model's tuned settings; MLP and CNN, 2/5/10 members,
α = 0.1/0.5/10, seeds 0-2, rounds 1-10 from genesis: 3,060 updates, ``benchmarks/scale_ratio.py``) measure at most
1.61x their base's norm (1.69x with two more seeds; 99th percentile 1.35x; nearly all those over 1x are round 1's,
from the random initial weights): 5x leaves a margin of about 3. A x10 scaled update exceeds it in 6-13 % of
cases, a x100 one in 80-87 % (docs/worker.md); the in-round z-score sees the rest. Update-level DP noise counts in
the norm: a federation using ``--dp-noise`` must raise the bound (docs/worker.md)."""


SPEC_ZSCORE_MIN_PEERS = 2
"""What task specifications written by meshprov's tools anchor as ``zscore_min_peers``: the z-score from rounds of
three updates on, where two peers already bound a boosted update (docs/aggregation.md)."""


@dataclass(frozen=True)
class CheckLimits:
    """Bounds an update must respect. A validator and an auditor replaying it must use the same values."""

    max_update_bytes: int = DEFAULT_MAX_UPDATE_BYTES
    """Largest update file (``TOO_LARGE``); the fetcher stops the download as soon as it is exceeded."""

    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    """Largest safetensors JSON header (``HEADER_TOO_LARGE``), checked before the header is read."""

    max_norm: float | None = None
    """Absolute bound on the update's L2 norm over its floating-point tensors (``NORM_TOO_LARGE``); None: none."""

    min_norm: float = 0.0
    """An update whose norm is at most this is a free-rider (``NORM_TOO_SMALL``); 0 rejects all-zero deltas."""

    max_scale_ratio: float | None = DEFAULT_MAX_SCALE_RATIO
    """Reject an update whose L2 norm exceeds this multiple of the base model's L2 norm, both over the
    floating-point tensors (``SCALE_OUT_OF_PROPORTION``); None: off. Needs no round, so the offline check applies
    it too; not applied when the base's norm is zero (the ratio is undefined)."""

    zscore_threshold: float | None = 3.5
    """Reject when the robust z-score of the log norm against the round exceeds this (``NORM_OUTLIER``); None: off.

    z = 0.6745 * (ln|u| - median(ln|peers|)) / max(MAD(ln|peers|), ``zscore_min_mad``) — the modified z-score of
    Iglewicz and Hoaglin on log norms, so that scaling an update up or down by a factor k is equally far."""

    zscore_min_peers: int = 3
    """The z-score needs at least this many other updates in the round; with fewer it is not applied. The
    specifications meshprov writes anchor :data:`SPEC_ZSCORE_MIN_PEERS` instead (docs/aggregation.md, "Rounds of
    three updates"); this default is what a specification that does not name it was judged with."""

    zscore_min_mad: float = 0.25
    """Floor on the MAD (in natural-log units) so that a round of near-identical norms does not turn honest
    variation into outliers: with the defaults, a norm must be about 3.7x off the median to be rejected."""

    duplicate_cosine: float | None = 1.0 - 1e-6
    """Without the updates' vectors (a caller that kept only the profiles), two updates are duplicates when their
    fingerprints' cosine is at least this and their norms agree within ``duplicate_norm_rtol`` (``DUPLICATE``, the
    later submission is rejected): verbatim value copies only; None: off. With vectors, ``near_copy_cosine``
    decides instead."""

    duplicate_norm_rtol: float = 1e-4
    """Relative norm difference under which two updates with near-identical direction count as one."""

    near_copy_cosine: float | None = 0.95
    """Whole-vector cosine at or above which an update is a copy (protocol R1, ``ledger.checks.copies``): of another
    member's recently accepted update (``NEAR_COPY``) or of another member's earlier submission in the round
    (``DUPLICATE``); None: off. Applies when the caller gives ``judge_round`` the updates' vectors."""

    near_copy_spread: float | None = 0.25
    """With at least 3 pairs of different members' updates in the round, a pair is a copy only if its ``1 - cos``
    is also at most this times the round's median ``1 - cos`` (``ledger.checks.copies``: honest IID updates can
    point alike to cos >= 0.95, a copy with small noise is many times closer to its original); None: the
    threshold alone."""

    loss_delta: float | None = None
    """Allowed increase of the held-out loss over the base's, in the loss's units (``LOSS_REGRESSION``); None:
    no absolute margin."""

    loss_ratio: float | None = None
    """Relative margin (>= 1): the held-out loss of base + update may be at most ``loss_ratio`` times the base's
    (``LOSS_REGRESSION``; for a negative base loss, ``loss_ratio - 1`` times its magnitude above it); None: no
    relative margin. An absolute margin fitted to one model's loss scale lets another model's broken update
    through: with ``loss_delta`` 5 nats a x10-scaled language-model update (3.2 -> 7.9 nats) passed, where 1.5
    rejects it. With both set an update must respect both."""

    @property
    def loss_gate(self) -> bool:
        """Whether the held-out loss check applies (an absolute or a relative margin is set)."""
        return self.loss_delta is not None or self.loss_ratio is not None

    def loss_bound(self, base_loss: float) -> float:
        """The highest held-out loss of base + update that passes, given the base's (``inf``: no margin set)."""
        bound = math.inf
        if self.loss_delta is not None:
            bound = base_loss + self.loss_delta
        if self.loss_ratio is not None:
            bound = min(bound, base_loss + (self.loss_ratio - 1.0) * abs(base_loss))
        return bound

    def __post_init__(self) -> None:
        if self.max_update_bytes <= 0 or self.max_header_bytes <= 0:
            raise ConfigError("size limits must be positive")
        for name in ("max_norm", "zscore_threshold", "loss_delta"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite non-negative number or None, got {value}")
        if self.loss_ratio is not None and not (math.isfinite(self.loss_ratio) and self.loss_ratio >= 1):
            raise ConfigError(f"loss_ratio must be a finite number >= 1 or None, got {self.loss_ratio}")
        spread = self.near_copy_spread
        if spread is not None and not (math.isfinite(spread) and spread > 0):
            raise ConfigError(f"near_copy_spread must be a finite positive number or None, got {spread}")
        ratio = self.max_scale_ratio
        if ratio is not None and not (math.isfinite(ratio) and ratio > 0):
            raise ConfigError(f"max_scale_ratio must be a finite positive number or None, got {ratio}")
        if not (math.isfinite(self.min_norm) and self.min_norm >= 0):
            raise ConfigError(f"min_norm must be finite and non-negative, got {self.min_norm}")
        if self.zscore_min_peers < 1 or not self.zscore_min_mad > 0:
            raise ConfigError("zscore_min_peers must be >= 1 and zscore_min_mad > 0")
        for name in ("duplicate_cosine", "near_copy_cosine"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise ConfigError(f"{name} must be in (0, 1] or None, got {value}")
