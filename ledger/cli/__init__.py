"""The `meshprov` command line: the root lives in :mod:`ledger.cli.app`, one module per command group."""
