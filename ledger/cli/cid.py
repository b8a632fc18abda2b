"""`meshprov cid FILE`: the CID `ipfs add --only-hash -Q FILE` prints, computed without any IPFS node."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from ledger.cli.output import JsonFlag, emit, want_json
from ledger.cli.store import input_file, progress_bar

if TYPE_CHECKING:
    from ledger.content.unixfs import Readable


def cid_command(
    file: Annotated[Path, typer.Argument(help="File to hash ('-' for standard input).", show_default=False)],
    v1: Annotated[bool, typer.Option("--v1", help="Print the CIDv1 (base32) of the same DAG.")] = False,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Hashing threads (default: one per core).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Print a file's CID as `ipfs add --only-hash -Q` would (Kubo defaults: CIDv0, dag-pb, 256 KiB chunks)."""
    from ledger.content.multiformats import CID
    from ledger.content.unixfs import import_file, import_stream

    if str(file) == "-":
        result = import_stream(cast("Readable", sys.stdin.buffer), workers=workers)
        name = "-"
    else:
        size = input_file(file)
        with progress_bar(size, f"cid {file.name}") as progress:
            result = import_file(file, workers=workers, progress=progress)
        name = str(file)
    parsed = CID(result.digest)
    data = {"cid": parsed.v0, "cid_v1": parsed.v1, "digest": parsed.hex, "size": result.size, "file": name}
    shown = parsed.v1 if v1 else parsed.v0
    emit(data, json_mode=want_json(json_output), human=lambda console: console.print(shown, highlight=False))
