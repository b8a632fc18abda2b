"""The validator checks (pure: no Celery, no chain, no torch): each failure is a stable `ledger.reasons.Reason`.

    limits.py         CheckLimits: size, header, norm bounds, scale against the base, z-score, duplicates, loss margin
    update_checks.py  the checks in order (verify_update, judge_in_round, check_loss, check_update, base_norm)
    profile.py        the one streaming pass: finite, L2 norm, fingerprint -> UpdateProfile
    round.py          round-level statistics: robust z-score of the log norm, duplicates
    judge.py          a round judged from files: judge_update, judge_round, ballot_for, Judged
    verdict.py        Verdict and UpdateRejected

See docs/aggregation.md ("Validator checks") for the list with reason codes.
"""

from ledger.checks.judge import Judged, ballot_for, judge_round, judge_update
from ledger.checks.limits import CheckLimits
from ledger.checks.profile import FINGERPRINT_SIZE, Scan, UpdateProfile, scan, scan_file
from ledger.checks.round import RoundStats, cosine, is_duplicate, round_stats
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
from ledger.checks.verdict import UpdateRejected, Verdict

__all__ = [
    "FINGERPRINT_SIZE",
    "ChainRecord",
    "CheckLimits",
    "Judged",
    "LossFn",
    "RoundStats",
    "Scan",
    "UpdateProfile",
    "UpdateRejected",
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
    "is_duplicate",
    "judge_in_round",
    "judge_round",
    "judge_update",
    "kubo_digest",
    "round_stats",
    "scan",
    "scan_file",
    "verify_update",
]
