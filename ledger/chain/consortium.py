"""The consortium file: who holds which role on the ledger, and the task it trains.

A TOML file, read by ``meshprov chain deploy --consortium FILE``::

    admin = "0x…"                      # grants roles, creates the task, may pause the ledger (bounded)
    aggregators = ["0x…"]              # or: aggregator = "0x…"
    contributors = ["0x…", "0x…"]
    validators = ["0x…", "0x…", "0x…"]
    role_delay_s = 86400               # optional (default 1 day): once a task exists, every role change waits this

    [task]
    spec = "Qm…"                       # CID (v0 or v1) or 0x-hex sha-256 digest of the task specification
    genesis = "Qm…"                    # the initial model, the base of round 1
    rule = "trimmed-mean"              # fedavg | trimmed-mean | median | multi-krum
    trim_bps = 1000                    # trimmed-mean only: fraction cut from each side, basis points
    krum_f = 1                         # multi-krum only: faulty updates tolerated
    norm_clip = 2.5                    # optional, any rule: clip each update's L2 norm first (0.001 steps)
    quorum = 2                         # validators that must reveal for any update to be accepted
    submission_window_s = 600          # windows are ledger time (a pause stops them)
    commit_window_s = 300              # validators commit their score hashes
    reveal_window_s = 300              # then reveal the scores
    finalize_grace_s = 600             # after which anyone may carry an unfinalized round over
    max_samples = 100000               # the largest sample count a submission may claim (1 .. 2**32)
    reward_per_round = "1000"          # MESH tokens per round (decimal; the token has 18 decimals)

Addresses may be EIP-55 checksummed or all lowercase; a mixed-case address with a wrong checksum is refused, as
is any member listed twice or as both contributor and validator (the ledger forbids that pairing). Every problem
is a :class:`~ledger.errors.ConfigError` that names the file and the key. A protocol-v1 file (``vote_window_s``) is
refused with what to write instead.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ledger.errors import ConfigError

RULES = {"fedavg": 0, "trimmed-mean": 1, "median": 2, "multi-krum": 3}
RULE_NAMES = {number: name for name, number in RULES.items()}
TOKEN_DECIMALS = 18
_MEMBER_KEYS = ("admin", "aggregator", "aggregators", "contributors", "validators", "role_delay_s", "task")
_TASK_KEYS = (
    "spec",
    "genesis",
    "rule",
    "trim_bps",
    "krum_f",
    "norm_clip",
    "quorum",
    "submission_window_s",
    "commit_window_s",
    "reveal_window_s",
    "finalize_grace_s",
    "max_samples",
    "reward_per_round",
)
_MAX_UINT16 = 2**16 - 1
_MAX_UINT32 = 2**32 - 1
MAX_SAMPLES_CAP = 2**32
"""The contract's MAX_SAMPLES_CAP: no task may let a submission claim more samples."""
REWARD_CAP = 2**96
"""rewardPerRound must be below this."""
DEFAULT_ROLE_DELAY_S = 86_400
"""A consortium file without ``role_delay_s``: a day to see an announced role change coming."""


class ConsortiumError(ConfigError):
    def __init__(self, source: str, key: str, problem: str, *, hint: str | None = None) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        super().__init__(f"consortium file {source}: `{key}` {problem}", hint=hint)


@dataclass(frozen=True)
class TaskConfig:
    """A task's parameters as ``createTask`` takes them (digests as 32 bytes, the rule parameter packed, windows
    and the grace in seconds of ledger time)."""

    spec_digest: bytes
    genesis_digest: bytes
    rule: int
    rule_param: int
    quorum: int
    submission_window_s: int
    commit_window_s: int
    reveal_window_s: int
    finalize_grace_s: int
    max_samples: int
    reward_per_round: int  # token base units

    def to_abi(self) -> tuple[bytes, bytes, int, int, int, int, int, int, int, int, int]:
        """The ``TaskParams`` tuple of ``createTask``."""
        return (
            self.spec_digest,
            self.genesis_digest,
            self.rule,
            self.rule_param,
            self.quorum,
            self.submission_window_s,
            self.commit_window_s,
            self.reveal_window_s,
            self.finalize_grace_s,
            self.max_samples,
            self.reward_per_round,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "spec_digest": "0x" + self.spec_digest.hex(),
            "genesis_digest": "0x" + self.genesis_digest.hex(),
            "rule": RULE_NAMES[self.rule],
            "rule_param": self.rule_param,
            "quorum": self.quorum,
            "submission_window_s": self.submission_window_s,
            "commit_window_s": self.commit_window_s,
            "reveal_window_s": self.reveal_window_s,
            "finalize_grace_s": self.finalize_grace_s,
            "max_samples": self.max_samples,
            "reward_per_round": str(self.reward_per_round),
        }


@dataclass(frozen=True)
class Consortium:
    """The members by role (checksummed addresses), the ledger's role-change delay, and the task."""

    admin: str
    aggregators: tuple[str, ...]
    contributors: tuple[str, ...]
    validators: tuple[str, ...]
    task: TaskConfig
    role_delay_s: int = DEFAULT_ROLE_DELAY_S

    def to_json(self) -> dict[str, Any]:
        return {
            "admin": self.admin,
            "aggregators": list(self.aggregators),
            "contributors": list(self.contributors),
            "validators": list(self.validators),
            "role_delay_s": self.role_delay_s,
            "task": self.task.to_json(),
        }


def load_consortium(path: Path) -> Consortium:
    """Read and check a consortium file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read consortium file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"consortium file {path} is not valid TOML: {exc}", hint="fix the line named"
        ) from None
    return parse_consortium(data, str(path))


def parse_consortium(data: dict[str, Any], source: str = "<consortium>") -> Consortium:
    """Check a parsed consortium document (see the module docstring for its shape)."""
    _no_unknown_keys(data, _MEMBER_KEYS, source, "")
    if "admin" not in data:
        raise ConsortiumError(
            source, "admin", "is missing", hint="name the address that administers the ledger"
        )
    admin = _address(data["admin"], source, "admin")
    if "aggregator" in data and "aggregators" in data:
        raise ConsortiumError(source, "aggregator", "and `aggregators` are both given; use one of them")
    raw_aggregators = [data["aggregator"]] if "aggregator" in data else data.get("aggregators")
    aggregators = _address_list(raw_aggregators, source, "aggregators")
    contributors = _address_list(data.get("contributors"), source, "contributors")
    validators = _address_list(data.get("validators"), source, "validators")
    if not aggregators:
        raise ConsortiumError(source, "aggregators", "is empty", hint="name at least one aggregator")
    both = sorted(set(contributors) & set(validators))
    if both:
        raise ConsortiumError(
            source,
            "validators",
            f"lists {both[0]}, which is also a contributor",
            hint="a member may not validate updates it could have submitted: give it two keys",
        )
    task_data = data.get("task")
    if not isinstance(task_data, dict):
        raise ConsortiumError(source, "task", "is missing (a [task] table)")
    task = _task(task_data, source, len(validators))
    delay = data.get("role_delay_s", DEFAULT_ROLE_DELAY_S)
    if isinstance(delay, bool) or not isinstance(delay, int) or not 1 <= delay <= _MAX_UINT32:
        raise ConsortiumError(
            source,
            "role_delay_s",
            f"must be a whole number of seconds from 1 to {_MAX_UINT32}, got {delay!r}",
            hint="a zero delay would let the admin change roles unannounced; dev setups use 60",
        )
    return Consortium(admin, tuple(aggregators), tuple(contributors), tuple(validators), task, delay)


def _no_unknown_keys(data: dict[str, Any], known: tuple[str, ...], source: str, prefix: str) -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            raise ConsortiumError(
                source,
                prefix + key,
                "is not a known key",
                hint=f"did you mean `{prefix}{close[0]}`?" if close else f"known keys: {', '.join(known)}",
            )


def _address(value: object, source: str, key: str) -> str:
    from eth_utils.address import is_checksum_address, is_hex_address, to_checksum_address

    if not isinstance(value, str) or not is_hex_address(value):
        raise ConsortiumError(source, key, f"is not an address: {value!r}", hint="write 0x and 40 hex digits")
    mixed_case = value[2:] != value[2:].lower() and value[2:] != value[2:].upper()
    if mixed_case and not is_checksum_address(value):
        raise ConsortiumError(
            source,
            key,
            f"has a wrong EIP-55 checksum: {value}",
            hint=f"a typo? the checksummed form of these digits is {to_checksum_address(value)}",
        )
    return str(to_checksum_address(value))


def _address_list(value: object, source: str, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConsortiumError(source, key, "must be a list of addresses")
    out: list[str] = []
    for i, item in enumerate(value):
        address = _address(item, source, f"{key}[{i}]")
        if address in out:
            raise ConsortiumError(source, key, f"lists {address} twice")
        out.append(address)
    return out


def _digest(value: object, source: str, key: str) -> bytes:
    from ledger.content.errors import InvalidCID
    from ledger.content.multiformats import cid_to_digest

    if not isinstance(value, str):
        raise ConsortiumError(source, key, "must be a CID or a 0x-hex sha-256 digest")
    if value.startswith(("0x", "0X")):
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ConsortiumError(source, key, f"is not a 32-byte hex digest: {value}")
    else:
        try:
            raw = cid_to_digest(value)
        except InvalidCID as exc:
            raise ConsortiumError(source, key, f"is not a usable CID: {exc.problem}", hint=exc.hint) from None
    if raw == bytes(32):
        raise ConsortiumError(source, key, "is the zero digest, which names no content")
    return raw


def _int(
    data: dict[str, Any], key: str, source: str, *, low: int, high: int, default: int | None = None
) -> int:
    value = data.get(key, default)
    if value is None:
        raise ConsortiumError(source, f"task.{key}", "is missing")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConsortiumError(
            source, f"task.{key}", f"must be a whole number from {low} to {high}, got {value!r}"
        )
    return value


def _task(data: dict[str, Any], source: str, n_validators: int) -> TaskConfig:
    if "vote_window_s" in data:
        raise ConsortiumError(
            source,
            "task.vote_window_s",
            "is a protocol-v1 key: validators no longer vote, they commit scores and then reveal them",
            hint="replace it by commit_window_s and reveal_window_s (and add finalize_grace_s and max_samples); "
            "see docs/protocol.md R3",
        )
    _no_unknown_keys(data, _TASK_KEYS, source, "task.")
    for key in ("spec", "genesis"):
        if key not in data:
            raise ConsortiumError(source, f"task.{key}", "is missing")
    rule_name = data.get("rule", "fedavg")
    if rule_name not in RULES:
        raise ConsortiumError(
            source, "task.rule", f"is not a rule: {rule_name!r}", hint=f"one of {', '.join(RULES)}"
        )
    rule = RULES[rule_name]
    argument = 0
    if rule == RULES["trimmed-mean"]:
        argument = _int(data, "trim_bps", source, low=1, high=4_999)
    elif rule == RULES["multi-krum"]:
        argument = _int(data, "krum_f", source, low=0, high=_MAX_UINT16)
    for key, wants in (("trim_bps", "trimmed-mean"), ("krum_f", "multi-krum")):
        if key in data and rule_name != wants:
            raise ConsortiumError(source, f"task.{key}", f"only applies to rule {wants!r}, not {rule_name!r}")
    clip = data.get("norm_clip", 0)
    if isinstance(clip, bool) or not isinstance(clip, int | float) or not 0 <= clip * 1000 <= _MAX_UINT16:
        raise ConsortiumError(source, "task.norm_clip", f"must be a number from 0 to 65.535, got {clip!r}")
    clip_milli = round(clip * 1000)
    if clip and clip_milli == 0:
        raise ConsortiumError(source, "task.norm_clip", f"{clip} rounds to 0 (the step is 0.001)")
    quorum = _int(data, "quorum", source, low=1, high=_MAX_UINT16)
    if quorum > n_validators:
        raise ConsortiumError(
            source,
            "task.quorum",
            f"is {quorum} but there are only {n_validators} validators: no update could ever be accepted",
        )
    reward = data.get("reward_per_round", "0")
    try:
        tokens = Decimal(str(reward))
        base_units = tokens * 10**TOKEN_DECIMALS
        if not tokens.is_finite() or tokens < 0 or base_units != base_units.to_integral_value():
            raise InvalidOperation
    except InvalidOperation:
        raise ConsortiumError(
            source, "task.reward_per_round", f"must be a non-negative token amount, got {reward!r}"
        ) from None
    if base_units >= REWARD_CAP:
        raise ConsortiumError(
            source,
            "task.reward_per_round",
            f"must be below 2**96 base units ({REWARD_CAP / 10**TOKEN_DECIMALS:.0f} tokens)",
        )
    return TaskConfig(
        spec_digest=_digest(data["spec"], source, "task.spec"),
        genesis_digest=_digest(data["genesis"], source, "task.genesis"),
        rule=rule,
        rule_param=(clip_milli << 16) | argument,
        quorum=quorum,
        submission_window_s=_int(data, "submission_window_s", source, low=1, high=_MAX_UINT32),
        commit_window_s=_int(data, "commit_window_s", source, low=1, high=_MAX_UINT32),
        reveal_window_s=_int(data, "reveal_window_s", source, low=1, high=_MAX_UINT32),
        finalize_grace_s=_int(data, "finalize_grace_s", source, low=1, high=_MAX_UINT32),
        max_samples=_int(data, "max_samples", source, low=1, high=MAX_SAMPLES_CAP),
        reward_per_round=int(base_units),
    )
