"""The reference importer (tests/support/unixfs_reference.py) against the CIDs a real Kubo computed."""

from __future__ import annotations

import hashlib

import pytest

from tests.support.unixfs_reference import VECTOR_NAMES, load_vectors, reference_import, vector_bytes


def test_vectors_file_has_the_boundaries_we_rely_on() -> None:
    sizes = {int(v["size"]) for v in load_vectors()}
    assert {0, 1, 262143, 262144, 262145, 174 * 262144} <= sizes


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_vector_bytes_match_their_recorded_sha256(name: str) -> None:
    vector = next(v for v in load_vectors() if v["name"] == name)
    data = vector_bytes(name)
    assert len(data) == vector["size"]
    if "sha256" in vector:
        assert hashlib.sha256(data).hexdigest() == vector["sha256"]


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_reference_matches_kubo(name: str) -> None:
    vector = next(v for v in load_vectors() if v["name"] == name)
    assert reference_import(vector_bytes(name)).cid == vector["cid_v0"]


def test_reference_hello_world_block_is_the_known_20_bytes() -> None:
    dag = reference_import(b"hello world\n")
    assert dag.blocks[dag.root.digest] == b"\x0a\x12\x08\x02\x12\x0chello world\n\x18\x0c"
    assert dag.root.tsize == 20
