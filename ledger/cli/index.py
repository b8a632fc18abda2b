"""`meshprov index follow | status`: keep the event index up to date and see where it stands.

The index lives at `index_url` (default: SQLite in the data directory); `follow` reads the ledger of the
deployment record from the configured chain (or the embedded anvil) and honours `confirmations`. `status` reads
the index and compares it with a chain only when one is configured or the embedded one is running.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from ledger.cli.output import JsonFlag, emit, info, want_json
from ledger.cli.state import settings as load_settings
from ledger.exit_codes import ExitCode

app = typer.Typer(no_args_is_help=True)

IndexUrl = Annotated[
    str | None,
    typer.Option("--index-url", help="Index database URL (overrides `index_url`).", show_default=False),
]


@app.command()
def follow(
    *,
    once: Annotated[bool, typer.Option("--once", help="Index up to the chain's head, then exit.")] = False,
    poll: Annotated[
        float, typer.Option("--poll", min=0.05, help="Seconds between polls when following.")
    ] = 2.0,
    confirmations: Annotated[
        int | None,
        typer.Option("--confirmations", min=0, help="Blocks deep a log must be (overrides `confirmations`)."),
    ] = None,
    index_url: IndexUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """Follow the ledger's events into the index (reorg-safe, resumable). Ctrl-C stops it cleanly."""
    from ledger.chain.client import LedgerClient
    from ledger.cli.endpoints import chain_url
    from ledger.errors import ServiceUnavailable
    from ledger.index import service
    from ledger.index.db import redact
    from ledger.index.follower import SyncResult

    s = load_settings(index_url=index_url, confirmations=confirmations)
    client = LedgerClient.from_settings(s, endpoint=chain_url(s), read_only=True)
    db = service.open_index(s)
    content = service.content_reader(s)
    follower = service.follower(db, client, confirmations=s.confirmations, content=content)
    json_mode = want_json(json_output)
    info(f"indexing ledger {client.address} from {client.endpoint} into {redact(db.url)}")

    def summary(result: SyncResult) -> dict[str, Any]:
        return {
            "from_block": result.from_block,
            "to_block": result.to_block,
            "head": result.head,
            "behind": result.behind,
            "events": result.events,
            "reorgs": result.reorgs,
            "rewound_rows": result.rewound_rows,
            "content_read": result.content_read,
            "seconds": round(result.seconds, 3),
        }

    def report(result: SyncResult) -> None:
        if result.reorgs:
            info(f"[yellow]reorganisation[/]: rewound {result.rewound_rows} rows and re-indexed")
        if result.events or result.reorgs or once:
            info(
                f"indexed blocks up to {result.to_block} (head {result.head}): {result.events} new events "
                f"in {result.seconds:.2f} s"
            )

    def progress(block: int, target: int, events: int) -> None:
        if target - block > 0:
            info(f"[dim]… block {block} of {target}, {events} events[/]")

    try:
        if once:
            result = follower.sync(progress=progress)
            report(result)
            emit(summary(result), json_mode=json_mode, human=lambda console: None)
            return
        backoff = poll
        while True:
            try:
                result = follower.sync(progress=progress)
            except ServiceUnavailable as exc:
                # A follower outlives chain restarts: wait and resume from the checkpoint instead of exiting.
                backoff = min(backoff * 2, 30.0)
                info(f"[yellow]{exc.service} unavailable[/] ({exc.reason}); retrying in {backoff:.0f} s")
                time.sleep(backoff)
                continue
            backoff = poll
            report(result)
            if json_mode:
                emit(summary(result), json_mode=True)
            time.sleep(poll)
    finally:
        if content is not None:
            content.close()
        db.dispose()


@app.command()
def status(
    *,
    index_url: IndexUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """Where the index stands: chain and ledger, last block indexed, events, and how far behind the chain it is."""
    from ledger.chain.client import LedgerClient
    from ledger.chain.deploy import DeploymentRecord
    from ledger.cli.endpoints import audit_chain_url
    from ledger.errors import MeshprovError, NotFound
    from ledger.index import service
    from ledger.index.db import redact
    from ledger.index.queries import Queries

    s = load_settings(index_url=index_url)
    url = audit_chain_url(s, sync=False)
    db = service.open_index(s)
    try:
        head: int | None = None
        chain_error: str | None = None
        try:
            deployment = DeploymentRecord.read(s.resolved_deployment_file)
            db.check_identity(deployment.chain_id, deployment.ledger)
            if url is not None:
                head = LedgerClient.from_settings(s, endpoint=url, read_only=True).block_number()
        except NotFound:
            pass  # no deployment record: show the index as it is
        except MeshprovError as exc:
            # An unreachable chain is reported beside the index; anything else (another ledger) is raised.
            if exc.exit_code != ExitCode.UNAVAILABLE:
                raise
            chain_error = exc.message
        current = Queries(db).status(head=head)
    finally:
        db.dispose()
    if current is None:
        raise NotFound(
            f"the index at {redact(db.url)} is empty", hint="build it with `meshprov index follow --once`"
        )
    data = {**current.to_dict(), "url": redact(db.url), "chain_error": chain_error}

    def human(console: Any) -> None:
        updated = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(current.updated_at))
        console.print(f"index    {redact(db.url)}")
        console.print(
            f"ledger   {current.ledger} on chain {current.chain_id} (from block {current.start_block})"
        )
        console.print(
            f"indexed  up to block {current.block_number} ({current.events} events, {current.tasks} tasks)"
        )
        console.print(f"updated  {updated}")
        if current.behind is not None:
            lag = "up to date" if current.behind == 0 else f"[yellow]{current.behind} blocks behind[/]"
            console.print(f"chain    head {current.head}: {lag}")
            if current.behind:
                console.print("[dim]run `meshprov index follow --once` to catch up[/]")
        elif chain_error:
            console.print(f"chain    [red]unreachable[/]: {chain_error}")

    emit(data, json_mode=want_json(json_output), human=human)
