"""Scores as the ledger takes them: fixed point, 2-byte big-endian encoding, reasons, and the commitment."""

from __future__ import annotations

import math
from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

from ledger.chain.scores import (
    MAX_UPDATES_PER_ROUND,
    REJECT,
    SCORE_ONE,
    InvalidScores,
    ScoreSheet,
    decode_reasons,
    decode_scores,
    encode_reasons,
    encode_scores,
    from_fixed,
    score_commitment,
    to_fixed,
)

LEDGER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
VALIDATOR = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


@pytest.mark.parametrize(
    ("value", "fixed"),
    [
        (0.0, 0),
        (1.0, SCORE_ONE),
        (-1.0, -SCORE_ONE),
        (0.12345, 1235),  # half away from zero
        (-0.12345, -1235),
        (0.00004, 0),
        (0.00005, 1),
        (-0.00005, -1),
        (3.7, SCORE_ONE),  # clamped
        (-2.0, -SCORE_ONE),
        (math.inf, SCORE_ONE),
        (-math.inf, -SCORE_ONE),
    ],
)
def test_to_fixed_rounds_half_away_from_zero_and_clamps(value: float, fixed: int) -> None:
    assert to_fixed(value) == fixed


def test_nan_has_no_fixed_point_value() -> None:
    with pytest.raises(InvalidScores, match="NaN"):
        to_fixed(math.nan)
    assert from_fixed(2_500) == 0.25


def test_scores_are_two_bytes_big_endian_twos_complement() -> None:
    data = encode_scores([1, -1, SCORE_ONE, REJECT, 0])
    assert data == bytes.fromhex("0001ffff2710d8f00000")
    assert decode_scores(data) == [1, -1, SCORE_ONE, REJECT, 0]
    assert encode_scores([]) == b""


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\x00", "odd length"),
        (bytes(2 * (MAX_UPDATES_PER_ROUND + 1)), "more than 112"),
        ((SCORE_ONE + 1).to_bytes(2, "big"), "outside"),
        ((-SCORE_ONE - 1).to_bytes(2, "big", signed=True), "outside"),
    ],
)
def test_untrusted_score_bytes_are_bounded_before_use(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidScores, match=fragment):
        decode_scores(data)


def test_out_of_range_scores_and_reasons_are_refused_naming_the_update() -> None:
    with pytest.raises(InvalidScores, match="update 1: score 10001") as info:
        encode_scores([0, SCORE_ONE + 1])
    assert info.value.index == 1
    with pytest.raises(InvalidScores, match="not a byte"):
        encode_reasons([0, 256])
    assert encode_reasons([0, 3]) == b"\x00\x03"
    assert decode_reasons(b"\x00\x03") == [0, 3]


def test_a_hard_reject_scores_minus_one() -> None:
    ScoreSheet.new([REJECT, 500], [4, 0])
    with pytest.raises(InvalidScores, match="update 0: reason 4 is a hard reject"):
        ScoreSheet.new([-9_999], [4])
    with pytest.raises(InvalidScores, match="one reason per update"):
        ScoreSheet.new([1, 2], [0])


def test_the_commitment_is_the_contract_encoding() -> None:
    scores, reasons, salt = [SCORE_ONE, REJECT], [0, 2], bytes(range(32))
    expected = keccak(
        abi_encode(
            ["uint256", "address", "uint256", "uint32", "address", "bytes32", "bytes32", "bytes32"],
            [31337, LEDGER, 1, 3, VALIDATOR, keccak(encode_scores(scores)), keccak(bytes(reasons)), salt],
        )
    )
    args: dict[str, Any] = {
        "chain_id": 31337,
        "ledger": LEDGER,
        "task_id": 1,
        "round_": 3,
        "validator": VALIDATOR,
    }
    assert score_commitment(**args, scores=scores, reasons=reasons, salt=salt) == expected
    # Every bound field changes it: another chain, round, validator, score or salt.
    for change in ({"chain_id": 1}, {"round_": 4}, {"validator": LEDGER}):
        assert score_commitment(**{**args, **change}, scores=scores, reasons=reasons, salt=salt) != expected
    assert score_commitment(**args, scores=[SCORE_ONE, REJECT + 1], reasons=[0, 0], salt=salt) != expected
    assert score_commitment(**args, scores=scores, reasons=reasons, salt=bytes(32)) != expected
    with pytest.raises(InvalidScores, match="salt is 3 bytes"):
        score_commitment(**args, scores=scores, reasons=reasons, salt=b"abc")


def test_a_sheet_has_a_fresh_salt_and_reason_zero_by_default() -> None:
    one, two = ScoreSheet.new([1, 2]), ScoreSheet.new([1, 2])
    assert one.reasons == (0, 0)
    assert one.salt != two.salt
    assert len(one.salt) == 32
    assert one.score_bytes == encode_scores([1, 2])


def test_a_sheet_round_trips_through_json_and_refuses_anything_else() -> None:
    sheet = ScoreSheet.new([REJECT, 1_234], [3, 0])
    assert ScoreSheet.from_json(sheet.to_json()) == sheet
    for bad, fragment in (
        ([], "exactly"),
        ({**sheet.to_json(), "extra": 1}, "exactly"),
        ({**sheet.to_json(), "salt": "0xzz"}, "not hex"),
        ({**sheet.to_json(), "salt": "0x12"}, "salt is 1 bytes"),
        ({**sheet.to_json(), "scores": [SCORE_ONE + 1, 0]}, "outside"),
        ({**sheet.to_json(), "scores": "1,2"}, "lists of integers"),
    ):
        with pytest.raises(InvalidScores, match=fragment):
            ScoreSheet.from_json(bad)
