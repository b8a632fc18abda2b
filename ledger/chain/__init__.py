"""The chain side of the ledger: typed client, transaction sender, revert and event decoding.

    client.py   LedgerClient / TokenClient: one typed method per contract function; EIP-712 signing
    sender.py   TxSender: nonces shared by threads, EIP-1559 fees, receipts with a timeout
    revert.py   RevertDecoder: revert data -> named exception (selector table)
    errors.py   one exception class per ABI error, with hints
    events.py   EventDecoder / LedgerEvent, getLogs in bounded ranges
    types.py    dataclasses of the ABI's structs and enums, bitmap helpers

web3 is imported here once with its import-time DeprecationWarning (web3 7 imports ``websockets.legacy``)
silenced, so that programs and test suites that turn warnings into errors can use the chain modules.
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"websockets\.legacy is deprecated", category=DeprecationWarning
    )
    import web3  # noqa: F401
