"""Named exit codes for every `meshprov` command, each with the help text `meshprov --help-exit-codes` prints.

Scripts rely on these numbers: never renumber one, only add.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    MISMATCH = 3
    NOT_FOUND = 4
    CONFIG = 5
    UNAVAILABLE = 6
    MISSING_BINARY = 7
    REJECTED = 8
    NOT_MEMBER = 9
    RECIPE_MISMATCH = 10
    INTERRUPTED = 130

    @property
    def help(self) -> str:
        return EXIT_CODE_HELP[self]


EXIT_CODE_HELP: dict[ExitCode, str] = {
    ExitCode.OK: "Success; for audit commands, everything checked was verified.",
    ExitCode.ERROR: "An unexpected error; the message names it. Re-run with MESHPROV_LOG_LEVEL=DEBUG for detail.",
    ExitCode.USAGE: "The command line was wrong: an unknown option, a missing argument or a value that does not parse.",
    ExitCode.MISMATCH: "Verification failed: a CID, digest, aggregate or record differs from what the chain anchors.",
    ExitCode.NOT_FOUND: "The task, round, CID, address or file asked for does not exist (or is not anchored).",
    ExitCode.CONFIG: "The configuration is invalid: an unknown key, malformed TOML or a value out of range.",
    ExitCode.UNAVAILABLE: "A service could not be reached or started: the chain RPC, Redis, the content store, a port.",
    ExitCode.MISSING_BINARY: "A required program is missing (anvil, redis-server, solc wrapper); the hint says how to install or configure it.",
    ExitCode.REJECTED: "An update failed a validator check; the reason code says which.",
    ExitCode.NOT_MEMBER: "The key is not a member of the consortium in the needed role; ask the admin to grant it.",
    ExitCode.RECIPE_MISMATCH: "The installed recipe's hash differs from the one the task's spec anchors; install the task's recipe version (the message names both hashes).",
    ExitCode.INTERRUPTED: "Interrupted (Ctrl-C); everything started by the command was stopped.",
}
