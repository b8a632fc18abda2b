"""The consortium file: members by role and the task, with a clear ConfigError for every mistake."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from ledger.chain.consortium import Consortium, load_consortium, parse_consortium
from ledger.content.multiformats import digest_to_cid
from ledger.errors import ConfigError
from ledger.exit_codes import ExitCode

ADMIN = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
AGG = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
VALS = [
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
]
CONTRIBS = ["0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc", "0x976EA74026E726554dB657fA54763abd0C3a0aa9"]
SPEC = hashlib.sha256(b"spec").digest()
GENESIS = hashlib.sha256(b"genesis").digest()


def doc(role_delay_s: int | None = None, **task: Any) -> dict[str, Any]:
    base_task: dict[str, Any] = {
        "spec": digest_to_cid(SPEC),
        "genesis": "0x" + GENESIS.hex(),
        "rule": "fedavg",
        "quorum": 2,
        "submission_window_s": 600,
        "commit_window_s": 300,
        "reveal_window_s": 200,
        "finalize_grace_s": 900,
        "max_samples": 50_000,
        "reward_per_round": "1000",
    }
    base_task.update(task)
    out: dict[str, Any] = {
        "admin": ADMIN,
        "aggregator": AGG,
        "validators": list(VALS),
        "contributors": list(CONTRIBS),
        "task": {k: v for k, v in base_task.items() if v is not None},
    }
    if role_delay_s is not None:
        out["role_delay_s"] = role_delay_s
    return out


def error(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_consortium(data, "c.toml")
    assert info.value.exit_code == ExitCode.CONFIG
    return info.value


def test_parses_members_and_task() -> None:
    c = parse_consortium(doc(), "c.toml")
    assert isinstance(c, Consortium)
    assert c.admin == ADMIN
    assert c.aggregators == (AGG,)
    assert c.validators == tuple(VALS)
    assert c.contributors == tuple(CONTRIBS)
    assert c.task.spec_digest == SPEC  # from the CIDv0
    assert c.task.genesis_digest == GENESIS  # from hex
    assert c.task.to_abi() == (SPEC, GENESIS, 0, 0, 2, 600, 300, 200, 900, 50_000, 1000 * 10**18)


def test_reads_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'admin = "{ADMIN}"\naggregators = ["{AGG}"]\nvalidators = ["{VALS[0]}"]\n'
        f'contributors = ["{CONTRIBS[0]}"]\n[task]\nspec = "0x{SPEC.hex()}"\n'
        f'genesis = "{digest_to_cid(GENESIS, v1=True)}"\nquorum = 1\nsubmission_window_s = 60\n'
        "commit_window_s = 30\nreveal_window_s = 40\nfinalize_grace_s = 50\nmax_samples = 7\n"
        'reward_per_round = "0.5"\n'
    )
    c = load_consortium(path)
    assert c.task.genesis_digest == GENESIS  # from the CIDv1
    assert c.task.reward_per_round == 5 * 10**17
    assert c.to_json()["task"]["genesis_digest"] == "0x" + GENESIS.hex()


def test_packs_rule_argument_and_norm_clip() -> None:
    trimmed = parse_consortium(doc(rule="trimmed-mean", trim_bps=1000, norm_clip=2.5), "c.toml").task
    assert (trimmed.rule, trimmed.rule_param) == (1, (2_500 << 16) | 1_000)
    krum = parse_consortium(doc(rule="multi-krum", krum_f=1), "c.toml").task
    assert (krum.rule, krum.rule_param) == (3, 1)
    median = parse_consortium(doc(rule="median", norm_clip=0.01), "c.toml").task
    assert (median.rule, median.rule_param) == (2, 10 << 16)


def test_lowercase_addresses_are_accepted_and_checksummed() -> None:
    data = doc()
    data["contributors"] = [a.lower() for a in CONTRIBS]
    assert parse_consortium(data, "c.toml").contributors == tuple(CONTRIBS)


def test_bad_checksum_is_refused_with_the_right_form() -> None:
    data = doc()
    bad = CONTRIBS[0][:-1] + ("C" if CONTRIBS[0][-1] == "c" else "c")
    data["contributors"] = [bad]
    err = error(data)
    assert "checksum" in err.message
    assert "contributors[0]" in err.message
    assert err.hint is not None
    assert CONTRIBS[0][:-1] in err.hint


def test_not_an_address_is_refused() -> None:
    data = doc()
    data["validators"] = ["0x1234"]
    assert "not an address" in error(data).message


def test_missing_admin_is_refused() -> None:
    data = doc()
    del data["admin"]
    assert "`admin` is missing" in error(data).message


def test_duplicate_member_is_refused() -> None:
    data = doc()
    data["validators"] = [VALS[0], VALS[1], VALS[0].lower()]
    assert f"lists {VALS[0]} twice" in error(data).message


def test_contributor_that_validates_is_refused() -> None:
    data = doc()
    data["validators"] = [VALS[0], CONTRIBS[1]]
    err = error(data)
    assert "also a contributor" in err.message


def test_unknown_key_suggests_the_known_one() -> None:
    data = doc()
    data["validator"] = data.pop("validators")
    err = error(data)
    assert "`validator` is not a known key" in err.message
    assert err.hint == "did you mean `validators`?"


def test_unknown_task_key_is_refused() -> None:
    err = error(doc(quorom=2))
    assert "task.quorom" in err.message


def test_no_aggregator_is_refused() -> None:
    data = doc()
    del data["aggregator"]
    assert "aggregators" in error(data).message


def test_aggregator_and_aggregators_together_are_refused() -> None:
    data = doc()
    data["aggregators"] = [AGG]
    assert "both given" in error(data).message


def test_missing_task_is_refused() -> None:
    data = doc()
    del data["task"]
    assert "[task]" in error(data).message


def test_quorum_above_the_validators_is_refused() -> None:
    assert "only 3 validators" in error(doc(quorum=4)).message


@pytest.mark.parametrize(
    ("task", "fragment"),
    [
        ({"rule": "mean"}, "is not a rule"),
        ({"rule": "trimmed-mean"}, "task.trim_bps` is missing"),
        ({"rule": "trimmed-mean", "trim_bps": 5_000}, "from 1 to 4999"),
        ({"krum_f": 1}, "only applies to rule 'multi-krum'"),
        ({"norm_clip": 70}, "from 0 to 65.535"),
        ({"norm_clip": 0.0001}, "rounds to 0"),
        ({"quorum": 0}, "from 1 to"),
        ({"submission_window_s": 0}, "from 1 to"),
        ({"commit_window_s": True}, "whole number"),
        ({"reveal_window_s": 0}, "from 1 to"),
        ({"finalize_grace_s": None}, "task.finalize_grace_s` is missing"),
        ({"max_samples": 0}, "from 1 to 4294967296"),
        ({"max_samples": 2**32 + 1}, "from 1 to 4294967296"),
        ({"reward_per_round": "-1"}, "non-negative token amount"),
        ({"reward_per_round": "1e-19"}, "non-negative token amount"),
        ({"reward_per_round": str(2**96 // 10**18 + 1)}, "below 2**96"),
        ({"spec": "0x" + "00" * 32}, "zero digest"),
        ({"spec": "0x1234"}, "32-byte hex digest"),
        ({"genesis": "QmNotACid"}, "not a usable CID"),
        ({"genesis": None}, "task.genesis` is missing"),
    ],
)
def test_bad_task_values_are_refused(task: dict[str, Any], fragment: str) -> None:
    assert fragment in error(doc(**task)).message


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read consortium file"):
        load_consortium(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("admin = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_consortium(bad)


def test_the_v2_task_parameters_are_read_and_packed_in_the_contract_order() -> None:
    c = parse_consortium(doc(), "c.toml")
    t = c.task
    assert (t.submission_window_s, t.commit_window_s, t.reveal_window_s, t.finalize_grace_s) == (
        600,
        300,
        200,
        900,
    )
    assert t.max_samples == 50_000
    assert t.to_abi()[5:10] == (600, 300, 200, 900, 50_000)
    assert t.to_json()["finalize_grace_s"] == 900


def test_a_v1_vote_window_is_refused_saying_what_replaced_it() -> None:
    refused = error(doc(vote_window_s=300))
    assert "task.vote_window_s" in refused.message
    assert "protocol-v1" in refused.message
    assert "commit_window_s and reveal_window_s" in (refused.hint or "")


def test_the_role_delay_defaults_to_a_day_and_zero_is_refused() -> None:
    assert parse_consortium(doc(), "c.toml").role_delay_s == 86_400
    assert parse_consortium(doc(role_delay_s=60), "c.toml").role_delay_s == 60
    assert parse_consortium(doc(role_delay_s=60), "c.toml").to_json()["role_delay_s"] == 60
    refused = error(doc(role_delay_s=0))
    assert "`role_delay_s`" in refused.message
    assert "unannounced" in (refused.hint or "")
