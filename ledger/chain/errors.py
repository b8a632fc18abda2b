"""One named exception per error in the ABIs of MeshLedger and MeshToken (their own and OpenZeppelin's).

:class:`~ledger.chain.revert.RevertDecoder` looks a revert's name up in :data:`REVERT_CLASSES` and raises the
class found, with the decoded arguments as fields and a hint filled in from them. A test checks that every ABI
error has a class here and every class here names an ABI error.

    ContractRevert (ledger.chain.revert)
    ├── Panic, SolidityError           Solidity's built-in Panic(uint256) and Error(string)
    ├── LedgerRevert                   MeshLedger_* errors
    │   ├── NotMemberRevert            the caller lacks a role or a seat in the round's set (exit NOT_MEMBER)
    │   ├── LedgerNotFound             an unknown task or round (exit code NOT_FOUND)
    │   ├── TooEarlyRevert             a phase, grace or delay not reached yet: retry later
    │   ├── TooLateRevert              a window that is over: the round moved on
    │   └── ...                        one class per error
    ├── TokenRevert                    MeshToken_* errors
    └── LibraryRevert                  OpenZeppelin errors (AccessControl, Pausable, ECDSA, ERC-20, ...)
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from ledger.chain.revert import ContractRevert
from ledger.errors import NotFound
from ledger.exit_codes import ExitCode

REVERT_CLASSES: dict[str, type[ContractRevert]] = {}
"""ABI error name -> exception class."""


_C = TypeVar("_C", bound=type[ContractRevert])


def _register(cls: _C) -> _C:
    name = cls.error_name
    if name in REVERT_CLASSES:  # pragma: no cover - a programming error caught at import
        raise TypeError(f"two classes for the ABI error {name}")
    REVERT_CLASSES[name] = cls
    return cls


# ─── Solidity built-ins ─────────────────────────────────────────────────────────────────────────────────────


@_register
class SolidityError(ContractRevert):
    error_name = "Error"
    default_hint: ClassVar[str | None] = "a require() with a message failed: {message}"


@_register
class Panic(ContractRevert):
    error_name = "Panic"
    default_hint: ClassVar[str | None] = (
        "a Solidity panic ({meaning}): this is a bug in the contract, please report it with the transaction"
    )


# ─── MeshLedger ─────────────────────────────────────────────────────────────────────────────────────────────


class LedgerRevert(ContractRevert):
    """An error declared by MeshLedger (IMeshLedger.sol)."""


class NotMemberRevert(LedgerRevert):
    exit_code = ExitCode.NOT_MEMBER


class LedgerNotFound(LedgerRevert, NotFound):
    exit_code = ExitCode.NOT_FOUND


class TooEarlyRevert(LedgerRevert):
    """A phase, the finalize grace or a role-change delay has not been reached yet: the same call succeeds later."""


class TooLateRevert(LedgerRevert):
    """A window is over: the same call will never succeed in this round."""


@_register
class ZeroToken(LedgerRevert):
    error_name = "MeshLedger_ZeroToken"
    default_hint: ClassVar[str | None] = (
        "deploy the token first and pass its address to the ledger's constructor"
    )


@_register
class ZeroAdmin(LedgerRevert):
    error_name = "MeshLedger_ZeroAdmin"
    default_hint: ClassVar[str | None] = "pass the consortium admin's address to the ledger's constructor"


@_register
class NotContributor(NotMemberRevert):
    error_name = "MeshLedger_NotContributor"
    default_hint: ClassVar[str | None] = (
        "{account} is not a contributor: ask the consortium admin to grant it the contributor role"
    )


@_register
class NotInValidatorSet(NotMemberRevert):
    error_name = "MeshLedger_NotInValidatorSet"
    default_hint: ClassVar[str | None] = (
        "{account} is not in the validator set frozen when round {round} of task {taskId} opened: only those "
        "validators score it (a validator granted since takes part from the next round)"
    )


@_register
class NotAggregator(NotMemberRevert):
    error_name = "MeshLedger_NotAggregator"
    default_hint: ClassVar[str | None] = (
        "{account} is not an aggregator: ask the consortium admin to grant it the aggregator role"
    )


@_register
class RoleConflict(LedgerRevert):
    error_name = "MeshLedger_RoleConflict"
    default_hint: ClassVar[str | None] = (
        "an account cannot both contribute and validate; use a separate key for {account}'s other role"
    )


@_register
class TooManyValidators(LedgerRevert):
    error_name = "MeshLedger_TooManyValidators"
    default_hint: ClassVar[str | None] = (
        "at most {max} validators are allowed; revoke a validator before granting another"
    )


@_register
class TooManyMembers(LedgerRevert):
    error_name = "MeshLedger_TooManyMembers"
    default_hint: ClassVar[str | None] = "every member seat (up to {max}) is taken; seats are permanent"


@_register
class RoleChangeDelayed(LedgerRevert):
    error_name = "MeshLedger_RoleChangeDelayed"
    default_hint: ClassVar[str | None] = (
        "a task exists, so role changes are delayed: schedule it (`meshprov chain role schedule`, "
        "LedgerClient.schedule_role_change) and execute it after the ledger's roleDelay"
    )


@_register
class RoleChangePending(LedgerRevert):
    error_name = "MeshLedger_RoleChangePending"
    default_hint: ClassVar[str | None] = (
        "this role change for {account} is already scheduled, executable from {executeAfter} (wall time): "
        "execute it then, or cancel it first"
    )


@_register
class RoleChangeNotScheduled(LedgerRevert):
    error_name = "MeshLedger_RoleChangeNotScheduled"
    default_hint: ClassVar[str | None] = (
        "no such role change for {account} is scheduled (never scheduled, cancelled or already executed)"
    )


@_register
class RoleChangeNotReady(TooEarlyRevert):
    error_name = "MeshLedger_RoleChangeNotReady"
    default_hint: ClassVar[str | None] = (
        "the role change for {account} can be executed from {executeAfter}; the chain's time is {timestamp}"
    )


@_register
class UnknownTask(LedgerNotFound):
    error_name = "MeshLedger_UnknownTask"
    default_hint: ClassVar[str | None] = (
        "task {taskId} does not exist on this ledger: check MESHPROV_TASK_ID and the deployment record"
    )


@_register
class InvalidDigest(LedgerRevert):
    error_name = "MeshLedger_InvalidDigest"
    default_hint: ClassVar[str | None] = (
        "the zero digest names no content: pass the sha-256 digest inside the file's CIDv0"
    )


@_register
class InvalidRule(LedgerRevert):
    error_name = "MeshLedger_InvalidRule"
    default_hint: ClassVar[str | None] = (
        "rule {rule} with parameter {ruleParam} is not valid: build it with ledger.aggregation.AggregationSpec"
    )


@_register
class InvalidQuorum(LedgerRevert):
    error_name = "MeshLedger_InvalidQuorum"
    default_hint: ClassVar[str | None] = "the quorum must be at least 1 revealing validator"


@_register
class QuorumAboveValidators(LedgerRevert):
    error_name = "MeshLedger_QuorumAboveValidators"
    default_hint: ClassVar[str | None] = (
        "a quorum of {quorum} with {validators} validators could never accept an update: grant validators "
        "first, or lower the quorum"
    )


@_register
class InvalidWindows(LedgerRevert):
    error_name = "MeshLedger_InvalidWindows"
    default_hint: ClassVar[str | None] = (
        "the submission, commit and reveal windows and the finalize grace must each be at least 1 second"
    )


@_register
class InvalidMaxSamples(LedgerRevert):
    error_name = "MeshLedger_InvalidMaxSamples"
    default_hint: ClassVar[str | None] = "max_samples must be from 1 to {cap}, not {maxSamples}"


@_register
class InvalidReward(LedgerRevert):
    error_name = "MeshLedger_InvalidReward"
    default_hint: ClassVar[str | None] = "the reward per round must be below {cap} base units"


@_register
class WrongRound(LedgerRevert):
    error_name = "MeshLedger_WrongRound"
    default_hint: ClassVar[str | None] = (
        "task {taskId} is in round {currentRound}, not {round}: the round moved on; re-read it and retry"
    )


@_register
class RoundNotLive(LedgerRevert):
    error_name = "MeshLedger_RoundNotLive"
    default_hint: ClassVar[str | None] = (
        "round {round} is over (task {taskId} is in round {currentRound}); its detail lives in the logs: "
        "use `meshprov audit round {taskId} {round}`"
    )


@_register
class UnknownRound(LedgerNotFound):
    error_name = "MeshLedger_UnknownRound"
    default_hint: ClassVar[str | None] = "task {taskId} has not reached round {round} yet"


@_register
class SubmissionsClosed(TooLateRevert):
    error_name = "MeshLedger_SubmissionsClosed"
    default_hint: ClassVar[str | None] = (
        "submissions to round {round} closed at {submissionEnd}; train on the next round's base model"
    )


@_register
class UnknownUpdate(LedgerNotFound):
    error_name = "MeshLedger_UnknownUpdate"
    default_hint: ClassVar[str | None] = (
        "round {round} of task {taskId} has {submissionCount} updates (indexes from 0): there is no update {index}"
    )


@_register
class AlreadySubmitted(LedgerRevert):
    error_name = "MeshLedger_AlreadySubmitted"
    default_hint: ClassVar[str | None] = (
        "{contributor} already has an update in round {round}: one update per contributor per round"
    )


@_register
class InvalidSamples(LedgerRevert):
    error_name = "MeshLedger_InvalidSamples"
    default_hint: ClassVar[str | None] = "an update must be trained on at least one sample (got {numSamples})"


@_register
class TooManySamples(LedgerRevert):
    error_name = "MeshLedger_TooManySamples"
    default_hint: ClassVar[str | None] = (
        "{contributor} claims {numSamples} samples but the task allows at most {maxSamples} (sample counts are "
        "recorded for the audit and weigh nothing)"
    )


@_register
class EmptyBatch(LedgerRevert):
    error_name = "MeshLedger_EmptyBatch"
    default_hint: ClassVar[str | None] = "a batch must hold at least one signed submission"


@_register
class SignatureExpired(LedgerRevert):
    error_name = "MeshLedger_SignatureExpired"
    default_hint: ClassVar[str | None] = (
        "{contributor}'s signature expired at {deadline} (chain time {timestamp}): sign again with a later deadline"
    )


@_register
class InvalidNonce(LedgerRevert):
    error_name = "MeshLedger_InvalidNonce"
    default_hint: ClassVar[str | None] = (
        "{contributor}'s next nonce is {expected}, the signature carries {given}: re-read `nonces()` and sign again"
    )


@_register
class InvalidSignature(LedgerRevert):
    error_name = "MeshLedger_InvalidSignature"
    default_hint: ClassVar[str | None] = (
        "the signature recovers to {recovered}, not {contributor}: wrong key, chain id, contract or altered fields"
    )


@_register
class CommitNotOpen(TooEarlyRevert):
    error_name = "MeshLedger_CommitNotOpen"
    default_hint: ClassVar[str | None] = (
        "commitments to round {round} open when submissions close, at {submissionEnd} (ledger time) at the latest"
    )


@_register
class CommitClosed(TooLateRevert):
    error_name = "MeshLedger_CommitClosed"
    default_hint: ClassVar[str | None] = (
        "the commit phase of round {round} ended at {commitEnd} (ledger time): a late commitment is refused, and "
        "the validator counts as absent this round"
    )


@_register
class AlreadyCommitted(LedgerRevert):
    error_name = "MeshLedger_AlreadyCommitted"
    default_hint: ClassVar[str | None] = (
        "{validator} already committed in round {round}: a commitment cannot be replaced; reveal it"
    )


@_register
class RevealNotOpen(TooEarlyRevert):
    error_name = "MeshLedger_RevealNotOpen"
    default_hint: ClassVar[str | None] = (
        "reveals of round {round} open when the commit phase ends, at {commitEnd} (ledger time) at the latest"
    )


@_register
class RevealClosed(TooLateRevert):
    error_name = "MeshLedger_RevealClosed"
    default_hint: ClassVar[str | None] = (
        "the reveal window of round {round} ended at {revealEnd} (ledger time): the validator counts as absent"
    )


@_register
class NotCommitted(LedgerRevert):
    error_name = "MeshLedger_NotCommitted"
    default_hint: ClassVar[str | None] = (
        "{validator} did not commit in round {round}, so it has nothing to reveal"
    )


@_register
class AlreadyRevealed(LedgerRevert):
    error_name = "MeshLedger_AlreadyRevealed"
    default_hint: ClassVar[str | None] = "{validator} already revealed its scores of round {round}"


@_register
class RevealMismatch(LedgerRevert):
    error_name = "MeshLedger_RevealMismatch"
    default_hint: ClassVar[str | None] = (
        "the scores, reasons and salt hash to {computed}, not to the commitment {committed}: reveal exactly what "
        "was committed, with the same salt (ledger.chain.scores.ScoreSheet)"
    )


@_register
class RevealLength(LedgerRevert):
    error_name = "MeshLedger_RevealLength"
    default_hint: ClassVar[str | None] = (
        "the round needs {expectedScoreBytes} bytes of scores and {expectedReasonBytes} of reasons (one score and "
        "one reason per update), not {givenScoreBytes} and {givenReasonBytes}"
    )


@_register
class InvalidScore(LedgerRevert):
    error_name = "MeshLedger_InvalidScore"
    default_hint: ClassVar[str | None] = "the score {score} of update {index} is outside [-10000, 10000]"


@_register
class InvalidReason(LedgerRevert):
    error_name = "MeshLedger_InvalidReason"
    default_hint: ClassVar[str | None] = (
        "update {index} has the hard-reject reason {reason} but the score {score}: a hard reject scores -10000"
    )


@_register
class FinalizeTooEarly(TooEarlyRevert):
    error_name = "MeshLedger_FinalizeTooEarly"
    default_hint: ClassVar[str | None] = (
        "round {round} can be finalized from {revealEnd} (ledger time), or earlier once every committer revealed"
    )


@_register
class GraceNotOver(TooEarlyRevert):
    error_name = "MeshLedger_GraceNotOver"
    default_hint: ClassVar[str | None] = (
        "until {graceEnd} (ledger time; now {ledgerNow}) only the aggregator ends round {round}; anyone may carry "
        "it over afterwards"
    )


@_register
class NothingToClaim(LedgerRevert):
    error_name = "MeshLedger_NothingToClaim"
    default_hint: ClassVar[str | None] = "{account} has no accrued reward to claim"


@_register
class LedgerPaused(LedgerRevert):
    error_name = "MeshLedger_Paused"
    default_hint: ClassVar[str | None] = (
        "the ledger is paused (every window is stopped, nobody misses one); it lapses by itself at {lapsesAt} "
        "(wall time) unless the admin unpauses earlier"
    )


@_register
class NotPaused(LedgerRevert):
    error_name = "MeshLedger_NotPaused"
    default_hint: ClassVar[str | None] = (
        "the ledger is not paused (never paused, unpaused, or the pause lapsed)"
    )


@_register
class PauseCooldown(TooEarlyRevert):
    error_name = "MeshLedger_PauseCooldown"
    default_hint: ClassVar[str | None] = (
        "another pause can start only from {pausableAt} (wall time; now {timestamp}): pauses are bounded"
    )


@_register
class AggregateMustBeBase(LedgerRevert):
    error_name = "MeshLedger_AggregateMustBeBase"
    default_hint: ClassVar[str | None] = (
        "no update was accepted, so the model carries over: finalize with the base digest {baseDigest}"
    )


# ─── MeshToken ──────────────────────────────────────────────────────────────────────────────────────────────


class TokenRevert(ContractRevert):
    """An error declared by MeshToken (IMeshToken.sol)."""


@_register
class NotMinter(TokenRevert):
    error_name = "MeshToken_NotMinter"
    default_hint: ClassVar[str | None] = "only the ledger ({minter}) mints rewards; {caller} cannot"


@_register
class NotDeployer(TokenRevert):
    error_name = "MeshToken_NotDeployer"
    default_hint: ClassVar[str | None] = "only the token's deployer {deployer} may set the minter"


@_register
class MinterAlreadySet(TokenRevert):
    error_name = "MeshToken_MinterAlreadySet"
    default_hint: ClassVar[str | None] = (
        "the minter is already {minter} and can be set only once: redeploy the token"
    )


@_register
class ZeroMinter(TokenRevert):
    error_name = "MeshToken_ZeroMinter"
    default_hint: ClassVar[str | None] = "pass the ledger's address as the minter"


@_register
class LengthMismatch(TokenRevert):
    error_name = "MeshToken_LengthMismatch"
    default_hint: ClassVar[str | None] = (
        "mintBatch needs one amount per recipient ({recipients} vs {amounts})"
    )


# ─── OpenZeppelin ───────────────────────────────────────────────────────────────────────────────────────────


class LibraryRevert(ContractRevert):
    """An error declared by an OpenZeppelin contract or library the ledger or token uses."""


@_register
class AccessControlUnauthorizedAccount(LibraryRevert):
    error_name = "AccessControlUnauthorizedAccount"
    exit_code = ExitCode.NOT_MEMBER
    default_hint: ClassVar[str | None] = (
        "{account} lacks role {neededRole}: ask the consortium admin (`meshprov chain` roles) to grant it"
    )


@_register
class AccessControlBadConfirmation(LibraryRevert):
    error_name = "AccessControlBadConfirmation"
    default_hint: ClassVar[str | None] = "renounceRole must name the caller's own address"


@_register
class StringTooLong(LibraryRevert):
    error_name = "StringTooLong"
    default_hint: ClassVar[str | None] = "an EIP-712 name or version is longer than 31 bytes"


@_register
class InvalidShortString(LibraryRevert):
    error_name = "InvalidShortString"
    default_hint: ClassVar[str | None] = "a stored EIP-712 short string is corrupt"


@_register
class ERC20InsufficientBalance(LibraryRevert):
    error_name = "ERC20InsufficientBalance"
    default_hint: ClassVar[str | None] = "{sender} holds {balance} token units but {needed} are needed"


@_register
class ERC20InvalidSender(LibraryRevert):
    error_name = "ERC20InvalidSender"
    default_hint: ClassVar[str | None] = "tokens cannot be sent from {sender}"


@_register
class ERC20InvalidReceiver(LibraryRevert):
    error_name = "ERC20InvalidReceiver"
    default_hint: ClassVar[str | None] = "tokens cannot be sent to {receiver} (the zero address?)"


@_register
class ERC20InsufficientAllowance(LibraryRevert):
    error_name = "ERC20InsufficientAllowance"
    default_hint: ClassVar[str | None] = (
        "{spender} may spend {allowance} token units but {needed} are needed: approve more"
    )


@_register
class ERC20InvalidApprover(LibraryRevert):
    error_name = "ERC20InvalidApprover"
    default_hint: ClassVar[str | None] = "{approver} cannot approve spending"


@_register
class ERC20InvalidSpender(LibraryRevert):
    error_name = "ERC20InvalidSpender"
    default_hint: ClassVar[str | None] = "{spender} cannot be approved as a spender (the zero address?)"


def revert_class(name: str) -> type[ContractRevert]:
    """The class raised for the ABI error ``name`` (the base class for names no ABI of ours declares)."""
    return REVERT_CLASSES.get(name, ContractRevert)
