"""Content addressing and content stores.

* :mod:`~ledger.content.multiformats`: CID parsing and formatting, ``bytes32`` digest <-> CID.
* :mod:`~ledger.content.unixfs`: the streaming, Kubo-identical UnixFS importer (the CID of a file).
* :mod:`~ledger.content.dag`: reading a file back from its blocks.
* :mod:`~ledger.content.store`: the :class:`ContentStore` interface and helpers for any store.
* :mod:`~ledger.content.local_store` and :mod:`~ledger.content.kubo_store`: the two stores.
* :mod:`~ledger.content.gateway`: blocks between hosts over the trustless gateway protocol (serve and fetch).
* :mod:`~ledger.content.errors`: the error tree.

:func:`open_store` builds the store the settings name. See docs/content.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.content.errors import (
    CidMismatch,
    ContentError,
    ContentNotFound,
    ContentTooLarge,
    CorruptBlock,
    InvalidCID,
    MalformedDag,
    StoreError,
    StoreUnavailable,
)
from ledger.content.multiformats import CID, cid_to_digest, digest_to_cid, parse_cid
from ledger.content.store import ContentStat, ContentStore, fetch_to_file, open_stream, read_bytes
from ledger.content.unixfs import (
    ImportResult,
    UnixfsHasher,
    cid_of_bytes,
    cid_of_file,
    import_file,
    import_stream,
    verify_file,
)

if TYPE_CHECKING:
    from ledger.settings import Settings

__all__ = [
    "CID",
    "CidMismatch",
    "ContentError",
    "ContentNotFound",
    "ContentStat",
    "ContentStore",
    "ContentTooLarge",
    "CorruptBlock",
    "ImportResult",
    "InvalidCID",
    "MalformedDag",
    "StoreError",
    "StoreUnavailable",
    "UnixfsHasher",
    "cid_of_bytes",
    "cid_of_file",
    "cid_to_digest",
    "digest_to_cid",
    "fetch_to_file",
    "import_file",
    "import_stream",
    "open_store",
    "open_stream",
    "parse_cid",
    "read_bytes",
    "verify_file",
]


def open_store(settings: Settings) -> ContentStore:
    """The store ``settings.store`` names: a :class:`LocalStore` in ``resolved_store_dir`` or a Kubo client."""
    if settings.store == "kubo":
        from ledger.content.kubo_store import KuboStore

        return KuboStore(settings.kubo_api_url)
    from ledger.content.gateway import GatewayStore
    from ledger.content.local_store import LocalStore

    local = LocalStore(settings.resolved_store_dir)
    # Content this host lacks comes from other hosts' gateways, every block verified (docs/gateway.md).
    return GatewayStore(local, settings.gateways, keep=settings.keep_verified) if settings.gateways else local
