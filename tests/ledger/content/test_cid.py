"""The streaming importer against real Kubo vectors and the reference importer; CID parsing and formatting."""

from __future__ import annotations

import hashlib
import io
import random
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.content import cid_of_bytes, cid_of_file, import_file, import_stream
from ledger.content.multiformats import CID, b58decode, b58encode, cid_to_digest, digest_to_cid
from ledger.content.unixfs import CHUNK_SIZE, MAX_LINKS, DagBuilder, UnixfsHasher, import_bytes
from tests.support.unixfs_reference import VECTOR_NAMES, load_vectors, reference_import, vector_bytes

C = CHUNK_SIZE
HELLO_V0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
HELLO_V1 = "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"


def expected(name: str) -> str:
    return str(next(v for v in load_vectors() if v["name"] == name)["cid_v0"])


class ShortReads(io.RawIOBase):
    """A stream that returns fewer bytes than asked, at random: the importer must still cut exact chunks."""

    def __init__(self, data: bytes, seed: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._rng = random.Random(seed)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), len(self._data) - self._pos, self._rng.randint(1, 3 * C))
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


class Pattern(io.RawIOBase):
    """``size`` bytes of a repeating pattern, produced on demand (nothing held in memory)."""

    BLOCK = bytes(range(256)) * 256

    def __init__(self, size: int) -> None:
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left, len(self.BLOCK))
        buffer[:n] = self.BLOCK[:n]
        self._left -= n
        return n


# --- real Kubo vectors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", VECTOR_NAMES)
@pytest.mark.parametrize("workers", [1, 2])
def test_file_import_matches_kubo_vector(name: str, workers: int, tmp_path: Path) -> None:
    path = tmp_path / "content"
    path.write_bytes(vector_bytes(name))
    assert cid_of_file(path, workers=workers) == expected(name)


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_push_hasher_matches_kubo_vector_with_odd_update_sizes(name: str) -> None:
    data = vector_bytes(name)
    hasher = UnixfsHasher()
    rng = random.Random(name)
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 7, C - 1, C, C + 1, 3 * C + 5])
        hasher.update(data[pos : pos + step])
        pos += step
    result = hasher.finish()
    assert result.cid == expected(name)
    assert result.size == len(data)
    assert cid_of_bytes(data) == expected(name)


def test_single_chunk_file_is_one_leaf_and_empty_file_has_kubos_cid() -> None:
    assert import_bytes(b"x" * C).blocks == 1
    assert import_bytes(b"x" * (C + 1)).blocks == 3
    assert import_bytes(b"").cid == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    assert import_bytes(b"").cid == expected("empty")


def test_v1_string_names_the_same_dag() -> None:
    result = import_bytes(b"hello world\n")
    assert result.cid == HELLO_V0
    assert result.cid_v1 == HELLO_V1
    assert cid_of_bytes(b"hello world\n", v1=True) == HELLO_V1


# --- differential: streaming importer vs the reference -------------------------------------------------------
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.integers(0, 6),
    offset=st.integers(-3, 3),
    seed=st.integers(0, 2**32),
    workers=st.sampled_from([1, 2, 3]),
)
def test_streaming_matches_reference_around_chunk_boundaries(
    chunks: int, offset: int, seed: int, workers: int
) -> None:
    size = max(0, chunks * C + offset)
    data = random.Random(seed).randbytes(size)
    ref = reference_import(data)
    result = import_stream(ShortReads(data, seed), workers=workers)
    assert result.digest == ref.root.digest
    assert (result.size, result.dag_size) == (size, ref.root.tsize)


@pytest.mark.parametrize("size", [173 * C + 5, 174 * C - 1, 174 * C + 1, 175 * C])
def test_streaming_matches_reference_around_the_first_level_boundary(size: int, tmp_path: Path) -> None:
    data = random.Random(size).randbytes(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    ref = reference_import(data)
    assert import_file(path, workers=2).digest == ref.root.digest
    assert import_bytes(data).digest == ref.root.digest


@settings(max_examples=300, deadline=None)
@given(
    chunk_size=st.integers(1, 5),
    max_links=st.integers(2, 4),
    data=st.data(),
    workers=st.sampled_from([1, 2]),
)
def test_tree_shape_matches_reference_over_several_levels(
    chunk_size: int, max_links: int, data: st.DataObject, workers: int
) -> None:
    # Small chunks and fan-out reach 3-4 levels in a few hundred bytes, so every level boundary (full levels,
    # one more leaf, a lone leaf wrapped at each depth) is exercised, which 174-link trees cannot do in a test.
    levels = data.draw(st.integers(0, 4))
    boundary = chunk_size * max_links**levels
    size = max(0, boundary + data.draw(st.integers(-chunk_size - 1, chunk_size + 1)))
    content = data.draw(st.binary(min_size=size, max_size=size))
    ref = reference_import(content, chunk_size=chunk_size, max_links=max_links)
    seen: dict[bytes, bytes] = {}

    def sink(digest: bytes, parts: object) -> None:
        block = b"".join(bytes(p) for p in parts)  # type: ignore[attr-defined]
        assert hashlib.sha256(block).digest() == digest
        seen[digest] = block

    result = import_stream(
        io.BytesIO(content), workers=workers, on_block=sink, chunk_size=chunk_size, max_links=max_links
    )
    assert result.digest == ref.root.digest
    assert seen == ref.blocks
    pushed = import_bytes(content, chunk_size=chunk_size, max_links=max_links)
    assert pushed.digest == ref.root.digest


def test_blocks_arrive_children_first_and_root_last() -> None:
    order: list[bytes] = []
    result = import_bytes(b"a" * (3 * C), on_block=lambda d, parts: order.append(d))
    assert len(order) == 4
    assert order[-1] == result.digest


def test_leaf_blocks_are_handed_over_without_copying_the_chunk() -> None:
    shapes: list[tuple[type, ...]] = []
    import_stream(
        io.BytesIO(b"z" * (2 * C)), on_block=lambda d, parts: shapes.append(tuple(map(type, parts)))
    )
    # Two leaves (prefix, a view of the chunk in the read buffer, suffix), then the root as one block.
    assert shapes == [(bytes, memoryview, bytes), (bytes, memoryview, bytes), (bytes,)]


@pytest.mark.parametrize(("workers", "limit_mib"), [(1, 8), (2, 32)])
def test_import_memory_is_bounded_whatever_the_size(workers: int, limit_mib: int) -> None:
    tracemalloc.start()
    try:
        result = import_stream(Pattern(96 * 1024 * 1024), workers=workers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.size == 96 * 1024 * 1024
    assert peak < limit_mib * 1024 * 1024


def test_dag_builder_rejects_a_fan_out_below_two_and_import_rejects_no_workers() -> None:
    with pytest.raises(ValueError, match="max_links"):
        DagBuilder(max_links=1)
    with pytest.raises(ValueError, match="workers"):
        import_stream(io.BytesIO(b""), workers=0)
    assert MAX_LINKS == 174


# --- CID strings and digests ---------------------------------------------------------------------------------
def test_hello_world_cid_in_every_accepted_form() -> None:
    digest = cid_to_digest(HELLO_V0)
    assert digest.hex() == "46d44814b9c5af141c3aaab7c05dc5e844ead5f91f12858b021eba45768b4c0e"
    assert cid_to_digest(HELLO_V1) == digest
    assert cid_to_digest(HELLO_V1.upper()) == digest
    assert cid_to_digest("z" + b58encode(bytes([1, 0x70, 0x12, 0x20]) + digest)) == digest
    assert digest_to_cid(digest) == HELLO_V0
    assert digest_to_cid(digest, v1=True) == HELLO_V1
    assert digest_to_cid("0x" + digest.hex()) == HELLO_V0
    assert digest_to_cid(digest.hex()) == HELLO_V0
    assert CID.parse(HELLO_V1) == CID.parse(HELLO_V0)
    assert str(CID(digest)) == HELLO_V0
    assert CID(digest).hex == "0x" + digest.hex()


@given(st.binary(min_size=32, max_size=32))
def test_digest_round_trips_through_both_versions(digest: bytes) -> None:
    v0 = digest_to_cid(digest)
    v1 = digest_to_cid(digest, v1=True)
    assert (len(v0), v0[:2]) == (46, "Qm")
    assert (len(v1), v1[:7]) == (59, "bafybei")
    assert cid_to_digest(v0) == digest == cid_to_digest(v1)


@given(st.binary(max_size=40))
def test_base58_round_trips_with_leading_zeros(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


def _v1(prefix: bytes, digest: bytes) -> str:
    import base64

    return "b" + base64.b32encode(prefix + digest).decode().rstrip("=").lower()


HELLO_DIGEST = hashlib.sha256(b"\x0a\x12\x08\x02\x12\x0chello world\n\x18\x0c").digest()
RAW_HELLO = _v1(b"\x01\x55\x12\x20", hashlib.sha256(b"hello world\n").digest())


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        (" " + HELLO_V0, "whitespace"),
        (HELLO_V0 + "\n", "whitespace"),
        ("Q" * 500, "longer than any CID"),
        (HELLO_V0[:-1], "sha2-256 multihash"),
        (HELLO_V0[:-1] + "0", "base58btc"),
        (RAW_HELLO, "codec raw"),
        (_v1(b"\x01\x71\x12\x20", HELLO_DIGEST), "codec dag-cbor"),
        (_v1(b"\x01\x70\x13\x40", HELLO_DIGEST * 2), "hash function sha2-512"),
        (_v1(b"\x01\x70\x12\x20", HELLO_DIGEST[:31]), "digest of 31 bytes"),
        (_v1(b"\x02\x70\x12\x20", HELLO_DIGEST), "CID version 2"),
        (_v1(b"\x01\x70\x12", b""), "truncated varint"),
        (HELLO_V1[:10] + HELLO_V1[10:].upper(), "mixed-case"),
        ("b" + "1" * 10, "multibase"),
        ("m" + "A" * 40, "unsupported multibase prefix 'm'"),
        ("x" * 46, "unsupported multibase prefix"),
    ],
)
def test_bad_cid_strings_raise_invalid_cid_naming_the_input(text: str, problem: str) -> None:
    from ledger.content import InvalidCID
    from ledger.exit_codes import ExitCode

    with pytest.raises(InvalidCID) as caught:
        cid_to_digest(text)
    assert problem in caught.value.problem
    assert caught.value.value == text
    assert caught.value.hint
    assert caught.value.exit_code == ExitCode.USAGE
    shown = text if len(text) <= 120 else text[:120]
    assert repr(shown)[:-1] in caught.value.message


def test_raw_leaves_cid_gets_a_hint_about_kubo_settings() -> None:
    from ledger.content import InvalidCID

    with pytest.raises(InvalidCID) as caught:
        CID.parse(RAW_HELLO)
    assert "--cid-version=0" in (caught.value.hint or "")


@pytest.mark.parametrize("value", [b"\x00" * 31, b"\x00" * 33, "0x" + "ab" * 31, "zz" * 32, 12345])
def test_bad_digests_raise_invalid_cid(value: object) -> None:
    from ledger.content import InvalidCID

    with pytest.raises(InvalidCID):
        digest_to_cid(value)  # type: ignore[arg-type]


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_arbitrary_text_parses_or_raises_invalid_cid_only(text: str) -> None:
    from ledger.content import InvalidCID

    try:
        parsed = CID.parse(text)
    except InvalidCID:
        return
    assert text in (parsed.v0, parsed.v1, parsed.v1.upper()) or text.startswith("z")


@pytest.mark.parametrize("buffering", [0, -1])
def test_a_file_read_from_its_current_position_with_several_threads(buffering: int, tmp_path: Path) -> None:
    data = random.Random(11).randbytes(40 * C + 123)
    path = tmp_path / "f"
    path.write_bytes(b"HEADER" + data)
    with open(path, "rb", buffering=buffering) as f:
        assert f.read(6) == b"HEADER"
        result = import_stream(f, workers=2)
        assert f.read() == b""  # the whole rest was consumed
    assert result.digest == reference_import(data).root.digest
    assert result.size == len(data)


def test_verify_file_against_a_cid_or_a_chain_digest(tmp_path: Path) -> None:
    from ledger.content import CidMismatch, verify_file
    from ledger.reasons import Reason

    path = tmp_path / "u"
    path.write_bytes(b"hello world\n")
    digest = cid_to_digest(HELLO_V0)
    assert verify_file(path, digest).cid == HELLO_V0
    assert verify_file(path, HELLO_V1).size == 12
    path.write_bytes(b"hello world!")
    with pytest.raises(CidMismatch) as caught:
        verify_file(path, digest)
    assert caught.value.reason == Reason.CID_MISMATCH
    assert caught.value.expected == HELLO_V0
