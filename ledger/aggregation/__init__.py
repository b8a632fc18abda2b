"""Deterministic, streamed aggregation of model updates (pure: no Celery, no chain).

    spec.py      rule ids and the packed on-chain parameter; the digest order of inputs
    rules.py     the rules as NumPy functions on lists of arrays (fedavg, trimmed mean, median, multi-krum, clipping)
    weights.py   FedAvg's weights: the accepted updates' consensus scores (consensus_weights)
    stream.py    the driver: memory-mapped update files in, one aggregated tensor at a time out
    output.py    writing the streamed aggregate to an aggregate file (metadata: rule, parameter, input CIDs)
    numerics.py  the fixed-order float64 sums and sorting networks every machine computes bit for bit
    source.py    the `TensorSource` protocol the driver and the checks read
    errors.py    AggregationError and its subclasses

The same inputs give the same bytes, and so the same CID, on every machine: see docs/aggregation.md.
"""

from ledger.aggregation.errors import (
    AggregationError,
    BadSampleCount,
    BadWeight,
    DuplicateInput,
    InputMismatch,
    NoInputs,
    NonFiniteAggregate,
    SpecError,
)
from ledger.aggregation.output import aggregate_meta, write_aggregation
from ledger.aggregation.rules import MAX_WEIGHT
from ledger.aggregation.source import ArraySource, TensorSource
from ledger.aggregation.spec import AggregationSpec, ClipBound, Rule, sort_by_digest
from ledger.aggregation.stream import Aggregation, Contribution, aggregate, prepare
from ledger.aggregation.weights import consensus_weights

__all__ = [
    "MAX_WEIGHT",
    "Aggregation",
    "AggregationError",
    "AggregationSpec",
    "ArraySource",
    "BadSampleCount",
    "BadWeight",
    "ClipBound",
    "Contribution",
    "DuplicateInput",
    "InputMismatch",
    "NoInputs",
    "NonFiniteAggregate",
    "Rule",
    "SpecError",
    "TensorSource",
    "aggregate",
    "aggregate_meta",
    "consensus_weights",
    "prepare",
    "sort_by_digest",
    "write_aggregation",
]
