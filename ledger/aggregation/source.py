"""What aggregation and the checks read: a `TensorSource`, anything with named, shaped, typed tensors.

`ledger.updatefile.UpdateFile` satisfies it structurally (memory-mapped tensors); `ArraySource` wraps in-memory
arrays for tests, the list-of-arrays rules and callers that already hold a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray


class TensorSource(Protocol):
    """Named tensors. ``tensor`` may return a memory map: callers read it block by block, never copy it whole."""

    def keys(self) -> Iterable[str]: ...

    def dtype(self, key: str) -> Any: ...

    def shape(self, key: str) -> Sequence[int]: ...

    def tensor(self, key: str) -> NDArray[Any]: ...


class ArraySource:
    """A `TensorSource` over arrays held in memory."""

    def __init__(self, tensors: Mapping[str, NDArray[Any]]) -> None:
        self._tensors = dict(tensors)

    def keys(self) -> list[str]:
        return sorted(self._tensors)

    def dtype(self, key: str) -> np.dtype[Any]:
        return self._tensors[key].dtype

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._tensors[key].shape)

    def tensor(self, key: str) -> NDArray[Any]:
        return self._tensors[key]


def numpy_dtype(source: TensorSource, key: str) -> np.dtype[Any]:
    """The numpy dtype of a tensor, whatever form the source reports its dtype in."""
    declared = source.dtype(key)
    if isinstance(declared, np.dtype):
        return declared
    return source.tensor(key).dtype


def is_parameter(dtype: np.dtype[Any]) -> bool:
    """Floating tensors are parameters: they count in norms, clipping and distances.

    Integer and bool tensors are buffers (BatchNorm's ``num_batches_tracked``): a batch counter's delta would swamp
    the norm of the weights, so buffers are aggregated by the rule but take no part in norms.
    """
    return dtype.kind == "f"
