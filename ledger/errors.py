"""The root of every error meshprov raises on purpose.

Each error carries fields, builds its own message, names what to do next (``hint``) and knows the exit code
the CLI should use, so that commands never print a traceback for a failure we foresaw.

    MeshprovError
    ├── ConfigError                  settings: unknown key, malformed TOML, bad value
    ├── ServiceUnavailable           chain RPC, Redis, store or a port cannot be reached or used
    ├── MissingBinary                anvil, redis-server, the solc wrapper …
    ├── NotFound                     a task, round, CID, address or file that does not exist
    ├── Mismatch                     verification failed (CID, digest, aggregate)
    └── (other packages add their own subclasses: content, chain, checks, …)
"""

from __future__ import annotations

from ledger.exit_codes import ExitCode


class MeshprovError(Exception):
    """Base class: a foreseen failure with a clear message, an optional hint and an exit code."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(MeshprovError, ValueError):
    exit_code = ExitCode.CONFIG


class ServiceUnavailable(MeshprovError, ConnectionError):
    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, service: str, endpoint: str, reason: str, *, hint: str | None = None) -> None:
        self.service = service
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(f"{service} at {endpoint} is unavailable: {reason}", hint=hint)


class MissingBinary(MeshprovError, FileNotFoundError):
    exit_code = ExitCode.MISSING_BINARY

    def __init__(self, program: str, looked_in: list[str], *, hint: str) -> None:
        self.program = program
        self.looked_in = looked_in
        where = ", ".join(looked_in) if looked_in else "PATH"
        super().__init__(f"{program} not found (looked in {where})", hint=hint)


class NotFound(MeshprovError, LookupError):
    exit_code = ExitCode.NOT_FOUND


class Mismatch(MeshprovError):
    exit_code = ExitCode.MISMATCH
