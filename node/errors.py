"""Errors raised by the node's training code, all rooted in ``ledger.errors.MeshprovError``.

MeshprovError
├── ConfigError
│   ├── UnknownModel          a model name that is not in the registry
│   ├── InvalidParameter      a hyperparameter or privacy parameter out of range
│   └── ShardingFailed        the Dirichlet split cannot give every node its minimum number of samples
└── Mismatch
    └── StateMismatch         a state_dict whose keys, shapes or dtypes differ from the model's
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.errors import ConfigError, Mismatch


class UnknownModel(ConfigError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(
            f"unknown model {name!r}",
            hint=f"choose one of: {', '.join(self.known)}",
        )


class InvalidParameter(ConfigError):
    def __init__(self, name: str, value: object, requirement: str) -> None:
        self.name = name
        self.value = value
        self.requirement = requirement
        super().__init__(f"{name}={value!r} is invalid: {requirement}")


class ShardingFailed(ConfigError):
    def __init__(
        self, *, num_samples: int, num_nodes: int, alpha: float, min_samples: int, attempts: int
    ) -> None:
        self.num_samples = num_samples
        self.num_nodes = num_nodes
        self.alpha = alpha
        self.min_samples = min_samples
        self.attempts = attempts
        super().__init__(
            f"could not split {num_samples} samples over {num_nodes} nodes with Dirichlet(α={alpha}) so that "
            f"every node gets at least {min_samples} samples ({attempts} attempts)",
            hint="raise α, lower the minimum number of samples per node, or use fewer nodes",
        )


class StateMismatch(Mismatch):
    def __init__(self, model: str, problems: list[str]) -> None:
        self.model = model
        self.problems = problems
        shown = "; ".join(problems[:5]) + (f"; … {len(problems) - 5} more" if len(problems) > 5 else "")
        super().__init__(
            f"state_dict does not match model {model!r}: {shown}",
            hint="the base model and the node's --model must be the same architecture",
        )
