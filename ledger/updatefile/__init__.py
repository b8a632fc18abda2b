"""Update, aggregate and genesis files: safetensors with one canonical ``meshprov`` metadata key.

* :mod:`~ledger.updatefile.format`: :func:`write_update`, :func:`write_aggregate`, :func:`open_writer` (streaming)
  and :class:`UpdateFile` (validated, memory-mapped reading).
* :mod:`~ledger.updatefile.header`: :func:`read_header`, the bounded pre-parser, and :class:`HeaderLimits`.
* :mod:`~ledger.updatefile.metadata`: :class:`UpdateMeta`, :class:`AggregateMeta`, :class:`GenesisMeta`.
* :mod:`~ledger.updatefile.canonical`: canonical JSON.
* :mod:`~ledger.updatefile.dtypes`: accepted dtypes, bfloat16 helpers.
* :mod:`~ledger.updatefile.deltas`: what an update holds per dtype (:func:`state_delta`, :func:`apply_state_delta`).
* :mod:`~ledger.updatefile.errors`: :class:`HeaderRejected`, :class:`MetadataRejected` (both carry ``reason``).

See docs/content.md.
"""

from __future__ import annotations

from ledger.updatefile.canonical import NotCanonical, canonical_json, parse_canonical
from ledger.updatefile.deltas import apply_state_delta, file_tensors, state_delta
from ledger.updatefile.dtypes import BF16, DTYPES, bf16_to_float32, float32_to_bf16, float64_to_bf16
from ledger.updatefile.errors import (
    FileRejected,
    HeaderRejected,
    InvalidTensors,
    MetadataRejected,
    UpdateFileError,
)
from ledger.updatefile.format import (
    TensorSpec,
    TensorWriter,
    UpdateFile,
    WrittenFile,
    encode,
    open_writer,
    write_aggregate,
    write_file,
    write_update,
)
from ledger.updatefile.header import DEFAULT_LIMITS, Header, HeaderLimits, TensorInfo, read_header
from ledger.updatefile.metadata import (
    SCHEMA_VERSION,
    AggregateMeta,
    GenesisMeta,
    Metadata,
    UpdateMeta,
    parse_metadata,
)

__all__ = [
    "BF16",
    "DEFAULT_LIMITS",
    "DTYPES",
    "SCHEMA_VERSION",
    "AggregateMeta",
    "FileRejected",
    "GenesisMeta",
    "Header",
    "HeaderLimits",
    "HeaderRejected",
    "InvalidTensors",
    "Metadata",
    "MetadataRejected",
    "NotCanonical",
    "TensorInfo",
    "TensorSpec",
    "TensorWriter",
    "UpdateFile",
    "UpdateFileError",
    "UpdateMeta",
    "WrittenFile",
    "apply_state_delta",
    "bf16_to_float32",
    "canonical_json",
    "encode",
    "file_tensors",
    "float32_to_bf16",
    "float64_to_bf16",
    "open_writer",
    "parse_canonical",
    "parse_metadata",
    "read_header",
    "state_delta",
    "write_aggregate",
    "write_file",
    "write_update",
]
