"""`meshprov dev up | status | down`: the embedded anvil and redis-server of one data directory (the global
``--data-dir``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from ledger.cli.output import JsonFlag, emit, info, want_json
from ledger.cli.state import settings as load
from ledger.exit_codes import ExitCode

app = typer.Typer(no_args_is_help=True)

Only = Annotated[
    list[str] | None,
    typer.Option("--only", help="Start only this service (anvil or redis); repeatable.", show_default=False),
]


@app.command()
def up(only: Only = None, json_output: JsonFlag = False) -> None:
    """Start anvil and redis-server (unless configured by URL); reuse those already running."""
    from ledger.dev.services import DevServices

    names = tuple(only) if only else ("anvil", "redis")
    for name in names:
        if name not in ("anvil", "redis"):
            raise typer.BadParameter(f"unknown service {name!r}; choose anvil or redis", param_hint="--only")
    s = load()
    records = DevServices(s).up(names)
    data = {name: asdict(rec) for name, rec in records.items()}

    def human(console: object) -> None:
        for name, rec in records.items():
            how = "configured" if rec.external else f"pid {rec.pid}"
            info(f"{name:<6} {rec.url}  ({how})")
        info(f"endpoints written to {s.data_dir / 'services.json'}")

    emit(data, json_mode=want_json(json_output), human=human)


@app.command()
def status(json_output: JsonFlag = False) -> None:
    """Show each recorded service: endpoint, process, whether it answers. Exit 6 when one does not."""
    from ledger.dev.services import DevServices

    s = load()
    report = DevServices(s).status()

    def human(console: object) -> None:
        if not report:
            info(f"no services recorded in {s.data_dir} (run `meshprov dev up`)")
            return
        table = Table("service", "url", "pid", "running", "answering")
        for name, row in report.items():
            table.add_row(
                name, row["url"], str(row["pid"] or "-"), str(row["running"]), str(row["answering"])
            )
        from ledger.cli.output import stdout

        stdout.print(table)

    emit(report, json_mode=want_json(json_output), human=human)
    if not report or not all(row["answering"] for row in report.values()):
        raise typer.Exit(int(ExitCode.UNAVAILABLE))


@app.command()
def down(json_output: JsonFlag = False) -> None:
    """Stop exactly the processes `up` started in this data directory (anvil saves its state first)."""
    from ledger.dev.services import DevServices

    s = load()
    stopped = DevServices(s).down()
    emit(
        {"stopped": stopped},
        json_mode=want_json(json_output),
        human=lambda _c: info(
            "stopped " + (", ".join(stopped) if stopped else "nothing (no services were running)")
        ),
    )
