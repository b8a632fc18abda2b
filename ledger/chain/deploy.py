"""Deploy MeshToken + MeshLedger for a consortium and record the deployment (``meshprov chain deploy``).

:func:`deploy` sends, signed with the deployer's key and one at a time (each receipt waited for and checked):
the token, the libraries the ledger's bytecode links (RoundSettlement), the ledger (linked to them, with the consortium's ``role_delay_s`` as its immutable ``roleDelay``), ``setMinter(ledger)``, the Revocations contract reading the ledger (R8),
a ``grantRole`` per member (and to the consortium's admin when the deployer is not it), ``createTask``, and then the
deployer renounces its own admin role so that it keeps no power. Every grant comes before ``createTask``: until the
first task exists role changes are immediate, afterwards each waits ``roleDelay`` (docs/protocol.md R6); renouncing
stays immediate. The result is a :class:`DeploymentRecord`, written as ``<data_dir>/deployment.json``:
the chain id, both addresses, the block the ledger was deployed in (where an event index starts), the task id,
the transactions, the artifacts' source hashes and the consortium. It is the one record of a deployment: the ledger
client, the index, the auditors, the demo and the tests all read it back with :meth:`DeploymentRecord.read`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.chain.artifacts import load_artifact
from ledger.chain.consortium import Consortium
from ledger.errors import ConfigError, MeshprovError, NotFound, ServiceUnavailable

if TYPE_CHECKING:
    from web3 import Web3
    from web3.types import TxReceipt

    from ledger.chain.sender import TxSender

RECORD_FORMAT = 2
"""2: protocol v2 (a linked RoundSettlement library, roleDelay); a format-1 record names a v1 ledger this client
cannot speak to."""
DEFAULT_ADMIN_ROLE = b"\x00" * 32


class DeployFailed(MeshprovError):
    def __init__(self, step: str, reason: str, tx_hash: str | None = None) -> None:
        self.step = step
        self.reason = reason
        self.tx_hash = tx_hash
        where = f" (transaction {tx_hash})" if tx_hash else ""
        super().__init__(
            f"deployment failed at {step}{where}: {reason}",
            hint="nothing after this step was sent; fix the cause and deploy again (a new pair of contracts)",
        )


class RecordUnreadable(ConfigError):
    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(
            f"the deployment record {path} is unusable: {problem}",
            hint="it is not a record `meshprov chain deploy` wrote: redeploy (`meshprov chain deploy --force`), "
            "or point MESHPROV_DEPLOYMENT_FILE at the record it wrote",
        )


class RecordMissing(NotFound):
    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"no deployment record at {path}",
            hint="deploy with `meshprov chain deploy --consortium FILE` (or `meshprov demo`), or point "
            "MESHPROV_DEPLOYMENT_FILE at the record",
        )


_REQUIRED = {"chain_id": int, "ledger": str, "token": str, "deploy_block": int, "task_id": int}


@dataclass(frozen=True)
class DeploymentRecord:
    """Where the consortium's contracts live; what clients, workers, the index and auditors start from.

    The one record of a deployment: written by :func:`deploy` (``meshprov chain deploy``, the demo, the lab and
    the tests), read back by :meth:`read` exactly as written.
    """

    chain_id: int
    ledger: str
    token: str
    deploy_block: int
    """The block the ledger was deployed in: where an event index starts."""
    task_id: int
    deployer: str
    consortium: dict[str, Any]
    transactions: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)
    """The linked libraries' addresses by name (RoundSettlement)."""
    revocations: str | None = None
    """The Revocations contract reading this ledger (protocol R8); None in a record written before it existed."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": RECORD_FORMAT,
            "chain_id": self.chain_id,
            "ledger": self.ledger,
            "token": self.token,
            "deploy_block": self.deploy_block,
            "task_id": self.task_id,
            "deployer": self.deployer,
            "consortium": self.consortium,
            "transactions": self.transactions,
            "artifacts": self.artifacts,
            "libraries": self.libraries,
        }
        if self.revocations is not None:
            out["revocations"] = self.revocations
        return out

    @classmethod
    def from_dict(cls, data: object, path: Path = Path("<record>")) -> DeploymentRecord:
        """The record :meth:`to_dict` wrote; anything else is :class:`RecordUnreadable`, naming the field."""
        from eth_utils.address import is_hex_address, to_checksum_address

        if not isinstance(data, dict):
            raise RecordUnreadable(path, "not a JSON object")
        if data.get("format") != RECORD_FORMAT:
            raise RecordUnreadable(
                path,
                f"`format` is {data.get('format')!r}, not {RECORD_FORMAT} (the format this meshprov writes)",
            )
        missing = [name for name in _REQUIRED if name not in data]
        if missing:
            raise RecordUnreadable(path, "the field " + ", ".join(f"`{m}`" for m in missing) + " is missing")
        for name, kind in _REQUIRED.items():
            value = data[name]
            if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise RecordUnreadable(path, f"`{name}` must be a non-negative integer, got {value!r}")
            if kind is str and not (isinstance(value, str) and is_hex_address(value)):
                raise RecordUnreadable(path, f"`{name}` must be an address, got {value!r}")
        for name in ("consortium", "transactions", "artifacts", "libraries"):
            if not isinstance(data.get(name, {}), dict):
                raise RecordUnreadable(path, f"`{name}` must be a JSON object")
        return cls(
            chain_id=data["chain_id"],
            ledger=str(to_checksum_address(data["ledger"])),
            token=str(to_checksum_address(data["token"])),
            deploy_block=data["deploy_block"],
            task_id=data["task_id"],
            deployer=str(data.get("deployer", "")),
            consortium=dict(data.get("consortium", {})),
            transactions=dict(data.get("transactions", {})),
            artifacts=dict(data.get("artifacts", {})),
            libraries=dict(data.get("libraries", {})),
            revocations=_optional_address(data.get("revocations"), path),
        )

    @classmethod
    def read(cls, path: Path) -> DeploymentRecord:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RecordMissing(path) from None
        except (OSError, ValueError) as exc:
            raise RecordUnreadable(path, f"unreadable ({exc})") from None
        return cls.from_dict(data, path)

    def write(self, path: Path) -> Path:
        """Write atomically: a reader sees the old record or the new one, never half of one. Returns ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path


class _Deployer:
    """Sends the deployment's transactions from one key: local nonces, signed locally, receipts checked."""

    def __init__(self, w3: Web3, key: str, timeout: float, log: Callable[[str], None]) -> None:
        from eth_account import Account

        self.w3 = w3
        self.account = Account.from_key(key)
        self.timeout = timeout
        self.log = log
        self.nonce = self._rpc(
            "read the deployer's nonce", lambda: w3.eth.get_transaction_count(self.account.address, "pending")
        )
        self.transactions: dict[str, str] = {}
        self._sender: TxSender | None = None

    def _explainer(self) -> TxSender:
        """A sender used only for its revert decoding: a revert is named by the contracts' ABIs, on every path."""
        if self._sender is None:
            from ledger.chain.revert import RevertDecoder
            from ledger.chain.sender import TxSender

            abis = [load_artifact("MeshToken").abi, load_artifact("MeshLedger").abi]
            self._sender = TxSender(
                self.w3, self.account.key, decoder=RevertDecoder(abis), timeout=self.timeout
            )
        return self._sender

    @property
    def address(self) -> str:
        return str(self.account.address)

    def _rpc(self, step: str, thunk: Callable[[], Any]) -> Any:
        from web3.exceptions import Web3RPCError

        try:
            return thunk()
        except OSError as exc:  # requests' connection errors are OSErrors
            endpoint = str(getattr(self.w3.provider, "endpoint_uri", "") or "the chain")
            raise ServiceUnavailable("chain RPC", endpoint, str(exc) or type(exc).__name__) from None
        except Web3RPCError as exc:  # the node refused: insufficient funds, nonce too low, …
            raise DeployFailed(step, str(exc.message or exc)) from None

    def send(self, step: str, fn: Any) -> TxReceipt:
        """Build, sign and send ``fn`` (a contract function or constructor call); wait for a successful receipt."""
        from web3.exceptions import ContractLogicError, TimeExhausted

        try:
            tx = self._rpc(step, lambda: fn.build_transaction({"from": self.address, "nonce": self.nonce}))
        except ContractLogicError as exc:
            named = self._explainer().decoder.decode(exc.data, exc.message or "")
            raise DeployFailed(step, f"the call would revert: {named.message}") from None
        signed = self.account.sign_transaction(tx)
        tx_hash = self._rpc(step, lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction))
        hex_hash = "0x" + bytes(tx_hash).hex()
        self.nonce += 1
        try:
            receipt = self._rpc(
                step, lambda: self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.timeout)
            )
        except TimeExhausted:
            raise DeployFailed(step, f"no receipt within {self.timeout:g} s", hex_hash) from None
        if receipt["status"] != 1:
            named = self._rpc(step, lambda: self._explainer().explain_failure(receipt))
            raise DeployFailed(step, f"the transaction reverted: {named.message}", hex_hash)
        self.transactions[step] = hex_hash
        self.log(f"{step}: block {receipt['blockNumber']}, gas {receipt['gasUsed']:,}")
        return receipt  # type: ignore[no-any-return]


def _optional_address(value: object, path: Path) -> str | None:
    from eth_utils.address import is_hex_address, to_checksum_address

    if value is None:
        return None
    if not (isinstance(value, str) and is_hex_address(value)):
        raise RecordUnreadable(path, f"`revocations` must be an address or null, got {value!r}")
    return str(to_checksum_address(value))


def deploy(
    w3: Web3,
    key: str,
    consortium: Consortium,
    *,
    timeout: float = 60.0,
    log: Callable[[str], None] = lambda _message: None,
) -> DeploymentRecord:
    """Deploy token and ledger for ``consortium`` from ``key``'s account; see the module docstring."""
    from web3.logs import DISCARD

    token_art, ledger_art = load_artifact("MeshToken"), load_artifact("MeshLedger")
    tx = _Deployer(w3, key, timeout, log)
    chain_id = int(tx._rpc("read the chain id", lambda: w3.eth.chain_id))
    handover = tx.address != consortium.admin

    token_factory = w3.eth.contract(abi=token_art.abi, bytecode=token_art.bytecode)
    token_address = tx.send("deploy MeshToken", token_factory.constructor())["contractAddress"]
    token = w3.eth.contract(address=token_address, abi=token_art.abi)

    libraries: dict[str, str] = {}
    for name in ledger_art.libraries:
        library = load_artifact(name)
        factory = w3.eth.contract(abi=library.abi, bytecode=library.bytecode)
        libraries[name] = str(tx.send(f"deploy {name}", factory.constructor())["contractAddress"])
    ledger_factory = w3.eth.contract(abi=ledger_art.abi, bytecode=ledger_art.linked_bytecode(libraries))
    # The deployer administers the ledger while it sets it up; with a different admin it hands over at the end.
    receipt = tx.send(
        "deploy MeshLedger",
        ledger_factory.constructor(tx.address, token_address, consortium.role_delay_s),
    )
    ledger = w3.eth.contract(address=receipt["contractAddress"], abi=ledger_art.abi)
    deploy_block = int(receipt["blockNumber"])

    tx.send("set the ledger as minter", token.functions.setMinter(ledger.address))
    revocations_art = load_artifact("Revocations")
    revocations_factory = w3.eth.contract(abi=revocations_art.abi, bytecode=revocations_art.bytecode)
    revocations = str(
        tx.send("deploy Revocations", revocations_factory.constructor(ledger.address))["contractAddress"]
    )
    roles = {
        "aggregator": w3.keccak(text="AGGREGATOR_ROLE"),
        "validator": w3.keccak(text="VALIDATOR_ROLE"),
        "contributor": w3.keccak(text="CONTRIBUTOR_ROLE"),
    }
    members = (
        [("aggregator", a) for a in consortium.aggregators]
        + [("validator", v) for v in consortium.validators]
        + [("contributor", c) for c in consortium.contributors]
    )
    for role, member in members:
        tx.send(f"grant {role} {member}", ledger.functions.grantRole(roles[role], member))
    if handover:
        # Before createTask: afterwards a grant (the admin role's too) waits roleDelay.
        tx.send(
            f"grant admin {consortium.admin}",
            ledger.functions.grantRole(DEFAULT_ADMIN_ROLE, consortium.admin),
        )
    receipt = tx.send("create the task", ledger.functions.createTask(consortium.task.to_abi()))
    created = ledger.events.TaskCreated().process_receipt(receipt, errors=DISCARD)
    task_id = int(created[0]["args"]["taskId"])
    if handover:
        tx.send(
            "renounce the deployer's admin role",
            ledger.functions.renounceRole(DEFAULT_ADMIN_ROLE, tx.address),
        )

    return DeploymentRecord(
        chain_id=chain_id,
        ledger=str(ledger.address),
        token=str(token_address),
        deploy_block=deploy_block,
        task_id=task_id,
        deployer=tx.address,
        consortium=consortium.to_json(),
        transactions=tx.transactions,
        artifacts={a.name: a.sources_hash for a in (ledger_art, token_art, revocations_art)},
        libraries=libraries,
        revocations=revocations,
    )
