"""What a member records about the code and data behind its updates: the dataset manifest it keeps (whose sha-256
goes in every update's metadata as ``dataset``) and the framework versions (``frameworks``).

The dataset manifest (canonical JSON, kept in ``<data_dir>/node/<address>/datasets/<sha256>.json``)::

    {"schema": 1, "kind": "dataset-manifest", "hash": "meshprov-dataset-v1",
     "recipe": {"name", "version", "cid"}, "source": "recipe" | "hook MODULE:FUNCTION" | "sdk",
     "member": int, "members": int, "seed": int,
     "train": {"examples": n, "sha256": hex}}

``train.sha256`` is :func:`dataset_sha256` of the training examples, in the order the dataset yields them. The
commitment in the metadata is ``"0x" + sha256(manifest bytes)``: the member can later show the manifest (and, to
an auditor it trusts, the data) and anyone can check both hashes, while the chain and the store see neither.

``meshprov-dataset-v1``, the hash over examples: sha-256 of ``b"meshprov-dataset-v1\\n"`` followed by, for each
example, the number of its fields (4 bytes, big-endian), then for each field (a tensor, array or Python number) as
a C-contiguous numpy array (bfloat16 as its uint16 bit patterns): the header ``f"{dtype.str} {shape}"`` in UTF-8
(``shape`` as comma-separated integers, empty for a scalar) and then the raw bytes, each preceded by its length
(8 bytes, big-endian). Same examples, same bytes, same hash, whatever the Dataset class holding them.
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ledger.recipe import RecipeRef
from ledger.updatefile import canonical_json

DATASET_HASH = "meshprov-dataset-v1"
MANIFEST_SCHEMA = 1


def _field_array(value: Any) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(np.uint16)
        return t.numpy()
    return np.asarray(value)


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def _header(array: np.ndarray) -> bytes:
    return _frame(f"{array.dtype.str} {','.join(str(d) for d in array.shape)}".encode())


def dataset_sha256(data: Any) -> tuple[int, str]:
    """(number of examples, hex sha-256 of ``meshprov-dataset-v1``) of a torch Dataset of tuples (x, y, …)."""
    from torch.utils.data import TensorDataset

    h = hashlib.sha256(f"{DATASET_HASH}\n".encode())
    n = len(data)
    if isinstance(data, TensorDataset):
        # Rows of the stored tensors are exactly the examples: hash them without building each tuple.
        columns = [np.ascontiguousarray(_field_array(t)) for t in data.tensors]
        count = len(columns).to_bytes(4, "big")
        headers = [_header(np.ascontiguousarray(c[0])) if len(c) else b"" for c in columns]
        for i in range(n):
            h.update(count)
            for column, header in zip(columns, headers, strict=True):
                row = np.ascontiguousarray(column[i])
                h.update(header)
                h.update(_frame(row.tobytes()))
        return n, h.hexdigest()
    for i in range(n):
        example = data[i]
        fields = example if isinstance(example, tuple | list) else (example,)
        h.update(len(fields).to_bytes(4, "big"))
        for value in fields:
            array = np.ascontiguousarray(_field_array(value))
            h.update(_header(array))
            h.update(_frame(array.tobytes()))
    return n, h.hexdigest()


def dataset_manifest(
    data: Any, *, recipe: RecipeRef | None, source: str, member: int, members: int, seed: int
) -> dict[str, Any]:
    """The manifest of the member's training data (module docstring)."""
    examples, digest = dataset_sha256(data)
    return {
        "schema": MANIFEST_SCHEMA,
        "kind": "dataset-manifest",
        "hash": DATASET_HASH,
        "recipe": recipe.to_dict() if recipe is not None else None,
        "source": source,
        "member": member,
        "members": members,
        "seed": seed,
        "train": {"examples": examples, "sha256": digest},
    }


def manifest_commitment(manifest: Mapping[str, Any]) -> str:
    """``"0x" + sha256`` of the manifest's canonical JSON: the update metadata's ``dataset``."""
    return "0x" + hashlib.sha256(canonical_json(dict(manifest)).encode()).hexdigest()


def keep_manifest(directory: Path, manifest: Mapping[str, Any]) -> tuple[Path, str]:
    """Write the manifest as ``<directory>/<sha256>.json`` (atomically; kept for good, since updates name it) and
    return its path and commitment."""
    commitment = manifest_commitment(manifest)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{commitment[2:]}.json"
    if not path.is_file():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
        with os.fdopen(fd, "w") as out:
            out.write(canonical_json(dict(manifest)))
        os.replace(tmp, path)
    return path, commitment


def frameworks() -> dict[str, str]:
    """The versions recorded in each update's metadata: python, torch, numpy, meshprov."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:
        meshprov = version("meshprov")
    except PackageNotFoundError:  # a source tree that was never installed
        meshprov = "unknown"
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "meshprov": meshprov,
    }
