"""Errors of the aggregation package.

MeshprovError
└── AggregationError                 aggregation could not produce an aggregate
    ├── SpecError (ConfigError)      a rule id or packed parameter the protocol does not define
    ├── NoInputs                     nothing to aggregate (an empty accepted set)
    ├── DuplicateInput               the same digest given twice
    ├── BadWeight                    a weight that is no accepted update's consensus (not in 1..10,000)
    ├── InputMismatch (Mismatch)     an input's keys, shapes or dtypes differ from the base's
    └── NonFiniteAggregate           NaN/Inf reached a norm or the result: a non-validated input got in
"""

from __future__ import annotations

from ledger.errors import ConfigError, MeshprovError, Mismatch


class AggregationError(MeshprovError):
    """Aggregation could not produce an aggregate."""


class SpecError(AggregationError, ConfigError):
    def __init__(self, field: str, value: object, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(
            f"invalid aggregation {field}: {value!r} ({expected})",
            hint="see docs/aggregation.md for the rule ids and the parameter packing",
        )


class NoInputs(AggregationError):
    def __init__(self) -> None:
        super().__init__(
            "nothing to aggregate: the accepted set is empty",
            hint="a round with no accepted update keeps its base model",
        )


class DuplicateInput(AggregationError, ValueError):
    def __init__(self, digest: bytes) -> None:
        self.digest = digest
        super().__init__(f"input digest {digest.hex()} is given more than once")


class BadWeight(AggregationError, ValueError):
    """A contribution's weight is not a consensus score of an accepted update (an integer in 1..MAX_WEIGHT)."""

    def __init__(self, weights: list[int], why: str) -> None:
        self.weights = weights
        self.counts = weights
        super().__init__(
            f"cannot weight the inputs by {weights}: {why}",
            hint="a weight is the consensus score of an accepted update (ledger.aggregation.consensus_weights)",
        )


BadSampleCount = BadWeight
"""v1's name: FedAvg weighted by sample counts then; v2 weighs by consensus (docs/protocol.md R2, R5)."""


class InputMismatch(AggregationError, Mismatch):
    def __init__(self, digest: bytes, key: str, what: str, got: object, expected: object) -> None:
        self.digest = digest
        self.key = key
        self.what = what
        self.got = got
        self.expected = expected
        super().__init__(
            f"input {digest.hex()[:16]}…: {what} of {key!r} is {got!r}, the base has {expected!r}",
            hint="only updates that passed the validator checks may be aggregated",
        )


class NonFiniteAggregate(AggregationError):
    def __init__(self, key: str, stage: str) -> None:
        self.key = key
        self.stage = stage
        super().__init__(
            f"non-finite values in {stage} of {key!r}",
            hint="an input holds NaN/Inf or overflows its dtype: only validated updates may be aggregated",
        )
