"""Round-level statistics: the robust z-score of an update's norm and duplicate detection.

Computed once the submission window has closed, over the profiles of the updates that passed the per-update
checks, in submission order (the chain's order of ``Submitted`` events). Both are pure and cheap: the norms and
the fingerprints were measured when each update was verified.

* **Robust z-score** of the log norm, leave-one-out: the update is compared with the *other* updates' median
  and MAD (so it cannot pull the statistics towards itself). With fewer than ``zscore_min_peers`` others the
  z-score is not defined and the check does not apply: a round of one, two or three updates is judged by the
  absolute bounds alone. The MAD is floored (``zscore_min_mad``) so that near-identical honest norms do not make
  every small difference an outlier.
* **Duplicates** by fingerprint: two updates with the same digest, or whose fingerprints have cosine >=
  ``duplicate_cosine`` and whose norms agree within ``duplicate_norm_rtol``. The earliest submission is kept;
  every later one that duplicates an earlier one is rejected. This catches verbatim value copies whatever their
  metadata, and only those: it is what applies when the caller has no vectors. Copies with noise or scaling are
  found over the whole vectors (``ledger.checks.copies``, through ``judge_round(..., vectors=...)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.checks.limits import CheckLimits
from ledger.checks.profile import UpdateProfile

MAD_TO_SIGMA = 0.6745
"""Iglewicz-Hoaglin: 0.6745 * (x - median) / MAD is a z-score for normal data."""


@dataclass(frozen=True)
class RoundStats:
    """The profiles of a round's updates that passed the per-update checks, in submission order."""

    profiles: tuple[UpdateProfile, ...]

    def index(self, digest: bytes) -> int:
        for i, p in enumerate(self.profiles):
            if p.digest == digest:
                return i
        raise KeyError(digest.hex())

    def _peer_log_norms(self, digest: bytes) -> list[float]:
        """The log norms of the other updates (of positive norm): what the update's z-score is measured against."""
        i = self.index(digest)
        return [math.log(p.norm) for j, p in enumerate(self.profiles) if j != i and p.norm > 0]

    def peers(self, digest: bytes) -> int:
        """How many other updates the update's z-score is measured against."""
        return len(self._peer_log_norms(digest))

    def zscore(self, digest: bytes, limits: CheckLimits) -> float | None:
        """Leave-one-out robust z-score of the update's log norm; None when the round is too small."""
        norm = self.profiles[self.index(digest)].norm
        peers = self._peer_log_norms(digest)
        if len(peers) < limits.zscore_min_peers or not norm > 0:
            return None
        center = _median(peers)
        mad = _median([abs(x - center) for x in peers])
        return MAD_TO_SIGMA * (math.log(norm) - center) / max(mad, limits.zscore_min_mad)

    def duplicate_of(self, digest: bytes, limits: CheckLimits) -> UpdateProfile | None:
        """The earliest earlier submission this update duplicates, if any."""
        if limits.duplicate_cosine is None:
            return None
        i = self.index(digest)
        me = self.profiles[i]
        for other in self.profiles[:i]:
            if is_duplicate(me, other, limits):
                return other
        return None


def round_stats(profiles: Sequence[UpdateProfile]) -> RoundStats:
    """Statistics over a round's profiles (submission order; a digest may appear once)."""
    seen: set[bytes] = set()
    for p in profiles:
        if p.digest in seen:
            raise ValueError(f"digest {p.digest.hex()} appears twice in the round")
        seen.add(p.digest)
    return RoundStats(tuple(profiles))


def is_duplicate(a: UpdateProfile, b: UpdateProfile, limits: CheckLimits) -> bool:
    """Same digest, or fingerprints with cosine >= the threshold and norms equal within the tolerance."""
    if a.digest == b.digest:
        return True
    if limits.duplicate_cosine is None:
        return False
    if abs(a.norm - b.norm) > limits.duplicate_norm_rtol * max(a.norm, b.norm):
        return False
    cos = cosine(a.fingerprint, b.fingerprint)
    return cos is not None and cos >= limits.duplicate_cosine


def cosine(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Cosine of two fingerprints with correctly rounded sums (``math.fsum``); None when either is zero."""
    if len(a) != len(b) or not a:
        return None
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(math.fsum(x * x for x in a))
    nb = math.sqrt(math.fsum(y * y for y in b))
    if na == 0 or nb == 0:
        return None
    return dot / (na * nb)


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
