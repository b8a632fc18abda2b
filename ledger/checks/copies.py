"""Copies over whole vectors (protocol R1): NEAR_COPY of a recent round's update, DUPLICATE within a round.

* **NEAR_COPY**: cosine >= ``threshold`` (0.95) between the update and *another* member's update from one of the
  last :data:`NEAR_COPY_ROUNDS` rounds. Content is published once submissions close, so a copier can take a
  finished round's update, add noise or scale it, and submit it as its own; cosine ignores the scaling, and noise
  small enough to keep the copy useful keeps the cosine near 1. A member's own earlier update is never a copy:
  successive updates of one member point alike.
* **DUPLICATE**: cosine >= ``threshold`` between two updates of *different* members in the same round (content is
  private until the close, so only collusion produces this): the later submission index is rejected, never the
  earlier. An update already rejected as a NEAR_COPY is no original: it cannot make a later one a duplicate
  (otherwise a copier of a member's last update, submitting first, would get the member's new update rejected).

Whole vectors decide, not a sample of positions: the cosine of a few hundred sampled coordinates estimates the
true one with an error of the order of 1/sqrt(samples), which at 0.95 both misses copies and flags honest updates.
But a pass per pair is O(N^2) passes over 25M-parameter vectors (136 for 16 updates: more CPU than the rest of a
validator's round), so each vector is first reduced to a **sketch** (:func:`sketch`, one pass: every coordinate
added, with a fixed pseudo-random sign, into one of :data:`SKETCH_SIZE` buckets, rows of the vector shifted by
fixed pseudo-random offsets so that a model's repeated structure does not line up), whose cosines estimate the
vectors' to about 1/sqrt(SKETCH_SIZE) (measured in docs/benchmarks.md); only pairs whose sketch cosine comes
within :data:`SKETCH_MARGIN` of the rule are compared exactly, and the exact cosine decides. Vectors shorter than
``SKETCH_MIN`` are compared exactly, pair by pair.

**Honest spread.** On IID data honest updates can point alike to cos >= 0.95 (every member sees the same
gradient), and the fixed threshold alone would reject the later ones as duplicates. So, with ``spread`` set and
at least :data:`SPREAD_MIN_PAIRS` pairs of different members' updates in the round, a pair is a copy only if its
residual ``1 - cos`` is also at most ``spread`` times the round's typical residual (the median over the round's
pairs of different members, from the sketches): a copy with small noise is many times closer to its original than
honest updates are to one another, while honest updates of one round are about equally far apart.

The history a validator passes holds the updates the recent rounds *accepted* (the consensus's accepted set,
public at finalization), as ``(contributor, vector)``: an update rejected as a copy must not stay in it, or its
victim's next update would look like a copy of the copy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ledger.aggregation.stream import release_pages
from ledger.checks.vectors import Vector, dot, norm
from ledger.reasons import Reason

NEAR_COPY_COSINE = 0.95
NEAR_COPY_ROUNDS = 3
"""How many earlier rounds' accepted updates a new update is compared with."""
NEAR_COPY_SPREAD = 0.25
"""A pair is a copy only if ``1 - cos`` is at most this times the round's median ``1 - cos`` (module docstring);
None: the threshold alone."""
SPREAD_MIN_PAIRS = 3
"""The honest spread needs at least this many pairs of different members' updates in the round."""
SKETCH_SIZE = 1 << 16
SKETCH_MIN = 16 * SKETCH_SIZE
"""Vectors shorter than this are compared exactly, pair by pair (cheap), not through sketches."""
SKETCH_MARGIN = 0.02
"""A pair whose sketch cosine is below the rule by more than this is not compared exactly (the sketches' error
is ~0.004 at SKETCH_SIZE; the margin is 5x that)."""
_SEED = 0x6D657368  # fixed: every validator sketches alike


@dataclass(frozen=True)
class Copy:
    """Why an update is a copy: ``reason`` NEAR_COPY (``of``: the other member) or DUPLICATE (``index``: the
    earlier submission of this round it duplicates)."""

    reason: Reason
    of: str
    cosine: float
    index: int | None = None

    @property
    def detail(self) -> str:
        if self.reason is Reason.DUPLICATE:
            return f"cosine {self.cosine:.4f} to update {self.index} by {self.of}, submitted earlier in the round"
        return f"cosine {self.cosine:.4f} to an update {self.of} published in one of the last rounds"


@cache
def _pattern(size: int) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """The sketch's fixed signs: per bucket, per row (of SKETCH_SIZE coordinates), and each row's shift."""
    rows = -(-size // SKETCH_SIZE)
    rng = np.random.Generator(np.random.PCG64(_SEED))
    signs = rng.integers(0, 2, SKETCH_SIZE).astype(np.float64) * 2 - 1
    row_signs = rng.integers(0, 2, rows).astype(np.float64) * 2 - 1
    shifts = rng.integers(0, SKETCH_SIZE, rows).astype(np.int64)
    return signs, row_signs, shifts


def sketch(v: Vector) -> NDArray[np.float64]:
    """A fixed random projection of ``v`` to SKETCH_SIZE values (a count sketch: coordinate ``i`` of row
    ``r = i // SKETCH_SIZE`` goes to bucket ``(i + shift[r]) % SKETCH_SIZE`` with sign ``sign[i % SKETCH_SIZE] *
    row_sign[r]``). Inner products of sketches estimate the vectors' (unbiased). One pass, one row at a time; a
    memory-mapped vector's pages are handed back as they are read."""
    signs, row_signs, shifts = _pattern(v.size)
    out = np.zeros(SKETCH_SIZE, np.float64)
    row = np.empty(SKETCH_SIZE, np.float64)
    for r, start in enumerate(range(0, v.size, SKETCH_SIZE)):
        stop = min(start + SKETCH_SIZE, v.size)
        m = stop - start
        part = row[:m]
        np.copyto(part, v[start:stop], casting="safe")
        release_pages(v[start:stop])
        np.multiply(part, signs[:m], out=part)
        if row_signs[r] < 0:
            np.negative(part, out=part)
        s = int(shifts[r])
        first = min(m, SKETCH_SIZE - s)
        out[s : s + first] += part[:first]
        if m > first:
            out[: m - first] += part[first:]
    return out


@dataclass
class _Known:
    """A vector with its author, its sketch and (once needed) its exact norm."""

    who: str
    vector: Vector
    sketch: NDArray[np.float64] | None
    index: int | None = None
    author: str = ""
    _norm: float | None = field(default=None, repr=False)
    _sketch_norm: float | None = field(default=None, repr=False)

    @property
    def norm(self) -> float:
        if self._norm is None:
            self._norm = norm(self.vector)
        return self._norm

    @property
    def sketch_norm(self) -> float:
        if self._sketch_norm is None:
            assert self.sketch is not None
            self._sketch_norm = math.sqrt(dot(self.sketch, self.sketch))
        return self._sketch_norm


def find_copies(
    vectors: Sequence[Vector | None],
    authors: Sequence[str],
    history: Iterable[tuple[str, Vector]] = (),
    *,
    threshold: float = NEAR_COPY_COSINE,
    spread: float | None = NEAR_COPY_SPREAD,
    sketches: Sequence[NDArray[np.float64] | None] | None = None,
    history_sketches: Sequence[NDArray[np.float64] | None] | None = None,
) -> list[Copy | None]:
    """Per update of the round (submission order): the copy it is, or None.

    ``vectors[i]`` None: update ``i`` is not judged here (it failed a hard check) and is no original either.
    ``authors[i]``: the contributor the chain recorded (addresses compare case-insensitively). ``history``:
    ``(contributor, vector)`` of the last rounds' accepted updates (module docstring). ``spread``: the honest
    spread rule (None: the threshold alone). ``sketches`` / ``history_sketches``: the vectors' :func:`sketch`
    if the caller kept them (computed here otherwise)."""
    if len(vectors) != len(authors):
        raise ValueError(f"{len(vectors)} vectors for {len(authors)} authors")
    if not 0 < threshold <= 1:
        raise ValueError(f"the copy threshold must be in (0, 1], got {threshold}")
    if spread is not None and not (math.isfinite(spread) and spread > 0):
        raise ValueError(f"the copy spread must be a positive number or None, got {spread}")
    past_items = list(history)
    size = next((v.size for v in vectors if v is not None), None)
    if size is None:
        size = past_items[0][1].size if past_items else 0
    sketched = size >= SKETCH_MIN

    def sk(v: Vector, given: Sequence[Any] | None, i: int) -> NDArray[np.float64] | None:
        if not sketched:
            return None
        if given is not None and given[i] is not None:
            return np.asarray(given[i])
        return sketch(v)

    past = [_Known(who.lower(), v, sk(v, history_sketches, i)) for i, (who, v) in enumerate(past_items)]
    names = [a.lower() for a in authors]
    mine = [
        None if v is None else _Known(names[i], v, sk(v, sketches, i), i, authors[i])
        for i, v in enumerate(vectors)
    ]
    rule = _Rule(threshold, spread, _typical([k for k in mine if k is not None], sketched, spread))
    out: list[Copy | None] = []
    originals: list[_Known] = []
    for me in mine:
        found: Copy | None = None
        if me is not None:
            found = _most_similar(me, [p for p in past if p.who != me.who], rule, Reason.NEAR_COPY)
            if found is None:
                others = [o for o in originals if o.who != me.who]
                found = _most_similar(me, others, rule, Reason.DUPLICATE, first=True)
            if found is None:
                originals.append(me)
        out.append(found)
    return out


@dataclass(frozen=True)
class _Rule:
    threshold: float
    spread: float | None
    typical: float | None
    """The round's median residual ``1 - cos`` over pairs of different members (None: too few pairs)."""

    def copy(self, c: float, *, margin: float = 0.0) -> bool:
        if c < self.threshold - margin:
            return False
        if self.spread is None or self.typical is None:
            return True
        return 1.0 - c <= self.spread * self.typical + margin


def _typical(known: Sequence[_Known], sketched: bool, spread: float | None) -> float | None:
    if spread is None:
        return None
    residuals = []
    for a_i, a in enumerate(known):
        for b in known[a_i + 1 :]:
            if a.who == b.who:
                continue
            c = _sketch_cosine(a, b) if sketched else _cosine(a, b)
            if c is not None:
                residuals.append(1.0 - c)
    if len(residuals) < SPREAD_MIN_PAIRS:
        return None
    residuals.sort()
    return residuals[(len(residuals) - 1) // 2]  # the lower median: one of the measured values


def _most_similar(
    me: _Known, others: Sequence[_Known], rule: _Rule, reason: Reason, *, first: bool = False
) -> Copy | None:
    """The other vector with the highest cosine that the rule calls a copy (``first``: the earliest one)."""
    best: Copy | None = None
    for other in others:
        if me.sketch is not None and other.sketch is not None:
            estimate = _sketch_cosine(me, other)
            if estimate is None or not rule.copy(estimate, margin=SKETCH_MARGIN):
                continue  # far from the rule: not compared exactly
        c = _cosine(me, other)
        if c is not None and rule.copy(c) and (best is None or c > best.cosine):
            best = Copy(reason, other.author or other.who, c, other.index)
            if first:
                break
    return best


def _sketch_cosine(a: _Known, b: _Known) -> float | None:
    assert a.sketch is not None
    assert b.sketch is not None
    na, nb = a.sketch_norm, b.sketch_norm
    if not (na > 0 and nb > 0 and math.isfinite(na) and math.isfinite(nb)):
        return None
    c = dot(a.sketch, b.sketch) / (na * nb)
    return max(-1.0, min(1.0, c)) if math.isfinite(c) else None


def _cosine(a: _Known, b: _Known) -> float | None:
    if not (a.norm > 0 and b.norm > 0 and math.isfinite(a.norm) and math.isfinite(b.norm)):
        return None
    c = dot(a.vector, b.vector) / (a.norm * b.norm)
    return max(-1.0, min(1.0, c)) if math.isfinite(c) else None
