"""`meshprov lab`: test consortia that span hosts (network namespaces)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Multi-host test consortia in network namespaces.")
