"""Errors of a running member node (`meshprov node run`, `meshprov node relay`) and their exit codes.

    MeshprovError
    ├── NotMember (NodeError)       the key does not hold the contributor role on the ledger     [NOT_MEMBER, 9]
    ├── NoSigningKey (ConfigError)  no key configured                                            [CONFIG, 5]
    ├── BaseUnavailable             the round's base model cannot be fetched after every retry   [UNAVAILABLE, 6]
    ├── BaseMismatch (Mismatch)     the base is not a model of the node's recipe                 [MISMATCH, 3]
    ├── RecipeMismatch (Mismatch)   the installed recipe is not the task's (ledger.recipe)        [RECIPE_MISMATCH, 10]
    ├── SpecUnavailable             the task's spec is required (--require-spec) but unreadable  [UNAVAILABLE, 6]
    ├── TooManySamplesClaimed       the update claims more samples than the task's maxSamples    [CONFIG, 5]
    ├── RelayRejected               the relayer refused the signed submission                    [ERROR, 1]
    └── InvalidRelayMessage         a relay queue message that is not a well-formed submission   (never exits:
                                    the relayer drops it and answers with the problem)

A round that closed while the node trained is not an error: the update stays on disk, the node logs it and moves
on to the next round. A chain that stops answering is not one either: the node waits and reconnects.
"""

from __future__ import annotations

from ledger.errors import ConfigError, MeshprovError, Mismatch
from ledger.exit_codes import ExitCode


class NodeError(MeshprovError):
    """Root of the node's own errors."""


class NotMember(NodeError):
    exit_code = ExitCode.NOT_MEMBER

    def __init__(self, address: str, role: str, ledger: str) -> None:
        self.address = address
        self.role = role
        self.ledger = ledger
        super().__init__(
            f"{address} does not hold the {role} role on the ledger {ledger}",
            hint=f"ask the consortium admin to grant the {role} role to {address} "
            "(or point MESHPROV_PRIVATE_KEY_FILE at the member's key)",
        )


class NoSigningKey(ConfigError):
    def __init__(self, role: str = "member node") -> None:
        super().__init__(
            f"a {role} needs its private key",
            hint="set MESHPROV_PRIVATE_KEY_FILE (or MESHPROV_PRIVATE_KEY) to the member's hex key",
        )


class BaseUnavailable(NodeError):
    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, cid: str, round_: int, attempts: int, last_error: str) -> None:
        self.cid = cid
        self.round = round_
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(
            f"cannot fetch the base model {cid} of round {round_} after {attempts} attempts: {last_error}",
            hint="check the content store (MESHPROV_STORE, MESHPROV_KUBO_API_URL) holds the model; the node "
            "resumes from its saved updates when restarted",
        )


class BaseMismatch(Mismatch):
    def __init__(self, cid: str, model: str, problem: str) -> None:
        self.cid = cid
        self.model = model
        self.problem = problem
        super().__init__(
            f"the base model {cid} is not a `{model}` model: {problem}",
            hint="install and pass the task's recipe with --recipe (see `meshprov node run --help`)",
        )


class SpecUnavailable(NodeError):
    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, task: int, cid: str, problem: str) -> None:
        super().__init__(
            f"cannot read the specification {cid} of task {task}: {problem}",
            hint="check the content store holds the task's spec (the deployer puts it there), or run without "
            "--require-spec to train unchecked",
        )


class RelayRejected(NodeError):
    def __init__(self, contributor: str, nonce: int, problem: str) -> None:
        self.contributor = contributor
        self.nonce = nonce
        self.problem = problem
        super().__init__(
            f"the relayer refused the submission of {contributor} (nonce {nonce}): {problem}",
            hint="check `meshprov node relay` is running against the same ledger, or submit directly "
            "(without --relay) from a funded key",
        )


class InvalidRelayMessage(NodeError, ValueError):
    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"invalid relay message: {problem}")


class TooManySamplesClaimed(ConfigError):
    """The update's sample count exceeds the task's ``maxSamples``: the chain would refuse the submission."""

    def __init__(self, num_samples: int, max_samples: int, task: int) -> None:
        self.num_samples = num_samples
        self.max_samples = max_samples
        super().__init__(
            f"this member's update claims {num_samples} samples, but task {task} accepts at most {max_samples} "
            "(the task's maxSamples)",
            hint=f"train on at most {max_samples} samples per round (a smaller shard or --data hook), or ask the "
            "consortium admin for a task with a larger maxSamples; sample counts weigh nothing in protocol v2",
        )
