"""The validator checks (pure: no Celery, no chain, no torch): each failure is a stable `ledger.reasons.Reason`.

    limits.py         CheckLimits: size, header, norm bounds, scale against the base, z-score, duplicates, loss margin
    update_checks.py  the checks in order (verify_update, judge_in_round, check_loss, check_update, base_norm)
    profile.py        the one streaming pass: finite, L2 norm, fingerprint -> UpdateProfile
    round.py          round-level statistics: robust z-score of the log norm, verbatim duplicates by fingerprint
    vectors.py        an update as one vector (flatten) and the fixed-order dot, norm and cosine of whole vectors
    copies.py         NEAR_COPY of a recent round's accepted update, DUPLICATE within a round (whole vectors, R1)
    score.py          a validator's score of an update against its reference update (loss gate, cosine, magnitude)
    judge.py          a round judged from files: judge_update, judge_round, ballot_for, Judged
    verdict.py        Verdict and UpdateRejected

See docs/aggregation.md ("Validator checks") for the list with reason codes.
"""

from ledger.checks.copies import NEAR_COPY_COSINE, NEAR_COPY_ROUNDS, Copy, find_copies
from ledger.checks.judge import Judged, ballot_for, judge_round, judge_update
from ledger.checks.limits import CheckLimits
from ledger.checks.profile import FINGERPRINT_SIZE, Scan, UpdateProfile, scan, scan_file
from ledger.checks.round import RoundStats, cosine, is_duplicate, round_stats
from ledger.checks.score import Score, ScoringError, rejected, reveal_arrays, score_vector
from ledger.checks.update_checks import (
    ChainRecord,
    LossFn,
    base_norm,
    check_digest,
    check_in_round,
    check_layout,
    check_loss,
    check_metadata,
    check_size,
    check_update,
    check_values,
    judge_in_round,
    kubo_digest,
    verify_update,
)
from ledger.checks.vectors import Vector, dot, flatten, norm
from ledger.checks.verdict import UpdateRejected, Verdict

__all__ = [
    "FINGERPRINT_SIZE",
    "NEAR_COPY_COSINE",
    "NEAR_COPY_ROUNDS",
    "ChainRecord",
    "CheckLimits",
    "Copy",
    "Judged",
    "LossFn",
    "RoundStats",
    "Scan",
    "Score",
    "ScoringError",
    "UpdateProfile",
    "UpdateRejected",
    "Vector",
    "Verdict",
    "ballot_for",
    "base_norm",
    "check_digest",
    "check_in_round",
    "check_layout",
    "check_loss",
    "check_metadata",
    "check_size",
    "check_update",
    "check_values",
    "cosine",
    "dot",
    "find_copies",
    "flatten",
    "is_duplicate",
    "judge_in_round",
    "judge_round",
    "judge_update",
    "kubo_digest",
    "norm",
    "rejected",
    "reveal_arrays",
    "round_stats",
    "scan",
    "scan_file",
    "score_vector",
    "verify_update",
]
