"""`meshprov chain deploy | status | claim | role …`: deploy the contracts for a consortium, show the deployment,
claim accrued rewards, and schedule, execute or cancel role changes (delayed once a task exists)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledger.cli.output import JsonFlag, emit, info, want_json
from ledger.cli.state import settings as load
from ledger.errors import ConfigError, Mismatch, NotFound

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console
    from web3 import Web3

    from ledger.chain.client import LedgerClient
    from ledger.settings import Settings

app = typer.Typer(no_args_is_help=True)

PHASES = ("none", "open", "commit", "reveal", "closed", "finalized")


class ChainIdChanged(Mismatch):
    def __init__(self, expected: int, actual: int, endpoint: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"the chain at {endpoint} has chain id {actual}, but the deployment record says {expected}",
            hint="point MESHPROV_CHAIN_RPC_URL at the deployment's chain, or redeploy there",
        )


class ContractGone(NotFound):
    def __init__(self, name: str, address: str, endpoint: str) -> None:
        self.name = name
        self.address = address
        super().__init__(
            f"there is no {name} contract at {address} on the chain at {endpoint}",
            hint="the chain was reset or the record is for another chain: redeploy with `meshprov chain deploy`",
        )


def _web3(url: str, timeout: float) -> Web3:
    from web3 import HTTPProvider, Web3

    return Web3(HTTPProvider(url, request_kwargs={"timeout": timeout}))


def _deployer_key(s: Settings) -> str:
    key = s.signing_key()
    if key:
        return key
    if s.chain_rpc_url is None:
        # The embedded dev chain: its first funded account (public development keys) deploys.
        from ledger.dev.services import dev_accounts

        return dev_accounts(s.anvil_mnemonic, 1)[0][1]
    raise ConfigError(
        "no key to deploy with on the configured chain",
        hint="set MESHPROV_PRIVATE_KEY_FILE to the deployer's (normally the admin's) key",
    )


@app.command()
def deploy(
    consortium: Annotated[
        Path,
        typer.Option("--consortium", help="Consortium TOML: admin, members by role, [task].", exists=False),
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Deploy anew even though a deployment record exists.")
    ] = False,
    if_absent: Annotated[
        bool,
        typer.Option(
            "--if-absent",
            help="When the record exists and its contracts are on the chain, show it and succeed (for one-shot "
            "deployer containers); deploy when there is no record or the chain was reset.",
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Deploy MeshToken and MeshLedger, grant the consortium's roles, create its task, write the record."""
    from ledger.chain.consortium import load_consortium
    from ledger.chain.deploy import DeploymentRecord
    from ledger.chain.deploy import deploy as deploy_contracts
    from ledger.cli.endpoints import chain_url

    if force and if_absent:
        raise typer.BadParameter("--force and --if-absent contradict each other", param_hint="--if-absent")
    s = load()
    members = load_consortium(consortium)
    record_path = s.resolved_deployment_file
    if record_path.exists() and not (force or if_absent):
        raise ConfigError(
            f"a deployment record already exists at {record_path}",
            hint="`meshprov chain status` shows it; pass --force to deploy a new pair of contracts",
        )
    url = chain_url(s)
    w3 = _web3(url, s.tx_timeout_s)
    if s.chain_id is not None and int(w3.eth.chain_id) != s.chain_id:
        raise ChainIdChanged(s.chain_id, int(w3.eth.chain_id), url)
    if if_absent and record_path.exists():
        existing = DeploymentRecord.read(record_path)
        if int(w3.eth.chain_id) != existing.chain_id:
            raise ChainIdChanged(existing.chain_id, int(w3.eth.chain_id), url)
        if w3.eth.get_code(w3.to_checksum_address(existing.ledger)):
            info(f"already deployed: ledger {existing.ledger} (record {record_path})")
            emit(
                {**existing.to_dict(), "record": str(record_path), "rpc_url": url, "deployed_now": False},
                json_mode=want_json(json_output),
                human=lambda console: console.print(f"ledger   {existing.ledger} (already deployed)"),
            )
            return
        info(f"the recorded ledger {existing.ledger} is gone (the chain was reset): deploying anew")
    key = _deployer_key(s)
    info(
        f"deploying to {url} for {len(members.contributors)} contributors, {len(members.validators)} validators"
    )
    record = deploy_contracts(w3, key, members, timeout=s.tx_timeout_s, log=info)
    record.write(record_path)
    data = {**record.to_dict(), "record": str(record_path), "rpc_url": url, "deployed_now": True}

    def human(console: Console) -> None:
        console.print(f"ledger   {record.ledger}")
        console.print(f"token    {record.token}")
        console.print(f"chain    {record.chain_id}, from block {record.deploy_block}")
        console.print(f"task     {record.task_id} (round 1 open)")
        info(f"record written to {record_path}")

    emit(data, json_mode=want_json(json_output), human=human)


@app.command()
def status(json_output: JsonFlag = False) -> None:
    """Show the deployment: chain, addresses (checked to hold code), the task's round and its phase."""
    from ledger.chain.artifacts import load_artifact
    from ledger.chain.client import LedgerClient
    from ledger.chain.deploy import DeploymentRecord
    from ledger.cli.endpoints import chain_url

    s = load()
    record_path = s.resolved_deployment_file
    record = DeploymentRecord.read(record_path)
    url = chain_url(s)
    w3 = _web3(url, s.tx_timeout_s)
    chain_id = int(w3.eth.chain_id)
    if chain_id != record.chain_id:
        raise ChainIdChanged(record.chain_id, chain_id, url)
    for name, address in (("MeshLedger", record.ledger), ("MeshToken", record.token)):
        if not w3.eth.get_code(w3.to_checksum_address(address)):
            raise ContractGone(name, address, url)
    client = LedgerClient(w3, record.ledger, abi=load_artifact("MeshLedger").abi, endpoint=url)
    round_ = client.current_round(record.task_id)
    view = client.round_view(record.task_id, round_)
    clock = client.clock()
    data: dict[str, Any] = {
        "record": str(record_path),
        "rpc_url": url,
        "chain_id": chain_id,
        "ledger": record.ledger,
        "token": record.token,
        "deploy_block": record.deploy_block,
        "latest_block": int(w3.eth.block_number),
        "task_id": record.task_id,
        "round": round_,
        "phase": PHASES[int(view.phase)],
        "submissions": view.submission_count,
        "validators": view.validator_count,
        "commits": view.commit_count,
        "reveals": view.reveal_count,
        "ledger_now": clock.ledger_now,
        "submission_end": view.submission_end,
        "commit_end": view.commit_end,
        "reveal_end": view.reveal_end,
        "grace_end": view.grace_end,
        "finalizable": view.finalizable,
        "paused": client.paused(),
        "role_delay_s": client.role_delay(),
    }

    def human(console: Console) -> None:
        console.print(
            f"chain    {chain_id} at {url} (block {data['latest_block']}, deployed at {record.deploy_block})"
        )
        console.print(f"ledger   {record.ledger}")
        console.print(f"token    {record.token}")
        paused = "  [bold red]PAUSED[/]" if data["paused"] else ""
        console.print(
            f"task {record.task_id}  round {round_}  {data['phase']}, {data['submissions']} submissions, "
            f"{data['commits']}/{data['validators']} committed, {data['reveals']} revealed"
            f"{', finalizable' if data['finalizable'] else ''}{paused}"
        )

    emit(data, json_mode=want_json(json_output), human=human)


def _client(s: Settings, *, need_key: bool) -> LedgerClient:
    from ledger.chain.client import LedgerClient
    from ledger.cli.endpoints import chain_url

    client = LedgerClient.from_settings(s, endpoint=chain_url(s), read_only=not need_key)
    if need_key and client.sender is None:
        raise ConfigError(
            "this command sends a transaction but no signing key is configured",
            hint="set MESHPROV_PRIVATE_KEY_FILE (or MESHPROV_PRIVATE_KEY) to the account's key",
        )
    return client


@app.command()
def claim(json_output: JsonFlag = False) -> None:
    """Mint the rewards accrued to this account (the configured key) since its last claim."""
    from ledger.chain.errors import NothingToClaim

    client = _client(load(), need_key=True)
    account = client.sender_address or ""
    try:
        result = client.claim_rewards()
    except NothingToClaim:
        emit(
            {"account": account, "claimed": "0", "tx_hash": None},
            json_mode=want_json(json_output),
            human=lambda console: console.print(f"{account} has no accrued reward to claim"),
        )
        return
    data = {"account": account, "claimed": str(result.value), "tx_hash": result.tx_hash}
    emit(
        data,
        json_mode=want_json(json_output),
        human=lambda console: console.print(
            f"claimed {result.value} base units for {account} (transaction {result.tx_hash})"
        ),
    )


role_app = typer.Typer(
    no_args_is_help=True,
    help="Role changes once a task exists: scheduled by the admin, executable by anyone after the ledger's "
    "role delay, cancellable by the admin until then.",
)
app.add_typer(role_app, name="role")

RoleName = Annotated[str, typer.Argument(help="admin, contributor, validator or aggregator.")]
Account = Annotated[str, typer.Argument(help="The account's address.")]
Revoke = Annotated[bool, typer.Option("--revoke", help="A revocation (default: a grant).")]


def _role_change(what: str, role: str, account: str, revoke: bool) -> dict[str, Any]:
    from ledger.chain.client import role_id
    from ledger.chain.types import checksum

    return {
        "action": what,
        "role": role,
        "role_id": "0x" + role_id(role).hex(),
        "account": checksum(account),
        "grant": not revoke,
    }


def _send_role_change(
    what: str,
    role: str,
    account: str,
    revoke: bool,
    *,
    json_output: bool,
    send: Callable[[Any, str, str, bool], Any],
    human: Callable[[dict[str, Any]], str],
) -> None:
    """One role-change transaction (`send(client, role, account, grant)`), reported as its record plus the hash."""
    result = send(_client(load(), need_key=True), role, account, not revoke)
    data = {**_role_change(what, role, account, revoke), "tx_hash": result.tx_hash}
    if what == "schedule":
        data["execute_after"] = result.value
    emit(data, json_mode=want_json(json_output), human=lambda console: console.print(human(data)))


@role_app.command("schedule")
def role_schedule(
    role: RoleName, account: Account, revoke: Revoke = False, json_output: JsonFlag = False
) -> None:
    """Schedule granting (or, with --revoke, revoking) ROLE for ACCOUNT (admin key)."""
    _send_role_change(
        "schedule",
        role,
        account,
        revoke,
        json_output=json_output,
        send=lambda client, *change: client.schedule_role_change(*change),
        human=lambda data: (
            f"{'revoking' if revoke else 'granting'} {role} for {data['account']} is executable by anyone from "
            f"{data['execute_after']} (unix time): `meshprov chain role execute {role} {data['account']}"
            f"{' --revoke' if revoke else ''}`"
        ),
    )


@role_app.command("execute")
def role_execute(
    role: RoleName, account: Account, revoke: Revoke = False, json_output: JsonFlag = False
) -> None:
    """Carry out a scheduled role change whose delay is over (any key)."""
    _send_role_change(
        "execute",
        role,
        account,
        revoke,
        json_output=json_output,
        send=lambda client, *change: client.execute_role_change(*change),
        human=lambda data: (
            f"{'revoked' if revoke else 'granted'} {role} for {data['account']} (transaction "
            f"{data['tx_hash']})"
        ),
    )


@role_app.command("cancel")
def role_cancel(
    role: RoleName, account: Account, revoke: Revoke = False, json_output: JsonFlag = False
) -> None:
    """Cancel a scheduled role change before it executes (admin key)."""
    _send_role_change(
        "cancel",
        role,
        account,
        revoke,
        json_output=json_output,
        send=lambda client, *change: client.cancel_role_change(*change),
        human=lambda data: f"cancelled: {role} for {data['account']} stays as it is",
    )


@role_app.command("pending")
def role_pending(
    role: RoleName, account: Account, revoke: Revoke = False, json_output: JsonFlag = False
) -> None:
    """When a scheduled role change becomes executable (0: none is pending)."""
    client = _client(load(), need_key=False)
    after = client.pending_role_change(role, account, not revoke)
    data = {**_role_change("pending", role, account, revoke), "execute_after": after}
    emit(
        data,
        json_mode=want_json(json_output),
        human=lambda console: console.print(
            f"executable from {after} (unix time)" if after else "no such role change is scheduled"
        ),
    )


@app.command()
def revoke(
    cid: Annotated[str, typer.Argument(help="CID (or 0x digest) of the update to revoke.")],
    reason: Annotated[
        str, typer.Option("--reason", help="poisoned, data-withdrawn, license or other.", show_default=False)
    ],
    evidence: Annotated[
        str | None,
        typer.Option(
            "--evidence",
            help="CID of the evidence in the store (a rejudge or influence report, a withdrawal request).",
            show_default=False,
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Approve revoking an update, as a validator (protocol R8): it is revoked, for good, once approvers holding
    more than half of the current validators' reputation agree. The first approval sets the reason and evidence."""
    from ledger.chain.revocations import RevocationReason, RevocationsClient

    why = RevocationReason.parse(reason)
    digest = _digest(cid, "the update")
    proof = _digest(evidence, "--evidence") if evidence else bytes(32)
    client = _client(load(), need_key=True)
    state = RevocationsClient.of(client).approve(digest, why, proof)
    data = {**state.to_dict(), "approver": client.sender_address}

    def human(console: Console) -> None:
        share = state.approved_weight / state.total_weight if state.total_weight else 0.0
        verdict = "[red]REVOKED[/] (final)" if state.revoked else "pending: more than half is needed"
        console.print(
            f"{data['cid']}: {why.slug}, approved by {len(state.approvers)} validators holding "
            f"{state.approved_weight:,} of {state.total_weight:,} reputation ({share:.0%}); {verdict}"
        )

    emit(data, json_mode=want_json(json_output), human=human)


def _digest(text: str, what: str) -> bytes:
    from ledger.content import cid_to_digest

    if text.startswith("0x") and len(text) == 66:
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            pass
    try:
        return cid_to_digest(text)
    except ValueError:
        raise ConfigError(f"{what} {text!r} is neither a CID nor a 0x digest") from None
