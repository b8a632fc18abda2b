"""A validator's verdict on one update, and the error raised when a caller wants a reject to be an exception.

MeshprovError
└── UpdateRejected       exit code REJECTED; carries the verdict (reason code, detail, norm)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ledger.checks.profile import UpdateProfile
from ledger.content.multiformats import digest_to_cid
from ledger.errors import MeshprovError
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason


@dataclass(frozen=True)
class Verdict:
    """The outcome of the checks: ``reason`` is ``ACCEPTED`` or the first check that failed.

    ``profile`` (digest, norm, fingerprint) is set once the update's values have been read, so that an accepted
    update can enter the round-level checks; ``zscore`` and ``duplicate_of`` are filled by those.
    """

    reason: Reason
    detail: str = ""
    norm: float | None = None
    digest: bytes | None = None
    profile: UpdateProfile | None = None
    zscore: float | None = None
    duplicate_of: bytes | None = None
    loss: float | None = None
    base_loss: float | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is Reason.ACCEPTED

    @property
    def cid(self) -> str | None:
        return None if self.digest is None else digest_to_cid(self.digest)

    def but(self, **changes: Any) -> Verdict:
        """A copy with some fields changed (verdicts are immutable)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what `meshprov worker check --json` prints and what a worker stores between stages."""
        return {
            "accepted": self.accepted,
            "reason": int(self.reason),
            "reason_slug": self.reason.slug,
            "reason_help": self.reason.help,
            "detail": self.detail,
            "cid": self.cid,
            "norm": self.norm,
            "zscore": self.zscore,
            "duplicate_of": None if self.duplicate_of is None else digest_to_cid(self.duplicate_of),
            "loss": self.loss,
            "base_loss": self.base_loss,
            "profile": None if self.profile is None else self.profile.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        from ledger.content.multiformats import cid_to_digest

        profile = data.get("profile")
        return cls(
            reason=Reason(data["reason"]),
            detail=data.get("detail", ""),
            norm=data.get("norm"),
            digest=cid_to_digest(data["cid"]) if data.get("cid") else None,
            profile=UpdateProfile.from_dict(profile) if profile else None,
            zscore=data.get("zscore"),
            duplicate_of=cid_to_digest(data["duplicate_of"]) if data.get("duplicate_of") else None,
            loss=data.get("loss"),
            base_loss=data.get("base_loss"),
        )

    def raise_if_rejected(self, source: str | None = None) -> None:
        if not self.accepted:
            raise UpdateRejected(self, source=source)


class UpdateRejected(MeshprovError):
    """An update failed a check; ``reason`` is the stable code a validator records on chain."""

    exit_code = ExitCode.REJECTED

    def __init__(self, verdict: Verdict, *, source: str | None = None) -> None:
        self.verdict = verdict
        self.reason = verdict.reason
        self.source = source or verdict.cid
        where = f"{self.source}: " if self.source else ""
        super().__init__(
            f"{where}rejected ({verdict.reason.slug}, code {int(verdict.reason)}): {verdict.detail}",
            hint=verdict.reason.help,
        )
