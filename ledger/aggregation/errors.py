"""Errors of the aggregation package.

MeshprovError
└── AggregationError                 aggregation could not produce an aggregate
    ├── SpecError (ConfigError)      a rule id or packed parameter the protocol does not define
    ├── NoInputs                     nothing to aggregate (an empty accepted set)
    ├── DuplicateInput               the same digest given twice
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


class BadSampleCount(AggregationError, ValueError):
    def __init__(self, counts: list[int], why: str) -> None:
        self.counts = counts
        super().__init__(f"fedavg cannot weight by sample counts {counts}: {why}")


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
