"""`meshprov dashboard serve`: the reward dashboard (pages, JSON API, /metrics) over the event index.

It reads the index at `index_url` (default: SQLite in the data directory) and never writes to the chain. With
`--follow` a background thread keeps the index current from the configured chain, as `meshprov index follow`
does; without it, something else must (the `indexer` service in docker-compose, or `meshprov index follow`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from ledger.cli.output import info
from ledger.cli.state import settings as load_settings

app = typer.Typer(no_args_is_help=True)


@app.command()
def serve(
    *,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (default: `dashboard_host`, 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help="Port (default: `dashboard_port`, 8787; 0 picks a free one)."
        ),
    ] = None,
    index_url: Annotated[
        str | None,
        typer.Option("--index-url", help="Index database URL (overrides `index_url`).", show_default=False),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow",
            help="Keep the index current from the chain in a background thread (reads the chain, never writes).",
        ),
    ] = False,
    poll: Annotated[float, typer.Option("--poll", min=0.2, help="Seconds between follower polls.")] = 2.0,
) -> None:
    """Serve the dashboard with uvicorn until Ctrl-C: pages at /, JSON API at /api/…, /metrics, /healthz."""
    import uvicorn

    from ledger.dashboard import create_app
    from ledger.dashboard.follow import BackgroundFollower
    from ledger.index.db import redact

    s = load_settings(index_url=index_url)
    follower = None
    if follow:
        from ledger.index import service
        from ledger.index.db import IndexDB
        from ledger.index.follower import Follower

        writer: list[IndexDB] = []  # the follower's own pool, opened once it can be (retried every poll)

        def make_follower() -> Follower:
            from ledger.chain.client import LedgerClient
            from ledger.cli.endpoints import chain_url

            client = LedgerClient.from_settings(s, endpoint=chain_url(s), read_only=True)
            if not writer:
                writer.append(service.open_index(s))
            return service.follower(
                writer[0], client, confirmations=s.confirmations, content=service.content_reader(s)
            )

        follower = BackgroundFollower(make_follower, poll=poll)
    application = create_app(s, follower=follower)
    bind_host = host or s.dashboard_host
    bind_port = s.dashboard_port if port is None else port
    info(
        f"dashboard on http://{bind_host}:{bind_port} over the index at {redact(s.resolved_index_url)}"
        + (" (following the chain)" if follow else "")
    )
    config = uvicorn.Config(
        application,
        host=bind_host,
        port=bind_port,
        log_level=s.log_level.lower(),
        access_log=s.log_level == "DEBUG",
        proxy_headers=False,
        ws="none",  # no websockets served (and uvicorn's websockets import warns)
    )
    uvicorn.Server(config).run()
