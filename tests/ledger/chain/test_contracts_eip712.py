"""EIP-712 parity: the ledger's typed-data hash is eth-account's ``encode_typed_data`` digest for the same message,
and a signature made with eth-account is what the contract accepts (on a real anvil)."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak
from web3.exceptions import ContractLogicError

from ledger.chain.artifacts import load_artifact

pytestmark = pytest.mark.anvil

SUBMISSION_TYPE = [
    {"name": "taskId", "type": "uint256"},
    {"name": "round", "type": "uint32"},
    {"name": "digest", "type": "bytes32"},
    {"name": "numSamples", "type": "uint64"},
    {"name": "nonce", "type": "uint64"},
    {"name": "deadline", "type": "uint64"},
]
DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


def deploy(w3: Any, admin: str) -> tuple[Any, Any]:
    token_art, ledger_art = load_artifact("MeshToken"), load_artifact("MeshLedger")
    library = load_artifact("RoundSettlement")

    def send(fn: Any) -> Any:
        return w3.eth.wait_for_transaction_receipt(fn.transact({"from": admin}))

    def create(art: Any, bytecode: str, *args: Any) -> str:
        return str(
            send(w3.eth.contract(abi=art.abi, bytecode=bytecode).constructor(*args))["contractAddress"]
        )

    token_address = create(token_art, token_art.bytecode)
    linked = ledger_art.linked_bytecode({"RoundSettlement": create(library, library.bytecode)})
    ledger = w3.eth.contract(address=create(ledger_art, linked, admin, token_address, 60), abi=ledger_art.abi)
    token = w3.eth.contract(address=token_address, abi=token_art.abi)
    send(token.functions.setMinter(ledger.address))
    return ledger, send


def typed(ledger: Any, w3: Any, message: dict[str, Any]) -> dict[str, Any]:
    return {
        "types": {"EIP712Domain": DOMAIN_TYPE, "Submission": SUBMISSION_TYPE},
        "primaryType": "Submission",
        "domain": {
            "name": "MeshLedger",
            "version": "2",
            "chainId": w3.eth.chain_id,
            "verifyingContract": ledger.address,
        },
        "message": message,
    }


def eip712_digest(full_message: dict[str, Any]) -> bytes:
    signable = encode_typed_data(full_message=full_message)
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def sample_messages(count: int) -> list[dict[str, Any]]:
    """Edge values of every field, then seeded random messages."""
    rng = random.Random(712)
    widths = {"taskId": 256, "round": 32, "numSamples": 64, "nonce": 64, "deadline": 64}
    out = [
        {**{k: 0 for k in widths}, "digest": bytes(32)},
        {**{k: 2**w - 1 for k, w in widths.items()}, "digest": b"\xff" * 32},
        {**{k: 1 for k in widths}, "digest": hashlib.sha256(b"x").digest()},
    ]
    for _ in range(count - len(out)):
        out.append(
            {
                **{k: rng.getrandbits(rng.choice([8, w])) for k, w in widths.items()},
                "digest": rng.randbytes(32),
            }
        )
    return out


def test_contract_hash_equals_eth_account_digest(w3: Any, dev_keys: list[tuple[str, str]]) -> None:
    ledger, _ = deploy(w3, dev_keys[0][0])
    for message in sample_messages(40):
        on_chain = ledger.functions.hashSubmission(
            message["taskId"],
            message["round"],
            message["digest"],
            message["numSamples"],
            message["nonce"],
            message["deadline"],
        ).call()
        assert on_chain == eip712_digest(typed(ledger, w3, message)), message


def test_domain_is_what_eth_account_signs_in(w3: Any, dev_keys: list[tuple[str, str]]) -> None:
    ledger, _ = deploy(w3, dev_keys[0][0])
    fields, name, version, chain_id, verifying, salt, extensions = ledger.functions.eip712Domain().call()
    assert fields == b"\x0f"  # name, version, chainId, verifyingContract
    assert (name, version, chain_id, verifying) == ("MeshLedger", "2", w3.eth.chain_id, ledger.address)
    assert salt == bytes(32)
    assert extensions == []
    type_string = "Submission(uint256 taskId,uint32 round,bytes32 digest,uint64 numSamples,uint64 nonce,uint64 deadline)"
    assert ledger.functions.SUBMISSION_TYPEHASH().call() == keccak(text=type_string)


def test_signature_from_eth_account_is_accepted_and_a_forged_one_is_not(
    w3: Any, dev_keys: list[tuple[str, str]]
) -> None:
    admin = dev_keys[0][0]
    ledger, send = deploy(w3, admin)
    contributor = Account.from_key(dev_keys[5][1])
    for member in (contributor.address, dev_keys[6][0]):
        send(ledger.functions.grantRole(ledger.functions.CONTRIBUTOR_ROLE().call(), member))
    send(ledger.functions.grantRole(ledger.functions.VALIDATOR_ROLE().call(), dev_keys[7][0]))
    params = (keccak(text="spec"), keccak(text="genesis"), 0, 0, 1, 600, 300, 300, 600, 1_000, 0)
    send(ledger.functions.createTask(params))
    message = {
        "taskId": 1,
        "round": 1,
        "digest": hashlib.sha256(b"an update").digest(),
        "numSamples": 123,
        "nonce": 0,
        "deadline": w3.eth.get_block("latest")["timestamp"] + 60,
    }
    signed = Account.sign_message(encode_typed_data(full_message=typed(ledger, w3, message)), contributor.key)
    sub = (
        contributor.address,
        message["digest"],
        message["numSamples"],
        message["nonce"],
        message["deadline"],
        signed.v,
        signed.r.to_bytes(32, "big"),
        signed.s.to_bytes(32, "big"),
    )
    forged = (dev_keys[6][0], *sub[1:])  # the same signature claimed for another member
    with pytest.raises(ContractLogicError) as info:
        ledger.functions.submitUpdateFor(1, 1, forged).call({"from": admin})
    selector = keccak(text="MeshLedger_InvalidSignature(address,address)")[:4]
    assert str(info.value.data).startswith("0x" + selector.hex())
    receipt = send(ledger.functions.submitUpdateFor(1, 1, sub))
    assert receipt["status"] == 1
    assert ledger.functions.submission(1, 1, 0).call() == [contributor.address, 123]
    assert ledger.functions.nonces(contributor.address).call() == 1
