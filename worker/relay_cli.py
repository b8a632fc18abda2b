"""`meshprov worker relay`: the HTTP relayer for members of other organisations (worker/relay_http.py).

The command is a plain function so that worker/cli.py registers it in one line::

    from worker.relay_cli import relay_command
    app.command("relay")(relay_command)

It can also run on its own: ``python -m worker.relay_cli --listen 127.0.0.1:8700``.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from ledger.cli.output import info
from ledger.cli.state import settings as load_settings


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6); port 0 picks a free one."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise typer.BadParameter(f"expected HOST:PORT, got {text!r}", param_hint="--listen")
    return host.strip("[]"), int(port_text)


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def relay_command(
    *,
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT to serve on (port 0: any free port, printed).")
    ] = "127.0.0.1:8700",
    max_batch: Annotated[
        int, typer.Option("--max-batch", min=1, max=112, help="Submissions per transaction.")
    ] = 16,
    batch_wait: Annotated[
        float,
        typer.Option("--batch-wait", min=0.0, help="Seconds the first queued submission waits for company."),
    ] = 0.5,
    member_burst: Annotated[
        int, typer.Option("--member-burst", min=1, help="Requests a member may send at once (token bucket).")
    ] = 3,
    member_interval: Annotated[
        float,
        typer.Option("--member-interval", min=0.001, help="Seconds to earn one more request, per member."),
    ] = 20.0,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert",
            help="PEM certificate (chain) to serve HTTPS with (TLS 1.2 or later; with --tls-key). Members verify "
            "it with `node run --relay-ca`.",
        ),
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.")] = None,
) -> None:
    """Relay members' signed submissions received over HTTP, in batches (this key pays the gas).

    Every check that needs no gas runs first (body size, signature, membership, round, sample cap, nonce), so a
    refused request costs nothing. Protocol and limits: docs/relay.md."""
    from ledger.chain.client import LedgerClient
    from ledger.cli.endpoints import chain_url
    from worker.relay_http import Limits, RelayService, serve, tls_context

    host, port = parse_listen(listen)
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter(
            "give both --tls-cert and --tls-key (the certificate and its private key)",
            param_hint="--tls-key" if tls_key is None else "--tls-cert",
        )
    tls = tls_context(tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
    s = load_settings()
    if s.signing_key() is None:
        from ledger.errors import ConfigError

        raise ConfigError(
            "the relayer needs a funded key: it pays the gas of the submissions it relays",
            hint="set private_key_file (MESHPROV_PRIVATE_KEY_FILE)",
        )
    url = chain_url(s)
    sender = LedgerClient.from_settings(s, endpoint=url)
    reader = LedgerClient.from_settings(s, endpoint=url, read_only=True)
    reader.view_block = "pending"  # the checks see the time the next block will have, as the batch will
    limits = Limits(
        max_batch=max_batch,
        batch_wait_s=batch_wait,
        member_burst=member_burst,
        member_rate=1 / member_interval,
    )
    service = RelayService(sender, reader=reader, limits=limits, say=info)
    server = serve(service, host, port, tls=tls)
    stop = threading.Event()

    def _stop(*_: object) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = signal.signal(signal.SIGTERM, _stop)
    info(f"relaying to ledger {sender.address} as {sender.sender_address}")
    if tls is None and not _loopback(host):
        info(
            f"warning: plain HTTP on {host}: members' submissions cross the network unprotected and members "
            "refuse a non-loopback http:// relayer unless told otherwise; give --tls-cert and --tls-key "
            "(docs/relay.md)"
        )
    info(f"listening on {server.url}")  # its own short line: a caller that asked for port 0 reads it
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
        service.stop()
    info(f"relayed {service.relayed} in {service.transactions} transaction(s), refused {service.refused}")


def main(argv: list[str] | None = None) -> int:
    """``python -m worker.relay_cli``: the command on its own, with meshprov's error messages and exit codes."""
    from ledger.errors import MeshprovError

    standalone = typer.Typer(add_completion=False)
    standalone.command()(relay_command)
    try:
        typer.main.get_command(standalone).main(
            args=argv, prog_name="meshprov worker relay", standalone_mode=True
        )
    except MeshprovError as exc:
        info(f"error: {exc.message}" + (f"\n  hint: {exc.hint}" if exc.hint else ""))
        return int(exc.exit_code)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
