"""meshprov's protocol and the record: everything that is true whoever runs it, and no actor.

    chain/        the contracts' vocabulary (types), the client, transactions, reverts, events, deployment
    content/      CIDs (Kubo-identical), the UnixFS importer and DAG walker, the local and Kubo stores
    updatefile/   update, aggregate and genesis files (safetensors with one canonical metadata key)
    checks/       the validator's checks and judging (pure): each failure a reason code (reasons.py)
    aggregation/  the aggregation rules and their deterministic streaming driver (pure)
    consensus.py  an integer-exact mirror of the contract's consensus and settlement (protocol v2)
    index/        the event index (SQLite or PostgreSQL) and the questions it answers (queries/)
    audit/        lineage, verify, replay, reports, export
    dashboard/    the reward dashboard: a read-only view of the index (pages, JSON API, metrics)
    cli/          the `meshprov` root and the auditor's and operator's commands
    dev/          embedded development services (anvil, redis-server), the toolchain, the contracts build
    settings.py   one settings object for every role; errors.py, exit_codes.py

Imports: `ledger` imports nothing of `node`, `worker` or `lab`; they import it (tests/test_layout.py). An
auditor needs only `ledger` (no torch). The `node`, `worker`, `demo` and `experiment` command groups reach the
CLI through the `meshprov.commands` entry points, so the CLI root imports none of them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("meshprov")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
