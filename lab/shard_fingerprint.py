"""A digest of a training set's samples, to tell whether a recipe's ``data()`` gave two members the same shard.

Samples are whatever a recipe's Dataset returns: tensors, numpy arrays, numbers, nested tuples, lists or dicts of
them. The digest covers the length and up to :data:`SAMPLED` samples spread over the set, each leaf by dtype,
shape and bytes (anything else by ``repr``): equal shards give equal digests, and two shards that differ in any
sampled position differ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

SAMPLED = 64
"""Samples read per shard: enough to tell shards apart, cheap for a shard of any size."""


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, Mapping):
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode())
            _feed(digest, value[key])
    elif isinstance(value, tuple | list):
        digest.update(f"[{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    elif hasattr(value, "detach") or isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    else:
        digest.update(repr(value).encode())


def fingerprint(data: Any) -> str:
    """The digest of ``data`` (a Dataset with a length): its length and up to :data:`SAMPLED` samples."""
    n = len(data)
    digest = hashlib.sha256(f"{n}".encode())
    for i in sorted({k * n // SAMPLED for k in range(SAMPLED)} if n else set()):
        _feed(digest, data[i])
    return digest.hexdigest()
