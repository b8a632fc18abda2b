"""The chain side of the ledger: typed client, transaction sender, revert and event decoding.

    client.py   LedgerClient / TokenClient: one typed method per contract function, typed log reads; EIP-712
    sender.py   TxSender: nonces shared by threads, EIP-1559 fees, receipts with a timeout, mined reverts replayed
    revert.py   RevertDecoder: revert data -> named exception (selector table)
    errors.py   one exception class per ABI error, with hints (catch these, never match a name string)
    events.py   EventDecoder / LedgerEvent, getLogs in bounded ranges (optionally by topic)
    types.py    the one vocabulary of the contract: its structs, enums and log records, bitmap helpers
    scores.py   validators' scores: fixed point, byte encoding, the commit-reveal commitment, ScoreSheet
    replay.py   every finalized round's settlement recomputed from the logs (ledger.consensus) and compared
    deploy.py   token, library, ledger, roles, task; the deployment record  (consortium.py: the consortium file)

web3 is imported here once with its import-time DeprecationWarning (web3 7 imports ``websockets.legacy``)
silenced, so that programs and test suites that turn warnings into errors can use the chain modules.
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"websockets\.legacy is deprecated", category=DeprecationWarning
    )
    import web3  # noqa: F401
