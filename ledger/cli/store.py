"""`meshprov store put | get | pin | stat | has | serve`: content in the configured store (local blocks or Kubo)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from ledger.cli.output import JsonFlag, emit, info, want_json
from ledger.cli.state import settings as load_settings
from ledger.errors import MeshprovError, NotFound
from ledger.exit_codes import ExitCode

if TYPE_CHECKING:
    from ledger.content.store import ContentStore

app = typer.Typer(no_args_is_help=True)

PROGRESS_MIN_BYTES = 8 * 1024 * 1024
"""Files smaller than this get no progress bar: they are done before one would be drawn."""

StoreOpt = Annotated[
    Literal["local", "kubo"] | None,
    typer.Option("--store", help="Content store (overrides the `store` setting).", show_default=False),
]
StoreDirOpt = Annotated[
    Path | None,
    typer.Option("--store-dir", help="Local block directory (overrides `store_dir`).", show_default=False),
]
KuboOpt = Annotated[
    str | None,
    typer.Option("--kubo-api-url", help="Kubo RPC API URL (overrides `kubo_api_url`).", show_default=False),
]
CidArg = Annotated[str, typer.Argument(help="CIDv0 (Qm…) or CIDv1 (bafy…).", show_default=False)]


@contextlib.contextmanager
def progress_bar(total: int | None, description: str) -> Iterator[Callable[[int], None] | None]:
    """A byte progress bar on stderr for large transfers (none below :data:`PROGRESS_MIN_BYTES`)."""
    if total is None or total < PROGRESS_MIN_BYTES:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from ledger.cli.output import stderr

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def input_file(path: Path) -> int:
    """Size of a regular file to read, or a clear error for what is not one."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise NotFound(f"no such file: {path}", hint="check the path") from None
    except OSError as exc:
        raise MeshprovError(f"cannot read {path}: {exc.strerror}") from None
    if path.is_dir():
        raise MeshprovError(f"{path} is a directory", hint="meshprov addresses single files; pass a file")
    if not os.access(path, os.R_OK):
        raise MeshprovError(f"cannot read {path}: permission denied")
    return st.st_size


@contextlib.contextmanager
def configured_store(
    store: str | None, store_dir: Path | None, kubo_api_url: str | None
) -> Iterator[ContentStore]:
    """The store the settings (and these flags) name, closed when the command is done with it."""
    from ledger.content import open_store

    backend = open_store(load_settings(store=store, store_dir=store_dir, kubo_api_url=kubo_api_url))
    try:
        yield backend
    finally:
        backend.close()


def _parse(cid: str) -> str:
    from ledger.content.multiformats import CID

    return CID.parse(cid).v0


@app.command()
def put(
    file: Annotated[Path, typer.Argument(help="File to add.", show_default=False)],
    store: StoreOpt = None,
    store_dir: StoreDirOpt = None,
    kubo_api_url: KuboOpt = None,
    json_output: JsonFlag = False,
) -> None:
    """Add a file to the store (pinned) and print its CID."""
    from ledger.content.multiformats import CID

    size = input_file(file)
    with (
        configured_store(store, store_dir, kubo_api_url) as backend,
        progress_bar(size, f"put {file.name}") as progress,
    ):
        cid = backend.put_file(file, progress=progress)
    parsed = CID.parse(cid)
    data = {"cid": parsed.v0, "cid_v1": parsed.v1, "digest": parsed.hex, "size": size, "store": backend.name}
    emit(
        data,
        json_mode=want_json(json_output),
        human=lambda console: console.print(parsed.v0, highlight=False),
    )


@app.command()
def get(
    cid: CidArg,
    *,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Where to write the file.", show_default=False)
    ],
    max_bytes: Annotated[
        int | None,
        typer.Option(
            "--max-bytes", min=0, help="Refuse content larger than this (default: `max_update_bytes`)."
        ),
    ] = None,
    store: StoreOpt = None,
    store_dir: StoreDirOpt = None,
    kubo_api_url: KuboOpt = None,
    json_output: JsonFlag = False,
) -> None:
    """Fetch content to a file, verified against its CID; the file appears only when complete."""
    from ledger.content.store import fetch_to_file

    v0 = _parse(cid)
    if output.is_dir():
        raise MeshprovError(f"{output} is a directory", hint="give the path of the file to write")
    if not output.parent.is_dir():
        raise NotFound(f"no such directory: {output.parent}", hint="create it first")
    s = load_settings(store=store, store_dir=store_dir, kubo_api_url=kubo_api_url)
    limit = max_bytes if max_bytes is not None else s.max_update_bytes
    with configured_store(store, store_dir, kubo_api_url) as backend:
        size = backend.stat(v0).size
        with progress_bar(size, f"get {v0[:12]}…") as progress:
            written = fetch_to_file(backend, v0, output, max_bytes=limit, progress=progress)
    data = {"cid": v0, "path": str(output), "size": written, "store": backend.name}
    emit(
        data,
        json_mode=want_json(json_output),
        human=lambda console: info(f"wrote {written} bytes to {output}"),
    )


@app.command()
def pin(
    cid: CidArg,
    store: StoreOpt = None,
    store_dir: StoreDirOpt = None,
    kubo_api_url: KuboOpt = None,
    json_output: JsonFlag = False,
) -> None:
    """Pin content: make sure every block is held, and keep it."""
    v0 = _parse(cid)
    with configured_store(store, store_dir, kubo_api_url) as backend:
        backend.pin(v0)
    data = {"cid": v0, "pinned": True, "store": backend.name}
    emit(data, json_mode=want_json(json_output), human=lambda console: info(f"pinned {v0}"))


@app.command()
def stat(
    cid: CidArg,
    store: StoreOpt = None,
    store_dir: StoreDirOpt = None,
    kubo_api_url: KuboOpt = None,
    json_output: JsonFlag = False,
) -> None:
    """Show the content's size, root block size and pin state."""
    from ledger.content.multiformats import CID

    v0 = _parse(cid)
    with configured_store(store, store_dir, kubo_api_url) as backend:
        result = backend.stat(v0)
    parsed = CID.parse(v0)
    data = {
        "cid": result.cid,
        "cid_v1": parsed.v1,
        "digest": parsed.hex,
        "size": result.size,
        "block_size": result.block_size,
        "pinned": result.pinned,
        "store": backend.name,
    }

    def human(console: object) -> None:
        from ledger.cli.output import stdout

        for key in ("cid", "cid_v1", "digest", "size", "block_size", "pinned"):
            value = data[key]
            stdout.print(f"{key:<11} {'unknown' if value is None else value}", highlight=False)

    emit(data, json_mode=want_json(json_output), human=human)


@app.command()
def has(
    cid: CidArg,
    store: StoreOpt = None,
    store_dir: StoreDirOpt = None,
    kubo_api_url: KuboOpt = None,
    json_output: JsonFlag = False,
) -> None:
    """Say whether the store holds the content now. Exit 0 if it does, 4 if not."""
    v0 = _parse(cid)
    with configured_store(store, store_dir, kubo_api_url) as backend:
        present = backend.has(v0)
    data = {"cid": v0, "present": present, "store": backend.name}
    emit(
        data,
        json_mode=want_json(json_output),
        human=lambda console: console.print("yes" if present else "no"),
    )
    if not present:
        raise typer.Exit(int(ExitCode.NOT_FOUND))


@app.command()
def serve(
    store_dir: StoreDirOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free port).")] = 8080,
) -> None:
    """Serve the local store over the IPFS trustless gateway protocol (raw blocks and CAR) until Ctrl-C.

    Clients ask `GET /ipfs/{cid}` with `Accept: application/vnd.ipld.raw` (one block) or
    `application/vnd.ipld.car` (the whole file's DAG in one CARv1 stream) and check every block against its CID,
    so serving is safe to expose to peers; see docs/gateway.md.
    """
    from ledger.content.gateway import serve_blocks
    from ledger.content.local_store import LocalStore

    settings = load_settings(store="local", store_dir=store_dir, kubo_api_url=None)
    directory = settings.resolved_store_dir
    if not directory.is_dir():
        raise NotFound(
            f"no local block store at {directory}",
            hint="pass --store-dir, or `meshprov store put` a file first",
        )
    try:
        server = serve_blocks(LocalStore(directory), host, port)
    except OSError as exc:
        raise MeshprovError(f"cannot listen on {host}:{port}: {exc}", hint="pick another --port") from None
    # The server answers from its own thread as soon as it exists, so a client can be served, and press Ctrl-C,
    # before this thread has printed the address: from here on Ctrl-C is a clean stop (exit 0), never an exit 130.
    try:
        address, bound = server.server_address[:2]
        info(f"serving {directory} at http://{address!s}:{bound}/ipfs/{{cid}} (Ctrl-C to stop)")
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
