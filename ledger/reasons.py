"""Stable reason codes for a validator's verdict on an update.

The number is what a validator reveals on chain with its scores, so never renumber a code, only add. Each code's
documentation is what `meshprov worker check` and the auditor print. Checks run cheapest first; the first
failure decides the reason.
"""

from __future__ import annotations

from enum import IntEnum


class Reason(IntEnum):
    ACCEPTED = 0
    TOO_LARGE = 1
    CID_MISMATCH = 2
    HEADER_TOO_LARGE = 3
    TRUNCATED = 4
    HEADER_NOT_JSON = 5
    UNKNOWN_DTYPE = 6
    BAD_OFFSETS = 7
    BAD_SHAPE = 8
    BAD_METADATA = 9
    METADATA_MISMATCH = 10
    KEYS_MISMATCH = 11
    SHAPE_MISMATCH = 12
    DTYPE_MISMATCH = 13
    NON_FINITE = 14
    NORM_TOO_LARGE = 15
    NORM_OUTLIER = 16
    NORM_TOO_SMALL = 17
    DUPLICATE = 18
    LOSS_REGRESSION = 19
    SCALE_OUT_OF_PROPORTION = 20
    NEAR_COPY = 21
    PRIVACY_BUDGET_EXCEEDED = 22

    @property
    def slug(self) -> str:
        return self.name.lower().replace("_", "-")

    @property
    def help(self) -> str:
        return REASON_HELP[self]


REASON_HELP: dict[Reason, str] = {
    Reason.ACCEPTED: "Every check passed.",
    Reason.TOO_LARGE: "The file is larger than the consortium's size limit (stopped before the download completed).",
    Reason.CID_MISMATCH: "The bytes fetched do not hash to the digest recorded on chain for this submission.",
    Reason.HEADER_TOO_LARGE: "The safetensors header length exceeds the limit for headers.",
    Reason.TRUNCATED: "The file is shorter than its header says (or than 8 bytes): it was cut off.",
    Reason.HEADER_NOT_JSON: "The safetensors header is not valid UTF-8 JSON of the expected shape.",
    Reason.UNKNOWN_DTYPE: "A tensor has a dtype meshprov does not accept.",
    Reason.BAD_OFFSETS: "Tensor data offsets are out of range, overlapping, not contiguous or leave trailing bytes.",
    Reason.BAD_SHAPE: "A tensor's shape times its dtype size does not equal its byte length.",
    Reason.BAD_METADATA: "The `meshprov` metadata is missing, not canonical JSON, or has missing or extra fields.",
    Reason.METADATA_MISMATCH: "The metadata names another task, round, base model, contributor or sample count "
    "than the chain records.",
    Reason.KEYS_MISMATCH: "The update's tensor names differ from the base model's (missing or extra keys).",
    Reason.SHAPE_MISMATCH: "A tensor's shape differs from the base model's.",
    Reason.DTYPE_MISMATCH: "A tensor's dtype differs from the base model's.",
    Reason.NON_FINITE: "The update contains NaN or infinite values.",
    Reason.NORM_TOO_LARGE: "The update's L2 norm exceeds the task's absolute bound.",
    Reason.NORM_OUTLIER: "The update's norm is an outlier against this round's other updates (robust z-score).",
    Reason.NORM_TOO_SMALL: "The update is (almost) zero: no training happened (free-riding).",
    Reason.DUPLICATE: "The update is a copy of another member's update submitted earlier in the same round (the "
    "same bytes, or cosine >= 0.95 over the whole vectors).",
    Reason.LOSS_REGRESSION: "On the validator's held-out data the update makes the model worse than the base by "
    "more than the allowed margin.",
    Reason.SCALE_OUT_OF_PROPORTION: "The update's L2 norm is out of proportion to the base model's: more than the "
    "allowed multiple of the base's norm (a scaled or boosted update).",
    Reason.NEAR_COPY: "The update points the same way (cosine >= 0.95 over the whole vectors) as another member's "
    "update of one of the last rounds: a copy of published work, noise or scaling added.",
    Reason.PRIVACY_BUDGET_EXCEEDED: "The task anchors a privacy budget and the member's updates in it so far, this "
    "one included and accepted or not, compose to more than the budget's epsilon at its delta, or one of them "
    "carries no privacy record the accountant can compose (unbounded).",
}
