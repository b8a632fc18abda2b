"""The dashboard's errors, and how any foreseen error becomes an HTTP status.

    MeshprovError
    └── DashboardError
        ├── UnknownAddress (NotFound, 404)     a well-formed address with no record in the index
        ├── NothingIndexed (NotFound, 404)     the index is empty (no checkpoint yet)
        └── BadParameter (ValueError, 422)     a query parameter outside its allowed values

Errors from the packages the dashboard reads pass through and are mapped by exit code: InvalidAddress and
InvalidCID (USAGE → 422), UnknownTask, UnknownRound, NotAnchored (NOT_FOUND → 404), IndexUnavailable
(UNAVAILABLE → 503). Anything else is a 500, which the handlers still render as a page or JSON body.
"""

from __future__ import annotations

from ledger.errors import MeshprovError, NotFound
from ledger.exit_codes import ExitCode


class DashboardError(MeshprovError):
    """Root of the dashboard's own errors."""


class UnknownAddress(DashboardError, NotFound):
    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(
            f"{address} has no record in the index: no role, submission, score or reward",
            hint="check the address (the contributors page lists every member), or that the index is up to date",
        )


class NothingIndexed(DashboardError, NotFound):
    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(
            f"the index at {url} is empty",
            hint="build it with `meshprov index follow --once`, or serve with `meshprov dashboard serve --follow`",
        )


class BadParameter(DashboardError, ValueError):
    exit_code = ExitCode.USAGE

    def __init__(self, name: str, value: object, allowed: str) -> None:
        self.name = name
        self.value = value
        super().__init__(f"{name}={value!r} is not allowed", hint=f"{name} must be {allowed}")


_STATUS = {
    ExitCode.USAGE: 422,
    ExitCode.NOT_FOUND: 404,
    ExitCode.UNAVAILABLE: 503,
    ExitCode.CONFIG: 503,
}


def http_status(exc: MeshprovError) -> int:
    """The HTTP status of a foreseen error: 422 bad input, 404 unknown, 503 index unreachable, else 500."""
    return _STATUS.get(exc.exit_code, 500)


def error_code(status: int) -> str:
    return {404: "not-found", 422: "invalid-input", 503: "unavailable"}.get(status, "error")


class NoSettings(DashboardError, NotFound):
    """The privacy report reads the task's budget from the configured content store: it needs the dashboard's
    settings (`meshprov dashboard serve` has them; an app built from an index URL alone does not)."""

    def __init__(self) -> None:
        super().__init__(
            "the privacy report needs the dashboard's settings (its content store)",
            hint="serve with `meshprov dashboard serve`, or pass settings= to create_app",
        )
