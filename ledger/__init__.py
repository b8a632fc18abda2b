"""meshprov's protocol and record: chain client, content addressing and stores, update format,
aggregation rules, event index, audit, dashboard and the CLI root.

`ledger` imports neither `node` nor `worker`; they import it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("meshprov")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
