"""A typed client of the MeshLedger contract: one method per contract function, reads and writes.

Reads return the dataclasses of :mod:`ledger.chain.types`, views at the block asked for (``block=``: a number,
``latest`` or ``pending``; by default the client's ``view_block``) and what only the logs keep as typed records
too (:meth:`LedgerClient.submissions`, :meth:`LedgerClient.finalizations`); writes go through a :class:`TxSender`
(nonces, fees, receipt timeout) and return a :class:`TxResult` whose ``value`` is what the function returned,
recovered from the transaction's events. Every revert, of a read or a write, raises the named exception of
:mod:`ledger.chain.errors`. Relayed submissions are signed with EIP-712 (:meth:`LedgerClient.sign_submission`)
in the domain the contract itself reports (``eip712Domain()``), so a wrong chain or address cannot slip in.
Validators' scores (protocol v2) are committed, then revealed: :meth:`LedgerClient.score_commitment` computes the
commitment locally, exactly as the contract's view does, so a validator never reveals its scores to a node
before the reveal phase (docs/chain-client.md).

Build one with :meth:`LedgerClient.from_settings` (the deployment record and the endpoint it is given)
or :meth:`LedgerClient.connect` (a Web3 and an address).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

from ledger.chain.artifacts import load_artifact
from ledger.chain.deploy import DeploymentRecord
from ledger.chain.events import EventDecoder, LedgerEvent, iter_log_ranges
from ledger.chain.revert import ChainError, RevertDecoder
from ledger.chain.scores import (
    InvalidScores,
    ScoreSheet,
    check_scores,
    decode_reasons,
    decode_scores,
    encode_reasons,
    encode_scores,
    score_commitment,
)
from ledger.chain.types import (
    AccountView,
    Clock,
    Eip712Domain,
    Finalization,
    Reputation,
    RevealedScores,
    RewardsClaimed,
    RoleChangeScheduled,
    RoundOpened,
    RoundView,
    ScoresCommitted,
    ScoresRevealed,
    Settlement,
    SignedSubmission,
    Submission,
    SubmissionInfo,
    SubmissionStatus,
    Tally,
    Task,
    TaskParams,
    TxResult,
    ValidatorSet,
    checksum,
)
from ledger.errors import ConfigError, MeshprovError, NotFound, ServiceUnavailable

if TYPE_CHECKING:
    from web3 import Web3
    from web3.contract import Contract
    from web3.contract.contract import ContractFunction
    from web3.types import TxReceipt

    from ledger.chain.consortium import TaskConfig
    from ledger.chain.sender import TxSender
    from ledger.settings import Settings

R = TypeVar("R")

Block = int | str | None
"""The block a view is read at: a number, ``latest``, ``pending`` (what the next transaction will see: a round's
phase depends on ``block.timestamp``, and a chain that mines on demand can have an old ``latest``), or None for
the client's :attr:`LedgerClient.view_block`."""

SUBMISSION_TYPES = [
    {"name": "taskId", "type": "uint256"},
    {"name": "round", "type": "uint32"},
    {"name": "digest", "type": "bytes32"},
    {"name": "numSamples", "type": "uint64"},
    {"name": "nonce", "type": "uint64"},
    {"name": "deadline", "type": "uint64"},
]
_DOMAIN_TYPES = [
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
    ("salt", "bytes32"),
]

DEFAULT_ADMIN_ROLE = b"\x00" * 32
CONTRIBUTOR_ROLE = keccak(text="CONTRIBUTOR_ROLE")
VALIDATOR_ROLE = keccak(text="VALIDATOR_ROLE")
AGGREGATOR_ROLE = keccak(text="AGGREGATOR_ROLE")
ROLE_IDS = {
    "admin": DEFAULT_ADMIN_ROLE,
    "contributor": CONTRIBUTOR_ROLE,
    "validator": VALIDATOR_ROLE,
    "aggregator": AGGREGATOR_ROLE,
}


class ReadOnlyClient(ChainError):
    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(
            f"cannot {operation}: this ledger client has no signing key",
            hint="set MESHPROV_PRIVATE_KEY_FILE (or MESHPROV_PRIVATE_KEY) to the member's key",
        )


class LogsBehind(ChainError):
    """The node's logs lack a round its views show: the node has not caught up yet (retry), or the round does not
    exist."""

    def __init__(self, task_id: int, round_: int, endpoint: str) -> None:
        self.task_id = task_id
        self.round = round_
        super().__init__(
            f"the logs of the chain at {endpoint} hold no RoundOpened for task {task_id} round {round_}",
            hint="the node may still be catching up (retry), or the round does not exist yet",
        )


class ChainIdMismatch(ConfigError):
    def __init__(self, expected: int, actual: int, endpoint: str, source: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"the chain at {endpoint} has chain id {actual}, but {source} expects {expected}",
            hint="point MESHPROV_CHAIN_RPC_URL at the right chain, or fix MESHPROV_CHAIN_ID / the deployment record",
        )


class NoContract(NotFound):
    def __init__(self, address: str, endpoint: str) -> None:
        self.address = address
        super().__init__(
            f"there is no contract at {address} on the chain at {endpoint}",
            hint="the chain was reset or the deployment record is for another chain: redeploy with "
            "`meshprov chain deploy`",
        )


def connect_web3(url: str, *, timeout: float = 30.0) -> Web3:
    from web3 import HTTPProvider, Web3

    return Web3(HTTPProvider(url, request_kwargs={"timeout": timeout}))


def rpc_unavailable(url: str, exc: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(
        "chain RPC",
        url,
        str(exc) or type(exc).__name__,
        hint="start it (`meshprov dev up`) or point MESHPROV_CHAIN_RPC_URL at a running node",
    )


class LedgerClient:
    """Typed access to one deployed MeshLedger (and its token)."""

    def __init__(
        self,
        w3: Web3,
        address: str,
        *,
        abi: Sequence[dict[str, Any]],
        token_abi: Sequence[dict[str, Any]] = (),
        sender: TxSender | None = None,
        endpoint: str = "",
    ) -> None:
        self.w3 = w3
        self.address = checksum(address)
        self.abi = list(abi)
        self.token_abi = list(token_abi)
        self.endpoint = endpoint or getattr(w3.provider, "endpoint_uri", "") or "the chain"
        self.contract: Contract = w3.eth.contract(address=self.address, abi=self.abi)  # type: ignore[call-overload]
        # Revocations (R8) is sent through this client's sender too: its reverts are named like the ledger's.
        self.decoder = RevertDecoder([self.abi, self.token_abi, load_artifact("Revocations").abi])
        self.events_decoder = EventDecoder(self.abi)
        self.sender = sender
        if sender is not None:
            sender.decoder = self.decoder
        self.deployment: DeploymentRecord | None = None
        self.view_block: int | str = "latest"
        """The block every read is made at: ``latest`` (default), ``pending`` (see your own unmined transactions,
        as a worker does) or a number (a historical view)."""
        self._domain: Eip712Domain | None = None
        self._token_address: str | None = None
        self._chain_id: int | None = None
        # Filled from logs and never invalidated: a round opens in one block, once. Threads may both look a
        # round up; they find the same block.
        self._opened_block: dict[tuple[int, int], int] = {}

    # ─── construction ───────────────────────────────────────────────────────────────────────────────────────
    @classmethod
    def connect(
        cls,
        w3: Web3,
        address: str,
        *,
        key: str | None = None,
        abi: Sequence[dict[str, Any]] | None = None,
        token_abi: Sequence[dict[str, Any]] | None = None,
        timeout: float = 60.0,
    ) -> LedgerClient:
        """A client of the ledger at ``address``; with ``key`` it can send transactions."""
        from ledger.chain.sender import TxSender

        sender = TxSender(w3, key, timeout=timeout) if key else None
        return cls(
            w3,
            address,
            abi=abi if abi is not None else load_artifact("MeshLedger").abi,
            token_abi=token_abi if token_abi is not None else load_artifact("MeshToken").abi,
            sender=sender,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        endpoint: str | None = None,
        key: str | None = None,
        check: bool = True,
        read_only: bool = False,
    ) -> LedgerClient:
        """The ledger of the deployment record, on ``endpoint`` (default: ``settings.chain_rpc_url``).

        Starts nothing: a command that wants the embedded dev chain resolves its endpoint first
        (``ledger/cli/endpoints.py``). ``key`` defaults to the settings' signing key (none, or ``read_only``: a
        client that only reads). ``check`` verifies the chain id against the record and the settings, and that the
        ledger's code is there.
        """
        url = endpoint or settings.chain_rpc_url
        if not url:
            raise ConfigError(
                "no chain endpoint: chain_rpc_url is not set",
                hint="pass --rpc-url URL or set MESHPROV_CHAIN_RPC_URL",
            )
        deployment = DeploymentRecord.read(settings.resolved_deployment_file)
        w3 = connect_web3(url)
        if key is None and not read_only:
            key = settings.signing_key()
        client = cls.connect(w3, deployment.ledger, key=key, timeout=settings.tx_timeout_s)
        client.endpoint = url
        client.deployment = deployment
        if check:
            client.check_chain(deployment.chain_id, source=str(settings.resolved_deployment_file))
            if settings.chain_id is not None:
                client.check_chain(settings.chain_id, source="MESHPROV_CHAIN_ID")
        return client

    def check_chain(self, expected_chain_id: int, *, source: str = "the deployment record") -> None:
        """Refuse a chain with another id, or one where the ledger has no code."""
        actual = self.rpc(lambda: int(self.w3.eth.chain_id))
        if actual != expected_chain_id:
            raise ChainIdMismatch(expected_chain_id, actual, self.endpoint, source)
        code = self.rpc(lambda: self.w3.eth.get_code(self.address))  # type: ignore[arg-type]
        if not code:
            raise NoContract(self.address, self.endpoint)

    # ─── plumbing ───────────────────────────────────────────────────────────────────────────────────────────
    def rpc(self, thunk: Callable[[], R]) -> R:
        """Run one RPC interaction, turning an unreachable node into ServiceUnavailable."""
        try:
            return thunk()
        except OSError as exc:  # requests' errors are OSErrors
            raise rpc_unavailable(self.endpoint, exc) from None

    def _call(self, fn: ContractFunction, block: Block = None) -> Any:
        from web3.exceptions import ContractLogicError

        at = self.view_block if block is None else block
        try:
            return self.rpc(lambda: fn.call(block_identifier=at))  # type: ignore[arg-type]
        except ContractLogicError as exc:
            raise self.decoder.decode(exc.data, exc.message or "") from None

    def _send(self, fn: ContractFunction, operation: str) -> tuple[TxReceipt, tuple[LedgerEvent, ...]]:
        if self.sender is None:
            raise ReadOnlyClient(operation)
        sender = self.sender
        receipt = self.rpc(lambda: sender.send(fn))
        events = tuple(
            e for e in self.events_decoder.decode_all(list(receipt["logs"])) if e.address == self.address
        )
        return receipt, events

    def _result(self, value: R, receipt: TxReceipt, events: tuple[LedgerEvent, ...]) -> TxResult[R]:
        return TxResult(
            value=value,
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            events=events,
        )

    @property
    def sender_address(self) -> str | None:
        return self.sender.address if self.sender is not None else None

    def _fn(self, name: str, *args: Any) -> ContractFunction:
        return cast("ContractFunction", getattr(self.contract.functions, name)(*args))

    # ─── administration ─────────────────────────────────────────────────────────────────────────────────────
    def create_task(self, params: TaskParams | TaskConfig) -> TxResult[int]:
        """Create a task (round 1 opens with it, its validator set frozen); the value is the new task id."""
        receipt, events = self._send(self._fn("createTask", params.to_abi()), "create a task")
        task_id = next(int(e.args["taskId"]) for e in events if e.name == "TaskCreated")
        return self._result(task_id, receipt, events)

    def pause(self) -> TxResult[None]:
        return self._result(None, *self._send(self._fn("pause"), "pause the ledger"))

    def unpause(self) -> TxResult[None]:
        return self._result(None, *self._send(self._fn("unpause"), "unpause the ledger"))

    def grant_role(self, role: bytes | str, account: str) -> TxResult[None]:
        """Grant ``role`` (a role id, or admin/contributor/validator/aggregator) to ``account``."""
        fn = self._fn("grantRole", role_id(role), checksum(account))
        return self._result(None, *self._send(fn, "grant a role"))

    def revoke_role(self, role: bytes | str, account: str) -> TxResult[None]:
        fn = self._fn("revokeRole", role_id(role), checksum(account))
        return self._result(None, *self._send(fn, "revoke a role"))

    def renounce_role(self, role: bytes | str, account: str) -> TxResult[None]:
        fn = self._fn("renounceRole", role_id(role), checksum(account))
        return self._result(None, *self._send(fn, "renounce a role"))

    def schedule_role_change(self, role: bytes | str, account: str, grant: bool) -> TxResult[int]:
        """Schedule granting (``grant``) or revoking ``role`` for ``account`` (admin; needed once a task exists);
        the value is the wall time from which anyone may execute it."""
        fn = self._fn("scheduleRoleChange", role_id(role), checksum(account), grant)
        receipt, events = self._send(fn, "schedule a role change")
        after = next(int(e.args["executeAfter"]) for e in events if e.name == "RoleChangeScheduled")
        return self._result(after, receipt, events)

    def execute_role_change(self, role: bytes | str, account: str, grant: bool) -> TxResult[None]:
        """Carry out a scheduled role change whose delay is over (anyone may)."""
        fn = self._fn("executeRoleChange", role_id(role), checksum(account), grant)
        return self._result(None, *self._send(fn, "execute a role change"))

    def cancel_role_change(self, role: bytes | str, account: str, grant: bool) -> TxResult[None]:
        fn = self._fn("cancelRoleChange", role_id(role), checksum(account), grant)
        return self._result(None, *self._send(fn, "cancel a role change"))

    # ─── submissions ────────────────────────────────────────────────────────────────────────────────────────
    def submit_update(
        self, task_id: int, round_: int, digest: bytes | str, num_samples: int
    ) -> TxResult[int]:
        """Record the sender's update; the value is its index in the round."""
        fn = self._fn("submitUpdate", task_id, round_, as_digest(digest), num_samples)
        receipt, events = self._send(fn, "submit an update")
        return self._result(_first_index(events), receipt, events)

    def submit_update_for(self, task_id: int, round_: int, sub: SignedSubmission) -> TxResult[int]:
        """Relay one signed submission; the value is its index in the round."""
        receipt, events = self._send(
            self._fn("submitUpdateFor", task_id, round_, sub.to_abi()), "relay an update"
        )
        return self._result(_first_index(events), receipt, events)

    def submit_updates_for(
        self, task_id: int, round_: int, subs: Sequence[SignedSubmission]
    ) -> TxResult[int]:
        """Relay many signed submissions, all or none; the value is the index of the first."""
        fn = self._fn("submitUpdatesFor", task_id, round_, [s.to_abi() for s in subs])
        receipt, events = self._send(fn, "relay updates")
        return self._result(_first_index(events), receipt, events)

    # ─── scores (commit, then reveal) ───────────────────────────────────────────────────────────────────────
    def score_commitment(
        self,
        task_id: int,
        round_: int,
        validator: str,
        scores: Sequence[int] | bytes,
        reasons: Sequence[int] | bytes,
        *,
        salt: bytes,
    ) -> bytes:
        """The commitment ``commitScores`` expects, computed here (no call): the same bytes as the contract's
        ``scoreCommitment`` view (:meth:`score_commitment_view`), bound to this chain and this ledger."""
        return score_commitment(
            chain_id=self.chain_id(),
            ledger=self.address,
            task_id=task_id,
            round_=round_,
            validator=checksum(validator),
            scores=scores,
            reasons=reasons,
            salt=salt,
        )

    def score_commitment_view(
        self,
        task_id: int,
        round_: int,
        validator: str,
        scores: Sequence[int] | bytes,
        reasons: Sequence[int] | bytes,
        *,
        salt: bytes,
        block: Block = None,
    ) -> bytes:
        """The contract's own ``scoreCommitment`` (a call; :meth:`score_commitment` computes it locally)."""
        fn = self._fn(
            "scoreCommitment",
            task_id,
            round_,
            checksum(validator),
            scores if isinstance(scores, bytes) else encode_scores(scores),
            reasons if isinstance(reasons, bytes) else encode_reasons(reasons),
            salt,
        )
        return bytes(self._call(fn, block))

    def commit_scores(self, task_id: int, round_: int, commitment: bytes) -> TxResult[None]:
        """Bind the sender's scores of the round (in the commit phase, once; the sender must be in the round's
        validator set). Keep the :class:`~ledger.chain.scores.ScoreSheet`: revealing needs its salt."""
        if len(commitment) != 32:
            raise InvalidScores(f"a commitment is 32 bytes, got {len(commitment)}")
        fn = self._fn("commitScores", task_id, round_, commitment)
        return self._result(None, *self._send(fn, "commit scores"))

    def commit_sheet(self, task_id: int, round_: int, sheet: ScoreSheet) -> TxResult[bytes]:
        """Commit ``sheet`` for the sender; the value is the commitment sent."""
        if self.sender is None:
            raise ReadOnlyClient("commit scores")
        commitment = self.score_commitment(
            task_id, round_, self.sender.address, sheet.score_bytes, sheet.reason_bytes, salt=sheet.salt
        )
        result = self.commit_scores(task_id, round_, commitment)
        return TxResult(commitment, result.tx_hash, result.block_number, result.gas_used, result.events)

    def reveal_scores(
        self,
        task_id: int,
        round_: int,
        scores: Sequence[int],
        reasons: Sequence[int],
        salt: bytes,
    ) -> TxResult[None]:
        """Reveal the committed scores (one per update in index order, in [-10000, 10000]) with their reasons (0,
        or a hard reject's code with the score -10000) and salt. Checked here first (:class:`InvalidScores`)."""
        check_scores(scores, reasons)
        fn = self._fn("revealScores", task_id, round_, encode_scores(scores), encode_reasons(reasons), salt)
        return self._result(None, *self._send(fn, "reveal scores"))

    def reveal_sheet(self, task_id: int, round_: int, sheet: ScoreSheet) -> TxResult[None]:
        return self.reveal_scores(task_id, round_, sheet.scores, sheet.reasons, sheet.salt)

    # ─── finalization and rewards ───────────────────────────────────────────────────────────────────────────
    def finalize_round(self, task_id: int, round_: int, aggregate_digest: bytes | str) -> TxResult[None]:
        """End the round with the aggregate of the updates the consensus accepted (the base when none was);
        the contract computes the accepted set and every settlement from the revealed scores."""
        fn = self._fn("finalizeRound", task_id, round_, as_digest(aggregate_digest))
        return self._result(None, *self._send(fn, "finalize a round"))

    def finalize_carry_over(self, task_id: int, round_: int) -> TxResult[None]:
        """Carry a round the aggregator left unfinalized past its grace over (anyone may): the base becomes its
        aggregate, reputations settle, no reward accrues, the next round opens."""
        fn = self._fn("finalizeCarryOver", task_id, round_)
        return self._result(None, *self._send(fn, "carry a round over"))

    def claim_rewards(self) -> TxResult[int]:
        """Mint the sender's accrued rewards to it; the value is the amount (:class:`NothingToClaim` when none)."""
        receipt, events = self._send(self._fn("claimRewards"), "claim rewards")
        amount = next((int(e.args["amount"]) for e in events if e.name == "RewardsClaimed"), 0)
        return self._result(amount, receipt, events)

    # ─── views ──────────────────────────────────────────────────────────────────────────────────────────────
    def token(self) -> str:
        if self._token_address is None:
            self._token_address = checksum(self._call(self._fn("token")))
        return self._token_address

    def task_count(self, *, block: Block = None) -> int:
        return int(self._call(self._fn("taskCount"), block))

    def task(self, task_id: int, *, block: Block = None) -> Task:
        params, current = self._call(self._fn("task", task_id), block)
        return Task(task_id, TaskParams.from_abi(params), int(current))

    def current_round(self, task_id: int, *, block: Block = None) -> int:
        return int(self._call(self._fn("currentRound", task_id), block))

    def round_view(self, task_id: int, round_: int, *, block: Block = None) -> RoundView:
        return RoundView.from_abi(task_id, round_, self._call(self._fn("roundView", task_id, round_), block))

    def base_digest(self, task_id: int, round_: int, *, block: Block = None) -> bytes:
        return bytes(self._call(self._fn("baseDigest", task_id, round_), block))

    def aggregate_digest(self, task_id: int, round_: int, *, block: Block = None) -> bytes:
        return bytes(self._call(self._fn("aggregateDigest", task_id, round_), block))

    def submission(self, task_id: int, round_: int, index: int, *, block: Block = None) -> SubmissionInfo:
        contributor, num_samples = self._call(self._fn("submission", task_id, round_, index), block)
        return SubmissionInfo(checksum(contributor), int(num_samples))

    def submission_of(
        self, task_id: int, round_: int, contributor: str, *, block: Block = None
    ) -> SubmissionStatus:
        submitted, index, num_samples = self._call(
            self._fn("submissionOf", task_id, round_, checksum(contributor)), block
        )
        return SubmissionStatus(bool(submitted), int(index), int(num_samples))

    def validator_set(self, task_id: int, round_: int, *, block: Block = None) -> ValidatorSet:
        """The live round's validator set (frozen at its opening), weights, and who committed and revealed."""
        members, weights, committed, revealed = self._call(self._fn("validatorSet", task_id, round_), block)
        return ValidatorSet(
            tuple(checksum(m) for m in members), tuple(int(w) for w in weights), int(committed), int(revealed)
        )

    def revealed_scores(
        self, task_id: int, round_: int, validator: str, *, block: Block = None
    ) -> RevealedScores:
        who = checksum(validator)
        revealed, scores = self._call(self._fn("revealedScores", task_id, round_, who), block)
        return RevealedScores(who, bool(revealed), tuple(int(s) for s in scores))

    def tally(self, task_id: int, round_: int, *, block: Block = None) -> Tally:
        """The consensus from the reveals so far and the updates it accepts (live round)."""
        consensus, accepted = self._call(self._fn("tally", task_id, round_), block)
        return Tally(tuple(int(c) for c in consensus), int(accepted))

    def clock(self, *, block: Block = None) -> Clock:
        """The ledger clock: every round time is ledger time (wall time minus the time spent paused)."""
        now, paused_at, paused_total = self._call(self._fn("clock"), block)
        return Clock(int(now), int(paused_at), int(paused_total))

    def role_delay(self) -> int:
        return int(self._call(self._fn("roleDelay")))

    def pending_role_change(
        self, role: bytes | str, account: str, grant: bool, *, block: Block = None
    ) -> int:
        """When the scheduled role change becomes executable (wall time); 0 when none is pending."""
        fn = self._fn("pendingRoleChange", role_id(role), checksum(account), grant)
        return int(self._call(fn, block))

    def accrued(self, address: str, *, block: Block = None) -> int:
        """``address``'s rewards accrued and not yet claimed."""
        return self.account(address, block=block).accrued

    def account(self, address: str, *, block: Block = None) -> AccountView:
        return AccountView.from_abi(self._call(self._fn("account", checksum(address)), block))

    def reputation(self, address: str, *, block: Block = None) -> Reputation:
        contributor, validator = self._call(self._fn("reputation", checksum(address)), block)
        return Reputation(int(contributor), int(validator))

    def nonces(self, address: str, *, block: Block = None) -> int:
        return int(self._call(self._fn("nonces", checksum(address)), block))

    def contributor_count(self, *, block: Block = None) -> int:
        return int(self._call(self._fn("contributorCount"), block))

    def validators(self, *, block: Block = None) -> list[str]:
        return [checksum(a) for a in self._call(self._fn("validators"), block)]

    def hash_submission(
        self, task_id: int, round_: int, digest: bytes | str, num_samples: int, *, nonce: int, deadline: int
    ) -> bytes:
        """The EIP-712 digest the contract computes for a relayed submission."""
        fn = self._fn("hashSubmission", task_id, round_, as_digest(digest), num_samples, nonce, deadline)
        return bytes(self._call(fn))

    def paused(self, *, block: Block = None) -> bool:
        return bool(self._call(self._fn("paused"), block))

    def chain_id(self) -> int:
        """The chain's id (read once: it binds signatures and score commitments)."""
        if self._chain_id is None:
            self._chain_id = self.rpc(lambda: int(self.w3.eth.chain_id))
        return self._chain_id

    def has_role(self, role: bytes | str, account: str) -> bool:
        return bool(self._call(self._fn("hasRole", role_id(role), checksum(account))))

    def get_role_admin(self, role: bytes | str) -> bytes:
        return bytes(self._call(self._fn("getRoleAdmin", role_id(role))))

    def supports_interface(self, interface_id: bytes) -> bool:
        return bool(self._call(self._fn("supportsInterface", interface_id)))

    def default_admin_role(self) -> bytes:
        return bytes(self._call(self._fn("DEFAULT_ADMIN_ROLE")))

    def contributor_role(self) -> bytes:
        return bytes(self._call(self._fn("CONTRIBUTOR_ROLE")))

    def validator_role(self) -> bytes:
        return bytes(self._call(self._fn("VALIDATOR_ROLE")))

    def aggregator_role(self) -> bytes:
        return bytes(self._call(self._fn("AGGREGATOR_ROLE")))

    def constant(self, name: str) -> Any:
        """A public constant of the contract by its Solidity name (``MAX_UPDATES_PER_ROUND``, ``RULE_MEDIAN``, …)."""
        return self._call(self._fn(name))

    def constants(self) -> dict[str, Any]:
        """Every public constant (upper-case, argument-free view) the contract declares, by name."""
        names = [
            str(item["name"])
            for item in self.abi
            if item.get("type") == "function"
            and not item.get("inputs")
            and item.get("stateMutability") in ("view", "pure")
            and str(item["name"]).isupper()
        ]
        return {name: self.constant(name) for name in names}

    def eip712_domain(self) -> Eip712Domain:
        """The contract's EIP-712 domain (ERC-5267), read once and cached."""
        if self._domain is None:
            fields, name, version, chain_id, contract, salt, extensions = self._call(self._fn("eip712Domain"))
            self._domain = Eip712Domain(
                bytes(fields),
                str(name),
                str(version),
                int(chain_id),
                checksum(contract),
                bytes(salt),
                tuple(int(x) for x in extensions),
            )
        return self._domain

    # ─── EIP-712 ────────────────────────────────────────────────────────────────────────────────────────────
    def submission_typed_data(
        self, task_id: int, round_: int, digest: bytes | str, num_samples: int, *, nonce: int, deadline: int
    ) -> dict[str, Any]:
        """The EIP-712 typed data of a relayed submission, in the contract's own domain."""
        domain = self.eip712_domain().as_typed_data()
        return {
            "types": {
                "EIP712Domain": [{"name": n, "type": t} for n, t in _DOMAIN_TYPES if n in domain],
                "Submission": SUBMISSION_TYPES,
            },
            "primaryType": "Submission",
            "domain": domain,
            "message": {
                "taskId": task_id,
                "round": round_,
                "digest": as_digest(digest),
                "numSamples": num_samples,
                "nonce": nonce,
                "deadline": deadline,
            },
        }

    def sign_submission(
        self,
        key: str,
        task_id: int,
        round_: int,
        digest: bytes | str,
        num_samples: int,
        *,
        nonce: int | None = None,
        deadline: int | None = None,
        valid_for: int = 3600,
    ) -> SignedSubmission:
        """Sign a submission with the contributor's ``key`` for anyone to relay.

        ``nonce`` defaults to the contributor's next nonce on chain; ``deadline`` to the latest block's time plus
        ``valid_for`` seconds.
        """
        signer = Account.from_key(key)
        contributor = checksum(signer.address)
        if nonce is None:
            nonce = self.nonces(contributor)
        if deadline is None:
            latest = self.rpc(lambda: self.w3.eth.get_block("latest"))
            deadline = int(latest["timestamp"]) + valid_for
        data = self.submission_typed_data(
            task_id, round_, digest, num_samples, nonce=nonce, deadline=deadline
        )
        signed = Account.sign_message(encode_typed_data(full_message=data), key)
        return SignedSubmission(
            contributor=contributor,
            digest=as_digest(digest),
            num_samples=num_samples,
            nonce=nonce,
            deadline=deadline,
            v=int(signed.v),
            r=int(signed.r).to_bytes(32, "big"),
            s=int(signed.s).to_bytes(32, "big"),
        )

    def submission_hash(
        self, task_id: int, round_: int, digest: bytes | str, num_samples: int, *, nonce: int, deadline: int
    ) -> bytes:
        """The EIP-712 digest computed off chain (equals :meth:`hash_submission`, which asks the contract)."""
        data = self.submission_typed_data(
            task_id, round_, digest, num_samples, nonce=nonce, deadline=deadline
        )
        message = encode_typed_data(full_message=data)
        return keccak(b"\x19" + message.version + message.header + message.body)

    # ─── events ─────────────────────────────────────────────────────────────────────────────────────────────
    def block_number(self) -> int:
        return self.rpc(lambda: int(self.w3.eth.block_number))

    def events(
        self,
        from_block: int,
        to_block: int | None = None,
        *,
        names: Iterable[str] | None = None,
        max_range: int = 2000,
    ) -> list[LedgerEvent]:
        """The ledger's events in [from_block, to_block] (default: up to the latest block), oldest first."""
        last = self.block_number() if to_block is None else to_block
        wanted = set(names) if names is not None else None
        out: list[LedgerEvent] = []
        for _start, _end, logs in self.rpc(
            lambda: list(iter_log_ranges(self.w3, self.address, from_block, last, max_range=max_range))
        ):
            for event in self.events_decoder.decode_all(logs):
                if wanted is None or event.name in wanted:
                    out.append(event)
        return out

    def logs(
        self,
        name: str,
        from_block: int,
        to_block: int | None = None,
        *,
        max_range: int = 2000,
        **indexed: Any,
    ) -> list[LedgerEvent]:
        """The ledger's ``name`` events in [from_block, to_block] (default: up to the latest block), oldest first,
        selected by the node with the indexed arguments given by their Solidity names (``taskId=1, round=3``)."""
        topics = self.events_decoder.topics(name, **indexed)
        last = self.block_number() if to_block is None else to_block
        out: list[LedgerEvent] = []
        for _start, _end, raw in self.rpc(
            lambda: list(
                iter_log_ranges(self.w3, self.address, from_block, last, max_range=max_range, topics=topics)
            )
        ):
            out.extend(e for e in self.events_decoder.decode_all(raw) if e.name == name)
        return out

    @property
    def first_block(self) -> int:
        """Where the ledger's logs begin: the deployment record's block (0 when the client has no record)."""
        return self.deployment.deploy_block if self.deployment is not None else 0

    def round_opened_block(self, task_id: int, round_: int) -> int:
        """The block of round ``round_``'s ``RoundOpened`` log (remembered: a round opens once)."""
        key = (task_id, round_)
        known = self._opened_block.get(key)
        if known is not None:
            return known
        found = self.logs("RoundOpened", self.first_block, taskId=task_id, round=round_)
        if not found:
            raise LogsBehind(task_id, round_, self.endpoint)
        self._opened_block[key] = found[0].block_number
        return found[0].block_number

    def submissions(self, task_id: int, round_: int, *, from_block: int | None = None) -> list[Submission]:
        """Every update submitted to the round so far, by index, from its ``UpdateSubmitted`` logs: the digests
        the round's views do not keep. The logs are read from ``from_block``, by default from the block of the
        round's ``RoundOpened`` log (:class:`LogsBehind` while the node's logs do not show that yet)."""
        start = self.round_opened_block(task_id, round_) if from_block is None else from_block
        by_index: dict[int, Submission] = {}
        for e in self.logs("UpdateSubmitted", start, taskId=task_id, round=round_):
            a = e.args
            by_index[int(a["index"])] = Submission(
                task_id=task_id,
                round=round_,
                index=int(a["index"]),
                contributor=checksum(a["contributor"]),
                digest=bytes(a["digest"]),
                num_samples=int(a["numSamples"]),
                relayer=checksum(a["relayer"]),
                tx_hash=e.tx_hash,
                block_number=e.block_number,
            )
        return [by_index[i] for i in sorted(by_index)]

    def finalizations(
        self, task_id: int | None, round_: int | None = None, *, from_block: int | None = None
    ) -> list[Finalization]:
        """The task's ``RoundFinalized`` logs (of one round, or all; ``task_id`` None: of every task), oldest first
        (in chain order), from ``from_block`` (default: the deployment record's block)."""
        start = self.first_block if from_block is None else from_block
        found = self.logs("RoundFinalized", start, taskId=task_id, round=round_)
        return [
            Finalization(
                task_id=int(e.args["taskId"]),
                round=int(e.args["round"]),
                by=checksum(e.args["by"]),
                aggregate_digest=bytes(e.args["aggregateDigest"]),
                accepted_bitmap=int(e.args["acceptedBitmap"]),
                rule=int(e.args["rule"]),
                rule_param=int(e.args["ruleParam"]),
                carried_over=bool(e.args["carriedOver"]),
                settlements=tuple(Settlement.from_event(s) for s in e.args["settlements"]),
                tx_hash=e.tx_hash,
                block_number=e.block_number,
            )
            for e in found
        ]

    def round_openings(
        self, task_id: int, round_: int | None = None, *, from_block: int | None = None
    ) -> list[RoundOpened]:
        """The task's ``RoundOpened`` logs (of one round, or all), oldest first: each round's base and its
        validator set with the weights frozen at opening (what settles a finalized round's validators)."""
        start = self.first_block if from_block is None else from_block
        out = []
        for e in self.logs("RoundOpened", start, taskId=task_id, round=round_):
            a = e.args
            out.append(
                RoundOpened(
                    task_id=int(a["taskId"]),
                    round=int(a["round"]),
                    by=checksum(a["by"]),
                    base_digest=bytes(a["baseDigest"]),
                    opened_at=int(a["openedAt"]),
                    validators=tuple(checksum(v) for v in a["validators"]),
                    weights=tuple(int(w) for w in a["weights"]),
                    tx_hash=e.tx_hash,
                    block_number=e.block_number,
                )
            )
            self._opened_block.setdefault((int(a["taskId"]), int(a["round"])), e.block_number)
        return out

    def commitments(
        self, task_id: int, round_: int, *, from_block: int | None = None
    ) -> list[ScoresCommitted]:
        """The round's ``ScoresCommitted`` logs, oldest first (from the round's opening by default)."""
        start = self.round_opened_block(task_id, round_) if from_block is None else from_block
        return [
            ScoresCommitted(
                task_id=task_id,
                round=round_,
                validator=checksum(e.args["validator"]),
                commitment=bytes(e.args["commitment"]),
                tx_hash=e.tx_hash,
                block_number=e.block_number,
            )
            for e in self.logs("ScoresCommitted", start, taskId=task_id, round=round_)
        ]

    def reveals(self, task_id: int, round_: int, *, from_block: int | None = None) -> list[ScoresRevealed]:
        """The round's ``ScoresRevealed`` logs, oldest first, their bytes decoded and bounded (a log whose bytes
        are not valid scores raises :class:`~ledger.chain.scores.InvalidScores`: the contract never emits one)."""
        start = self.round_opened_block(task_id, round_) if from_block is None else from_block
        return [
            ScoresRevealed(
                task_id=task_id,
                round=round_,
                validator=checksum(e.args["validator"]),
                scores=tuple(decode_scores(bytes(e.args["scores"]))),
                reasons=tuple(decode_reasons(bytes(e.args["reasons"]))),
                tx_hash=e.tx_hash,
                block_number=e.block_number,
            )
            for e in self.logs("ScoresRevealed", start, taskId=task_id, round=round_)
        ]

    def reward_claims(
        self, account: str | None = None, *, from_block: int | None = None
    ) -> list[RewardsClaimed]:
        """``RewardsClaimed`` logs (of one account, or all), oldest first."""
        start = self.first_block if from_block is None else from_block
        who = checksum(account) if account is not None else None
        return [
            RewardsClaimed(checksum(e.args["account"]), int(e.args["amount"]), e.tx_hash, e.block_number)
            for e in self.logs("RewardsClaimed", start, account=who)
        ]

    def scheduled_role_changes(
        self, account: str | None = None, *, from_block: int | None = None
    ) -> list[RoleChangeScheduled]:
        """``RoleChangeScheduled`` logs (of one account, or all), oldest first: the admin's announced changes."""
        start = self.first_block if from_block is None else from_block
        who = checksum(account) if account is not None else None
        return [
            RoleChangeScheduled(
                role=bytes(e.args["role"]),
                account=checksum(e.args["account"]),
                grant=bool(e.args["grant"]),
                execute_after=int(e.args["executeAfter"]),
                tx_hash=e.tx_hash,
                block_number=e.block_number,
            )
            for e in self.logs("RoleChangeScheduled", start, account=who)
        ]

    # ─── the token ──────────────────────────────────────────────────────────────────────────────────────────
    def token_client(self) -> TokenClient:
        if not self.token_abi:
            raise MeshprovError("this ledger client was built without the token's ABI")
        return TokenClient(self, self.token())


class TokenClient:
    """Typed access to the reward token (reads, and the few writes a member may make)."""

    def __init__(self, ledger: LedgerClient, address: str) -> None:
        self.ledger = ledger
        self.address = checksum(address)
        self.contract: Contract = ledger.w3.eth.contract(address=self.address, abi=ledger.token_abi)  # type: ignore[call-overload]

    def _fn(self, name: str, *args: Any) -> ContractFunction:
        return cast("ContractFunction", getattr(self.contract.functions, name)(*args))

    def name(self) -> str:
        return str(self.ledger._call(self._fn("name")))

    def symbol(self) -> str:
        return str(self.ledger._call(self._fn("symbol")))

    def decimals(self) -> int:
        return int(self.ledger._call(self._fn("decimals")))

    def total_supply(self) -> int:
        return int(self.ledger._call(self._fn("totalSupply")))

    def balance_of(self, account: str) -> int:
        return int(self.ledger._call(self._fn("balanceOf", checksum(account))))

    def allowance(self, owner: str, spender: str) -> int:
        return int(self.ledger._call(self._fn("allowance", checksum(owner), checksum(spender))))

    def minter(self) -> str:
        return checksum(self.ledger._call(self._fn("minter")))

    def deployer(self) -> str:
        return checksum(self.ledger._call(self._fn("deployer")))

    def transfer(self, to: str, amount: int) -> TxResult[None]:
        receipt, _ = self.ledger._send(self._fn("transfer", checksum(to), amount), "transfer tokens")
        return self.ledger._result(None, receipt, ())

    def approve(self, spender: str, amount: int) -> TxResult[None]:
        receipt, _ = self.ledger._send(self._fn("approve", checksum(spender), amount), "approve a spender")
        return self.ledger._result(None, receipt, ())

    def transfer_from(self, owner: str, to: str, amount: int) -> TxResult[None]:
        fn = self._fn("transferFrom", checksum(owner), checksum(to), amount)
        receipt, _ = self.ledger._send(fn, "transfer tokens")
        return self.ledger._result(None, receipt, ())

    def set_minter(self, minter: str) -> TxResult[None]:
        receipt, _ = self.ledger._send(self._fn("setMinter", checksum(minter)), "set the minter")
        return self.ledger._result(None, receipt, ())

    def mint(self, to: str, amount: int) -> TxResult[None]:
        receipt, _ = self.ledger._send(self._fn("mint", checksum(to), amount), "mint")
        return self.ledger._result(None, receipt, ())

    def mint_batch(self, recipients: Sequence[str], amounts: Sequence[int]) -> TxResult[None]:
        fn = self._fn("mintBatch", [checksum(r) for r in recipients], list(amounts))
        receipt, _ = self.ledger._send(fn, "mint")
        return self.ledger._result(None, receipt, ())


def role_id(role: bytes | str) -> bytes:
    """A role's bytes32 id from its id or its name (admin, contributor, validator, aggregator)."""
    if isinstance(role, bytes):
        return role
    key = role.lower().removesuffix("_role")
    if key in ROLE_IDS:
        return ROLE_IDS[key]
    if role.startswith("0x") and len(role) == 66:
        return bytes.fromhex(role[2:])
    raise ConfigError(f"unknown role {role!r}", hint="use admin, contributor, validator or aggregator")


def as_digest(value: bytes | str) -> bytes:
    """A bytes32 digest from bytes, ``0x`` hex or a CID string."""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
        if len(raw) != 32:
            from ledger.content import InvalidCID

            raise InvalidCID(raw.hex(), f"a bytes32 digest is 32 bytes, got {len(raw)}")
        return raw
    from ledger.content import cid_to_digest, digest_to_cid

    if value.startswith(("0x", "0X")):
        return cid_to_digest(digest_to_cid(value))
    return cid_to_digest(value)


def _first_index(events: Sequence[LedgerEvent]) -> int:
    for event in events:
        if event.name == "UpdateSubmitted":
            return int(event.args["index"])
    raise ChainError("the transaction was mined but emitted no UpdateSubmitted event")
