"""One way to stand a consortium up on a chain, for everything that runs one: the demo, the fault runs, the
benchmarks and the tests.

:func:`deploy_consortium` writes the consortium document a ``meshprov chain deploy --consortium`` file holds,
checks it with ``ledger.chain.consortium.parse_consortium`` and deploys it with the real ``ledger.chain.deploy``:
MeshToken and MeshLedger, the ledger as the token's minter, every member's role, the task. The deployment record
is the one ``meshprov chain deploy`` writes (``deploy_block`` and all). What comes back holds the record, the
members' keys and a client factory::

    keys = RoleKeys.dev(validators=2, contributors=5)
    task = task_table(spec=spec_cid, genesis=genesis_cid, quorum=2)
    net = deploy_consortium(connect_web3(url), keys, task, record_path=root / "deployment.json")
    net.client(keys.contributors[0][1]).submit_update(net.task_id, 1, digest, 100)

Accounts are laid out as ``meshprov dev`` lays out anvil's dev accounts (:meth:`RoleKeys.laid_out`): 0 the admin
(who deploys), 1 the aggregator, then the validators, then the contributors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.errors import ConfigError

if TYPE_CHECKING:
    from web3 import Web3

    from ledger.aggregation import AggregationSpec
    from ledger.chain.client import LedgerClient
    from ledger.chain.deploy import DeploymentRecord

Key = tuple[str, str]
"""An account: (checksummed address, private key as 0x-hex). Only the deployer's key is needed to deploy; a
member the caller never sends as may have an empty key."""

FIRST_VALIDATOR = 2
"""The dev layout: account 0 is the admin, 1 the aggregator, the validators start here, the contributors follow."""

DEV_ROLE_DELAY_S = 60
"""The role-change delay of a lab consortium: short, but not zero, so that the demo and the tests go through the
delay a real consortium has (every role is granted before the task exists, when grants are still immediate)."""


@dataclass(frozen=True)
class RoleKeys:
    """The members of a consortium by role, each with its key."""

    admin: Key
    aggregator: Key
    validators: tuple[Key, ...]
    contributors: tuple[Key, ...]

    @classmethod
    def laid_out(cls, keys: Sequence[Key], validators: int, contributors: int) -> RoleKeys:
        """The dev layout over ``keys``: 0 admin, 1 aggregator, then ``validators``, then ``contributors``."""
        need = FIRST_VALIDATOR + validators + contributors
        if validators < 0 or contributors < 0 or len(keys) < need:
            raise ConfigError(
                f"{validators} validators and {contributors} contributors need {need} accounts (with the admin "
                f"and the aggregator); {len(keys)} given",
                hint="anvil funds 20 dev accounts: use fewer members",
            )
        first_contributor = FIRST_VALIDATOR + validators
        return cls(
            admin=keys[0],
            aggregator=keys[1],
            validators=tuple(keys[FIRST_VALIDATOR:first_contributor]),
            contributors=tuple(keys[first_contributor:need]),
        )

    @classmethod
    def dev(cls, validators: int, contributors: int, mnemonic: str | None = None) -> RoleKeys:
        """Anvil's dev accounts (of ``mnemonic``, default the settings' ``anvil_mnemonic``) in the dev layout."""
        from ledger.dev.services import dev_accounts
        from ledger.settings import Settings

        count = FIRST_VALIDATOR + validators + contributors
        return cls.laid_out(
            dev_accounts(mnemonic or Settings().anvil_mnemonic, count), validators, contributors
        )

    def document(self, task: Mapping[str, Any], *, role_delay_s: int = DEV_ROLE_DELAY_S) -> dict[str, Any]:
        """The consortium file's content (``meshprov chain deploy --consortium``) for these members and ``task``."""
        return {
            "admin": self.admin[0],
            "aggregator": self.aggregator[0],
            "validators": [address for address, _ in self.validators],
            "contributors": [address for address, _ in self.contributors],
            "role_delay_s": role_delay_s,
            "task": dict(task),
        }


def task_table(
    *,
    spec: str | bytes,
    genesis: str | bytes,
    quorum: int,
    aggregation: AggregationSpec | None = None,
    submission_window_s: int = 600,
    commit_window_s: int = 300,
    reveal_window_s: int = 300,
    finalize_grace_s: int = 600,
    max_samples: int = 1_000_000,
    reward_per_round: int = 10**18,
    **v1: Any,
) -> dict[str, Any]:
    """A consortium file's ``[task]`` table from what a program holds: ``spec`` and ``genesis`` as CIDs or 32-byte
    digests, the rule as an :class:`~ledger.aggregation.AggregationSpec` (default fedavg), windows and the grace
    in seconds of ledger time, the reward in token base units. Protocol v1's ``vote_window_s`` is refused."""
    if v1:
        name = next(iter(v1))
        hint = (
            "validators commit, then reveal scores: pass commit_window_s and reveal_window_s (and finalize_grace_s)"
            if name == "vote_window_s"
            else "see lab.consortium.task_table's keywords"
        )
        raise ConfigError(f"task_table() has no parameter {name!r}", hint=hint)
    from ledger.aggregation.spec import Rule
    from ledger.chain.consortium import TOKEN_DECIMALS

    table: dict[str, Any] = {
        "spec": spec if isinstance(spec, str) else "0x" + spec.hex(),
        "genesis": genesis if isinstance(genesis, str) else "0x" + genesis.hex(),
        "rule": "fedavg",
    }
    if aggregation is not None:
        if aggregation.clip is not None or aggregation.krum_m:
            raise ConfigError(
                f"the aggregation {aggregation} has no consortium-file form",
                hint="a consortium file's [task] names the rule, trim_bps or krum_f (m = n - f), and no clip here",
            )
        table["rule"] = aggregation.rule.slug
        if aggregation.rule is Rule.TRIMMED_MEAN:
            table["trim_bps"] = aggregation.trim_bp
        elif aggregation.rule is Rule.MULTI_KRUM:
            table["krum_f"] = aggregation.krum_f
    table.update(
        quorum=quorum,
        submission_window_s=submission_window_s,
        commit_window_s=commit_window_s,
        reveal_window_s=reveal_window_s,
        finalize_grace_s=finalize_grace_s,
        max_samples=max_samples,
        reward_per_round=format(Decimal(reward_per_round).scaleb(-TOKEN_DECIMALS), "f"),
    )
    return table


@dataclass
class DeployedConsortium:
    """A deployed consortium: its record, its members' keys, and clients of its ledger."""

    w3: Web3
    keys: RoleKeys
    record: DeploymentRecord
    document: dict[str, Any]
    """The consortium document it was deployed from (what a consortium file holds)."""
    record_path: Path | None = None
    timeout: float = 30.0
    """Seconds a client waits for a receipt."""
    view_block: int | str = "latest"
    """The block the clients read at (``pending``: see one's own unmined transactions, as members do)."""
    _clients: dict[str, LedgerClient] = field(default_factory=dict, repr=False)

    @property
    def task_id(self) -> int:
        return self.record.task_id

    @property
    def ledger(self) -> str:
        return self.record.ledger

    @property
    def deploy_block(self) -> int:
        return self.record.deploy_block

    def client(self, key: str | None = None) -> LedgerClient:
        """A client of the ledger sending with ``key`` (None: read-only). One per key, so that each key's nonces
        are kept by one sender."""
        from ledger.chain.client import LedgerClient

        name = key or ""
        if name not in self._clients:
            client = LedgerClient.connect(self.w3, self.record.ledger, key=key, timeout=self.timeout)
            client.view_block = self.view_block
            client.deployment = self.record
            self._clients[name] = client
        return self._clients[name]

    def resync(self) -> None:
        """Forget every client's cached nonce (after a chain restart or an ``evm_revert``)."""
        for client in self._clients.values():
            if client.sender is not None:
                client.sender.resync()


def deploy_consortium(
    w3: Web3,
    keys: RoleKeys,
    task: Mapping[str, Any],
    *,
    record_path: Path | None = None,
    deployer_key: str | None = None,
    role_delay_s: int = DEV_ROLE_DELAY_S,
    timeout: float = 60.0,
    client_timeout: float = 30.0,
    log: Callable[[str], None] = lambda _message: None,
    source: str = "the lab's consortium",
) -> DeployedConsortium:
    """Deploy the consortium of ``keys`` with ``task`` (a consortium file's ``[task]`` table, e.g. from
    :func:`task_table`) through ``ledger.chain.deploy``, from ``deployer_key`` (default: the admin's), with the
    ledger's role-change delay ``role_delay_s``; write the record to ``record_path`` when given. A document the real deploy would refuse is refused here too, as a
    :class:`~ledger.chain.consortium.ConsortiumError` naming ``source``."""
    from ledger.chain.consortium import parse_consortium
    from ledger.chain.deploy import deploy

    document = keys.document(task, role_delay_s=role_delay_s)
    consortium = parse_consortium(document, source)
    record = deploy(w3, deployer_key or keys.admin[1], consortium, timeout=timeout, log=log)
    if record_path is not None:
        record.write(record_path)
    return DeployedConsortium(w3, keys, record, document, record_path, timeout=client_timeout)
