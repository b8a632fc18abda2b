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

Whole vectors, not a sample of positions: the cosine of a few hundred sampled coordinates estimates the true one
with an error of the order of 1/sqrt(samples), which at 0.95 both misses copies and flags honest updates; whole
vectors cost one pass per pair, small next to training the reference update.

The history a validator passes holds the updates the recent rounds *accepted* (the consensus's accepted set,
public at finalization), as ``(contributor, vector)``: an update rejected as a copy must not stay in it, or its
victim's next update would look like a copy of the copy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ledger.checks.vectors import Vector, dot, norm
from ledger.reasons import Reason

NEAR_COPY_COSINE = 0.95
NEAR_COPY_ROUNDS = 3
"""How many earlier rounds' accepted updates a new update is compared with."""


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


def find_copies(
    vectors: Sequence[Vector | None],
    authors: Sequence[str],
    history: Iterable[tuple[str, Vector]] = (),
    *,
    threshold: float = NEAR_COPY_COSINE,
) -> list[Copy | None]:
    """Per update of the round (submission order): the copy it is, or None.

    ``vectors[i]`` None: update ``i`` is not judged here (it failed a hard check) and is no original either.
    ``authors[i]``: the contributor the chain recorded (addresses compare case-insensitively). ``history``:
    ``(contributor, vector)`` of the last rounds' accepted updates (module docstring)."""
    if len(vectors) != len(authors):
        raise ValueError(f"{len(vectors)} vectors for {len(authors)} authors")
    if not 0 < threshold <= 1:
        raise ValueError(f"the copy threshold must be in (0, 1], got {threshold}")
    past = [_Known(who.lower(), v, norm(v)) for who, v in history]
    names = [a.lower() for a in authors]
    out: list[Copy | None] = []
    originals: list[_Known] = []
    for i, v in enumerate(vectors):
        found: Copy | None = None
        if v is not None:
            me = _Known(names[i], v, norm(v))
            found = _most_similar(me, [p for p in past if p.who != me.who], threshold, Reason.NEAR_COPY)
            if found is None:
                others = [o for o in originals if o.who != me.who]
                found = _most_similar(me, others, threshold, Reason.DUPLICATE, first=True)
            if found is None:
                originals.append(_Known(names[i], v, me.norm, i, authors[i]))
        out.append(found)
    return out


@dataclass(frozen=True)
class _Known:
    """A vector with its author and norm (each norm is computed once, not once per pair)."""

    who: str
    vector: Vector
    norm: float
    index: int | None = None
    author: str = ""


def _most_similar(
    me: _Known, others: Sequence[_Known], threshold: float, reason: Reason, *, first: bool = False
) -> Copy | None:
    """The other vector with the highest cosine at or above ``threshold`` (``first``: the earliest one)."""
    best: Copy | None = None
    for other in others:
        c = _cosine(me, other)
        if c is not None and c >= threshold and (best is None or c > best.cosine):
            best = Copy(reason, other.author or other.who, c, other.index)
            if first:
                break
    return best


def _cosine(a: _Known, b: _Known) -> float | None:
    if not (a.norm > 0 and b.norm > 0 and math.isfinite(a.norm) and math.isfinite(b.norm)):
        return None
    c = dot(a.vector, b.vector) / (a.norm * b.norm)
    return max(-1.0, min(1.0, c)) if math.isfinite(c) else None
