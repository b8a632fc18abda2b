"""The auditor's questions, answered from the index or (``--trustless``) from the chain's logs alone.

    source.py    open_source(settings, trustless=, sync=): the queries and where their answers come from
    reports.py   lineage, verify, round_detail, account: report objects with to_dict() and exit_code
    export.py    a task's whole record as JSON, CSV or self-contained HTML
    provenance.py  one model's in-toto Statement (SLSA provenance v1): chain record + store, shaped by intoto.py
    replay.py    recompute a round's aggregate (weighted by consensus) from the store and compare CIDs
    settlements.py  recompute every round's consensus, accepted set, reputations and rewards from its scores
    render.py    the reports for people (rich)
    errors.py    InvalidAddress, IndexEmpty

docs/audit.md describes the commands, their output and exit codes, and the trust model.
"""
