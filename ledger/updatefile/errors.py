"""Errors raised while reading or writing update and aggregate files.

MeshprovError
└── UpdateFileError                     root of everything in ``ledger.updatefile``
    ├── FileRejected (ValueError)       the bytes are not an acceptable file; ``reason`` is the verdict code
    │   ├── HeaderRejected              the safetensors header failed the pre-parser
    │   └── MetadataRejected            the ``meshprov`` metadata is missing, not canonical or invalid
    └── InvalidTensors (ValueError)     the writer was given tensors it cannot store
"""

from __future__ import annotations

from ledger.errors import MeshprovError
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason


class UpdateFileError(MeshprovError):
    """Root of the update-file errors."""


class FileRejected(UpdateFileError, ValueError):
    """A file a validator must reject, with the stable reason code it records on chain."""

    exit_code = ExitCode.REJECTED

    def __init__(self, reason: Reason, detail: str, *, source: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}rejected ({reason.slug}, code {int(reason)}): {detail}", hint=reason.help)


class HeaderRejected(FileRejected):
    """The safetensors header is unsafe or malformed (raised before safetensors or numpy see the bytes)."""


class MetadataRejected(FileRejected):
    """The ``meshprov`` metadata is missing, not canonical JSON, or has missing, extra or invalid fields."""

    def __init__(self, detail: str, *, source: str | None = None) -> None:
        super().__init__(Reason.BAD_METADATA, detail, source=source)


class InvalidTensors(UpdateFileError, ValueError):
    """Tensors the writer cannot store (a dtype safetensors lacks, a reserved or duplicate name, a bad shape)."""

    exit_code = ExitCode.ERROR

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"tensor {key!r}: {problem}")
