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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ledger.checks.vectors import Vector, cosine
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
    past = [(who.lower(), v) for who, v in history]
    names = [a.lower() for a in authors]
    out: list[Copy | None] = []
    originals: list[int] = []
    for i, v in enumerate(vectors):
        found: Copy | None = None
        if v is not None:
            found = _near_copy(v, names[i], past, threshold)
            if found is None:
                same = [j for j in originals if names[j] != names[i]]
                found = _duplicate(v, [(j, authors[j], vectors[j]) for j in same], threshold)
            if found is None:
                originals.append(i)
        out.append(found)
    return out


def _near_copy(v: Vector, author: str, past: Sequence[tuple[str, Vector]], threshold: float) -> Copy | None:
    best: Copy | None = None
    for who, old in past:
        if who == author:
            continue
        c = cosine(v, old)
        if c is not None and c >= threshold and (best is None or c > best.cosine):
            best = Copy(Reason.NEAR_COPY, who, c)
    return best


def _duplicate(v: Vector, earlier: Sequence[tuple[int, str, Vector | None]], threshold: float) -> Copy | None:
    for j, who, other in earlier:
        c = None if other is None else cosine(v, other)
        if c is not None and c >= threshold:
            return Copy(Reason.DUPLICATE, who, c, j)
    return None
