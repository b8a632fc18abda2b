"""The validator and aggregator workers: a Celery app whose thin tasks call ledger's pure checks and rules.

    config.py      WorkerConfig: time limits, retries, polling, leases, failpoints
    celery_app.py  the Celery app (Redis broker and results, JSON only, late acks, visibility timeout)
    tasks.py       verify_round / aggregate_round: validate the message, retry transient faults, record faults
    verify.py      the validator's job: fetch, checks, scores; commit (salt kept on disk), then reveal
    sheets.py      the score sheets (scores, reasons, salt) kept on disk between commit and reveal
    history.py     the last rounds' updates, for the near-copy check
    aggregate.py   the aggregator's job: consensus from the chain, weighted aggregation, finalizeRound; carry-over
    watcher.py     polls the chain and (re-)enqueues what is still to do
    chain.py       the ledger as the jobs read it (pending block; transport failures -> ChainFault)
    fetch.py       store -> local files, sorting the member's faults (verdicts) from ours (retries)
    state.py       job claims, round locks, faults, health and counters in Redis
    runtime.py     the per-process context (settings, handles opened after fork)
    cli.py         `meshprov worker run | watch | carry-over | check | status`

Imports: `worker` imports only `ledger` (never `node`); only `lab` imports `worker` (tests/test_layout.py).
See docs/worker.md.
"""
