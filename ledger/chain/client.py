"""A typed client of the MeshLedger contract: one method per contract function, reads and writes.

Reads return the dataclasses of :mod:`ledger.chain.types`; writes go through a :class:`TxSender` (nonces, fees,
receipt timeout) and return a :class:`TxResult` whose ``value`` is what the function returned, recovered from the
transaction's events. Every revert, of a read or a write, raises the named exception of
:mod:`ledger.chain.errors`. Relayed submissions are signed with EIP-712 (:meth:`LedgerClient.sign_submission`)
in the domain the contract itself reports (``eip712Domain()``), so a wrong chain or address cannot slip in.

Build one with :meth:`LedgerClient.from_settings` (the deployment record and the endpoint it is given)
or :meth:`LedgerClient.connect` (a Web3 and an address).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

from ledger.chain.events import EventDecoder, LedgerEvent, iter_log_ranges
from ledger.chain.revert import ChainError, RevertDecoder
from ledger.chain.types import (
    AccountView,
    Ballot,
    Eip712Domain,
    Reputation,
    RoundView,
    SignedSubmission,
    SubmissionInfo,
    SubmissionStatus,
    Tally,
    Task,
    TaskParams,
    TxResult,
    checksum,
)
from ledger.errors import ConfigError, MeshprovError, NotFound, ServiceUnavailable

if TYPE_CHECKING:
    from web3 import Web3
    from web3.contract import Contract
    from web3.contract.contract import ContractFunction
    from web3.types import TxReceipt

    from ledger.chain.sender import TxSender
    from ledger.settings import Settings

R = TypeVar("R")

ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "artifacts"

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


class DeploymentMissing(NotFound):
    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(
            f"no usable deployment record at {path}: {problem}",
            hint="deploy with `meshprov chain deploy` (or `meshprov demo`), or point MESHPROV_DEPLOYMENT_FILE at "
            "the record",
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


class ArtifactMissing(ConfigError):
    def __init__(self, name: str, path: Path) -> None:
        from ledger.dev.toolchain import artifacts_hint

        super().__init__(f"the compiled ABI of {name} is missing ({path})", hint=artifacts_hint())


def load_abi(name: str) -> list[dict[str, Any]]:
    """The ABI of a compiled contract (``ledger/artifacts/<name>.json``, written by ``python -m ledger.dev.build``)."""
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactMissing(name, path) from None
    abi = data["abi"] if isinstance(data, dict) else data
    return cast(list[dict[str, Any]], abi)


@dataclass(frozen=True)
class Deployment:
    """Where the contracts live: the record `meshprov chain deploy` writes."""

    chain_id: int
    ledger: str
    token: str
    block: int
    task_id: int | None = None

    @classmethod
    def from_file(cls, path: Path) -> Deployment:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DeploymentMissing(path, "the file does not exist") from None
        except (OSError, ValueError) as exc:
            raise DeploymentMissing(path, f"unreadable ({exc})") from None
        if not isinstance(data, dict):
            raise DeploymentMissing(path, "not a JSON object")
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path = Path("<record>")) -> Deployment:
        contracts = data.get("contracts") if isinstance(data.get("contracts"), dict) else {}
        assert isinstance(contracts, dict)

        def pick(*names: str) -> Any:
            for name in names:
                for source in (data, contracts):
                    value = source.get(name)
                    if isinstance(value, dict):
                        value = value.get("address")
                    if value is not None:
                        return value
            return None

        ledger = pick("ledger", "ledger_address", "MeshLedger")
        token = pick("token", "token_address", "MeshToken")
        chain_id = pick("chain_id", "chainId")
        block = pick("block", "deploy_block", "block_number", "deployBlock", "start_block")
        task_id = pick("task_id", "taskId")
        if ledger is None or chain_id is None:
            raise DeploymentMissing(path, "it names no ledger address or chain id")
        try:
            return cls(
                chain_id=int(chain_id),
                ledger=checksum(str(ledger)),
                token=checksum(str(token)) if token else "",
                block=int(block or 0),
                task_id=int(task_id) if task_id is not None else None,
            )
        except (TypeError, ValueError) as exc:
            raise DeploymentMissing(path, f"a field does not parse ({exc})") from None


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
        self.decoder = RevertDecoder([self.abi, self.token_abi])
        self.events_decoder = EventDecoder(self.abi)
        self.sender = sender
        if sender is not None:
            sender.decoder = self.decoder
        self.deployment: Deployment | None = None
        self.view_block: int | str = "latest"
        """The block every read is made at: ``latest`` (default), ``pending`` (see your own unmined transactions,
        as a worker does) or a number (a historical view)."""
        self._domain: Eip712Domain | None = None
        self._token_address: str | None = None

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
            abi=abi if abi is not None else load_abi("MeshLedger"),
            token_abi=token_abi if token_abi is not None else load_abi("MeshToken"),
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
        deployment = Deployment.from_file(settings.resolved_deployment_file)
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

    def _call(self, fn: ContractFunction, block: int | str | None = None) -> Any:
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
    def create_task(self, params: TaskParams) -> TxResult[int]:
        """Create a task (round 1 opens with it); the value is the new task id."""
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

    # ─── votes ──────────────────────────────────────────────────────────────────────────────────────────────
    def vote(self, task_id: int, round_: int, index: int, accept: bool, reason: int = 0) -> TxResult[None]:
        fn = self._fn("vote", task_id, round_, index, accept, int(reason))
        return self._result(None, *self._send(fn, "vote"))

    def vote_batch(
        self, task_id: int, round_: int, indexes: int, accepts: int, reasons: bytes | Sequence[int]
    ) -> TxResult[None]:
        """Many verdicts at once: bitmaps of voted and accepted updates, one reason per voted update."""
        fn = self._fn("voteBatch", task_id, round_, indexes, accepts, bytes(reasons))
        return self._result(None, *self._send(fn, "vote"))

    # ─── finalization ───────────────────────────────────────────────────────────────────────────────────────
    def finalize_round(
        self, task_id: int, round_: int, aggregate_digest: bytes | str, accepted_bitmap: int
    ) -> TxResult[None]:
        fn = self._fn("finalizeRound", task_id, round_, as_digest(aggregate_digest), accepted_bitmap)
        return self._result(None, *self._send(fn, "finalize a round"))

    # ─── views ──────────────────────────────────────────────────────────────────────────────────────────────
    def token(self) -> str:
        if self._token_address is None:
            self._token_address = checksum(self._call(self._fn("token")))
        return self._token_address

    def task_count(self) -> int:
        return int(self._call(self._fn("taskCount")))

    def task(self, task_id: int) -> Task:
        params, current = self._call(self._fn("task", task_id))
        return Task(task_id, TaskParams.from_abi(params), int(current))

    def current_round(self, task_id: int) -> int:
        return int(self._call(self._fn("currentRound", task_id)))

    def round_view(self, task_id: int, round_: int) -> RoundView:
        return RoundView.from_abi(self._call(self._fn("roundView", task_id, round_)))

    def base_digest(self, task_id: int, round_: int) -> bytes:
        return bytes(self._call(self._fn("baseDigest", task_id, round_)))

    def aggregate_digest(self, task_id: int, round_: int) -> bytes:
        return bytes(self._call(self._fn("aggregateDigest", task_id, round_)))

    def submission(self, task_id: int, round_: int, index: int) -> SubmissionInfo:
        contributor, num_samples = self._call(self._fn("submission", task_id, round_, index))
        return SubmissionInfo(checksum(contributor), int(num_samples))

    def submission_of(self, task_id: int, round_: int, contributor: str) -> SubmissionStatus:
        submitted, index, num_samples = self._call(
            self._fn("submissionOf", task_id, round_, checksum(contributor))
        )
        return SubmissionStatus(bool(submitted), int(index), int(num_samples))

    def ballot(self, task_id: int, round_: int, validator: str) -> Ballot:
        indexes, accepts = self._call(self._fn("ballot", task_id, round_, checksum(validator)))
        return Ballot(int(indexes), int(accepts))

    def tally(self, task_id: int, round_: int) -> Tally:
        accepted, votes = self._call(self._fn("tally", task_id, round_))
        return Tally(int(accepted), tuple(int(v) for v in votes))

    def account(self, address: str) -> AccountView:
        return AccountView.from_abi(self._call(self._fn("account", checksum(address))))

    def reputation(self, address: str) -> Reputation:
        contributor, validator = self._call(self._fn("reputation", checksum(address)))
        return Reputation(int(contributor), int(validator))

    def nonces(self, address: str) -> int:
        return int(self._call(self._fn("nonces", checksum(address))))

    def contributor_count(self) -> int:
        return int(self._call(self._fn("contributorCount")))

    def validators(self) -> list[str]:
        return [checksum(a) for a in self._call(self._fn("validators"))]

    def hash_submission(
        self, task_id: int, round_: int, digest: bytes | str, num_samples: int, *, nonce: int, deadline: int
    ) -> bytes:
        """The EIP-712 digest the contract computes for a relayed submission."""
        fn = self._fn("hashSubmission", task_id, round_, as_digest(digest), num_samples, nonce, deadline)
        return bytes(self._call(fn))

    def paused(self) -> bool:
        return bool(self._call(self._fn("paused")))

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
