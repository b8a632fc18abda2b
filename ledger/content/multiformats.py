"""CIDs as meshprov uses them: dag-pb, sha2-256, written as CIDv0 or CIDv1 (and the bare ``bytes32`` digest).

Every meshprov CID names a dag-pb node by its sha-256 digest, so the 32-byte digest is all the chain stores:

* CIDv0 = base58btc(0x12 0x20 || digest)                        ``Qm…``, 46 characters (what Kubo prints)
* CIDv1 = "b" + base32-lower(0x01 0x70 0x12 0x20 || digest)      ``bafybei…``, 59 characters

Parsing is strict: anything but a dag-pb sha2-256 CID is rejected with :class:`InvalidCID`, carrying the input
and a hint (a ``bafk…`` raw-leaves CID, for instance, names different bytes than Kubo's default import does).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from ledger.content.errors import InvalidCID

SHA2_256 = 0x12
DIGEST_LEN = 32
DAG_PB = 0x70
RAW = 0x55
CIDV1 = 0x01
MULTIHASH_PREFIX = bytes([SHA2_256, DIGEST_LEN])
CIDV1_PREFIX = bytes([CIDV1, DAG_PB, SHA2_256, DIGEST_LEN])

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}
# Longest text we try to decode: meshprov CIDs are at most 59 characters, CIDs of other hashes (which get a
# precise message) up to about 115; anything longer is refused before any work.
_MAX_CID_TEXT = 160
_CODEC_NAMES = {0x55: "raw", 0x71: "dag-cbor", 0x0129: "dag-json", 0x72: "libp2p-key", 0x78: "git-raw"}
_HASH_NAMES = {
    0x11: "sha1",
    0x13: "sha2-512",
    0x16: "sha3-256",
    0x1B: "keccak-256",
    0x1E: "blake3",
    0xB220: "blake2b-256",
}


def b58encode(data: bytes) -> str:
    """Base58btc (the Bitcoin alphabet), leading zero bytes as '1'."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, rem = divmod(n, 58)
        out.append(_B58_ALPHABET[rem])
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Inverse of :func:`b58encode`; ``ValueError`` on a character outside the alphabet."""
    n = 0
    for ch in text:
        digit = _B58_INDEX.get(ch)
        if digit is None:
            raise ValueError(f"{ch!r} is not a base58btc character")
        n = n * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def b32encode(data: bytes) -> str:
    """RFC 4648 base32, lower case, no padding (multibase 'b')."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def b32decode(text: str) -> bytes:
    """Inverse of :func:`b32encode` (either case); ``ValueError`` on bad characters or length."""
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        return base64.b32decode(padded)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 63, 7):
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise ValueError("varint too long")


@dataclass(frozen=True, slots=True)
class CID:
    """A dag-pb sha2-256 CID; equal CIDs have equal digests whatever version they were written in."""

    digest: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.digest, bytes) or len(self.digest) != DIGEST_LEN:
            raise InvalidCID(self.digest, f"a sha-256 digest is {DIGEST_LEN} bytes")

    @classmethod
    def parse(cls, text: str) -> CID:
        """Parse a CIDv0 (``Qm…``) or CIDv1 (``b…``/``B…`` base32, ``z…`` base58btc) dag-pb sha2-256 CID."""
        return cls(_parse_digest(text))

    @property
    def multihash(self) -> bytes:
        return MULTIHASH_PREFIX + self.digest

    @property
    def v0(self) -> str:
        return b58encode(self.multihash)

    @property
    def v1(self) -> str:
        return "b" + b32encode(CIDV1_PREFIX + self.digest)

    @property
    def hex(self) -> str:
        """The digest as ``0x``-prefixed hex, the way a ``bytes32`` prints."""
        return "0x" + self.digest.hex()

    def __str__(self) -> str:
        return self.v0


def _parse_digest(text: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidCID(text, f"expected a string, got {type(text).__name__}")
    if not text:
        raise InvalidCID(text, "empty string")
    if len(text) > _MAX_CID_TEXT:
        raise InvalidCID(text, f"{len(text)} characters is longer than any CID meshprov accepts")
    if text != text.strip():
        raise InvalidCID(text, "surrounding whitespace", hint="remove the spaces or newline around the CID")
    if text.startswith("Qm"):
        return _parse_v0(text)
    prefix, body = text[0], text[1:]
    try:
        if prefix in "bB":
            if body != (body.lower() if prefix == "b" else body.upper()):
                raise ValueError("mixed-case base32")
            raw = b32decode(body)
            canonical = b32encode(raw)
            if (canonical if prefix == "b" else canonical.upper()) != body:
                raise ValueError("non-canonical base32")
        elif prefix == "z":
            raw = b58decode(body)
        else:
            hint = None
            if len(text) == 46:
                hint = "a CIDv0 starts with 'Qm'; check that the whole CID was copied"
            raise InvalidCID(
                text,
                f"unsupported multibase prefix {prefix!r} (meshprov reads 'Qm…' CIDv0 and 'b'/'B'/'z' CIDv1)",
                hint=hint,
            )
    except ValueError as exc:
        if isinstance(exc, InvalidCID):
            raise
        raise InvalidCID(text, f"not valid multibase: {exc}") from None
    return _parse_v1_bytes(text, raw)


def _parse_v0(text: str) -> bytes:
    try:
        raw = b58decode(text)
    except ValueError as exc:
        raise InvalidCID(
            text, f"not base58btc: {exc}", hint="a CIDv0 uses base58btc (no 0, O, I or l)"
        ) from None
    if len(raw) != 2 + DIGEST_LEN or raw[:2] != MULTIHASH_PREFIX or len(text) != 46:
        raise InvalidCID(text, "not a sha2-256 multihash (a CIDv0 is 46 characters, 'Qm…')")
    return raw[2:]


def _parse_v1_bytes(text: str, raw: bytes) -> bytes:
    try:
        version, pos = _read_varint(raw, 0)
        codec, pos = _read_varint(raw, pos)
        hash_code, pos = _read_varint(raw, pos)
        length, pos = _read_varint(raw, pos)
    except ValueError as exc:
        raise InvalidCID(text, f"malformed CID bytes: {exc}") from None
    if version != 1:
        raise InvalidCID(text, f"CID version {version}; a multibase CID must be version 1")
    if codec != DAG_PB:
        name = _CODEC_NAMES.get(codec, hex(codec))
        hint = None
        if codec == RAW:
            hint = (
                "this is a raw-leaves CID (Kubo's `--cid-version=1` default) of different bytes than the dag-pb "
                "DAG meshprov anchors: add the file with `ipfs add --cid-version=0` (or --raw-leaves=false)"
            )
        raise InvalidCID(text, f"codec {name}; meshprov CIDs are dag-pb (0x70)", hint=hint)
    if hash_code != SHA2_256:
        name = _HASH_NAMES.get(hash_code, hex(hash_code))
        raise InvalidCID(
            text,
            f"hash function {name}; meshprov CIDs use sha2-256",
            hint="add the file with Kubo's default hash",
        )
    if length != DIGEST_LEN or len(raw) - pos != DIGEST_LEN:
        raise InvalidCID(
            text, f"digest of {len(raw) - pos} bytes (declared {length}); sha2-256 digests are 32 bytes"
        )
    return raw[pos:]


def parse_cid(text: str) -> CID:
    """Parse any accepted CID string (see :meth:`CID.parse`)."""
    return CID.parse(text)


def cid_to_digest(cid: str) -> bytes:
    """The 32-byte sha-256 digest (the on-chain ``bytes32``) inside a CIDv0 or CIDv1 string."""
    return CID.parse(cid).digest


def digest_to_cid(digest: bytes | bytearray | memoryview | str, *, v1: bool = False) -> str:
    """The CID string (CIDv0 unless ``v1``) for an on-chain ``bytes32`` digest (bytes, or ``0x`` hex)."""
    if isinstance(digest, str):
        hex_text = digest[2:] if digest[:2] in ("0x", "0X") else digest
        if len(hex_text) != 2 * DIGEST_LEN:
            raise InvalidCID(digest, f"a bytes32 digest is {2 * DIGEST_LEN} hex digits, got {len(hex_text)}")
        try:
            raw = bytes.fromhex(hex_text)
        except ValueError:
            raise InvalidCID(digest, "not hexadecimal") from None
    elif isinstance(digest, bytes | bytearray | memoryview):
        raw = bytes(digest)
        if len(raw) != DIGEST_LEN:
            raise InvalidCID(raw.hex(), f"a bytes32 digest is {DIGEST_LEN} bytes, got {len(raw)}")
    else:
        raise InvalidCID(digest, f"expected bytes or hex, got {type(digest).__name__}")
    cid = CID(raw)
    return cid.v1 if v1 else cid.v0


def to_v0(cid: str) -> str:
    """Normalise any accepted CID string to CIDv0."""
    return CID.parse(cid).v0
