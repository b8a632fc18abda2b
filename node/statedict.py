"""torch state dicts <-> numpy states, for every dtype a torch model carries, bit for bit.

    state = state_to_numpy(model)            # or a state_dict: {key: independent numpy array}
    load_numpy_state(model, state)           # names, shapes and dtypes checked first: StateMismatch
    load_numpy_state(model, state_from_weights(model, weights))   # in a ledger.checks loss hook
    delta = state_delta(local, base)         # what an update file holds (ledger.updatefile.deltas)
    write_update(path, file_tensors(delta), meta)

dtypes: float32, float64, float16, bfloat16 (as its raw ``uint16`` bit patterns, as ``ledger.updatefile`` reads
BF16 tensors), int64 (BatchNorm's ``num_batches_tracked``), int32, int16, int8, uint8 and bool. Anything else
(complex, float8, torch's own uint16/32/64, quantized tensors) has no update-file form and is refused by name.
Non-persistent buffers are not in a state_dict and so not in a state: they stay what the model builds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from ledger.updatefile.deltas import apply_state_delta, file_tensors, state_delta
from ledger.updatefile.dtypes import bf16_to_float32, float32_to_bf16
from node.errors import StateMismatch

NumpyState = dict[str, NDArray[Any]]

_NUMPY: dict[torch.dtype, np.dtype[Any]] = {
    torch.float64: np.dtype(np.float64),
    torch.float32: np.dtype(np.float32),
    torch.float16: np.dtype(np.float16),
    torch.bfloat16: np.dtype(np.uint16),  # bit patterns
    torch.int64: np.dtype(np.int64),
    torch.int32: np.dtype(np.int32),
    torch.int16: np.dtype(np.int16),
    torch.int8: np.dtype(np.int8),
    torch.uint8: np.dtype(np.uint8),
    torch.bool: np.dtype(np.bool_),
}
_TORCH: dict[np.dtype[Any], torch.dtype] = {v: k for k, v in _NUMPY.items()}

__all__ = [
    "NumpyState",
    "apply_state_delta",
    "check_numpy_state",
    "file_tensors",
    "load_numpy_state",
    "numpy_dtype",
    "state_delta",
    "state_from_weights",
    "state_to_numpy",
    "to_torch",
]


def numpy_dtype(dtype: torch.dtype) -> np.dtype[Any] | None:
    """The numpy dtype a torch dtype travels as (``uint16`` bits for bfloat16); None when it cannot."""
    return _NUMPY.get(dtype)


def _describe(subject: nn.Module | Mapping[str, Any]) -> str:
    return type(subject).__name__ if isinstance(subject, nn.Module) else "state_dict"


def _torch_state(subject: nn.Module | Mapping[str, Any]) -> Mapping[str, Any]:
    return subject.state_dict() if isinstance(subject, nn.Module) else subject


def _to_numpy(tensor: torch.Tensor) -> NDArray[Any]:
    t = tensor.detach()
    if t.dtype == torch.bfloat16:
        # numpy has no bfloat16: reinterpret the 2-byte patterns (int16 view, then the bits as uint16)
        return t.cpu().contiguous().view(torch.int16).numpy().view(np.uint16).copy()
    return t.cpu().numpy().copy()


def state_to_numpy(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> NumpyState:
    """A module's state_dict (or a state_dict of torch tensors, or of numpy arrays) as independent, contiguous
    numpy arrays, bit for bit.

    Copies, so later training cannot alter them. Raises :class:`StateMismatch` naming every tensor of a dtype
    meshprov cannot carry, or a value that is not a dense tensor.
    """
    state = _torch_state(model_or_state)
    problems: list[str] = []
    out: NumpyState = {}
    for key, value in state.items():
        if isinstance(
            value, np.ndarray
        ):  # already numpy (a state handed back): copied if meshprov can carry it
            if value.dtype in _TORCH:
                out[key] = np.array(value, copy=True, order="C")
            else:
                problems.append(
                    f"{key} has dtype {value.dtype}, which update files cannot carry ({_accepted()})"
                )
        elif not isinstance(value, torch.Tensor) or value.layout != torch.strided or value.is_quantized:
            problems.append(f"{key} is not a dense tensor ({type(value).__name__})")
        elif value.dtype not in _NUMPY:
            problems.append(f"{key} has dtype {value.dtype}, which update files cannot carry ({_accepted()})")
        elif value.device.type == "meta":
            problems.append(f"{key} is on the meta device (no values)")
        else:
            out[key] = _to_numpy(value)
    if problems:
        raise StateMismatch(_describe(model_or_state), problems)
    return out


def to_torch(array: NDArray[Any], dtype: torch.dtype | None = None) -> torch.Tensor:
    """A torch tensor (its own copy) from a numpy array; ``uint16`` arrays are bfloat16 bits."""
    a = np.array(array, copy=True, order="C")
    if a.dtype == np.uint16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    t = torch.from_numpy(a)
    return t if dtype is None else t.to(dtype)


def check_numpy_state(
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
    *,
    name: str | None = None,
) -> None:
    """Raise :class:`StateMismatch` unless ``state`` has exactly the model's keys, and for each key its shape and
    dtype (bfloat16 as ``uint16``). Every problem is listed, sorted by key."""
    expected = _torch_state(model_or_state)
    problems = [f"missing {key}" for key in sorted(set(expected) - set(state))]
    problems += [f"unexpected {key}" for key in sorted(set(state) - set(expected))]
    for key in sorted(set(expected) & set(state)):
        want = expected[key]
        got = np.asarray(state[key]) if isinstance(state[key], np.generic) else state[key]
        if not isinstance(got, np.ndarray):
            problems.append(f"{key} is a {type(got).__name__}, expected a numpy array")
            continue
        if tuple(got.shape) != tuple(want.shape):
            problems.append(f"{key} has shape {list(got.shape)}, expected {list(want.shape)}")
        want_np = _NUMPY.get(want.dtype)
        if want_np is None:
            problems.append(f"{key}: the model's dtype {want.dtype} cannot be carried ({_accepted()})")
        elif got.dtype != want_np:
            problems.append(f"{key} has dtype {_label(got.dtype)}, expected {_label(want_np)} ({want.dtype})")
    if problems:
        raise StateMismatch(name or _describe(model_or_state), problems)


def state_from_weights(
    model_or_state: nn.Module | Mapping[str, torch.Tensor], weights: Mapping[str, Any]
) -> NumpyState:
    """The numpy state of full weights as ledger's checks hand them to a loss hook (``ledger.checks.LossFn``:
    every tensor in its dtype, bfloat16 given as float32): bfloat16 tensors back to their bits, exactly.

    A float32 value that is not a bfloat16 value is refused (:class:`StateMismatch`), never rounded: the hook
    must see the weights the aggregate would hold. Everything else is passed through for
    :func:`load_numpy_state` to check."""
    expected = _torch_state(model_or_state)
    out: NumpyState = {}
    problems: list[str] = []
    for key, value in weights.items():
        array = np.asarray(value)
        want = expected.get(key)
        if want is not None and want.dtype == torch.bfloat16 and array.dtype == np.float32:
            bits = float32_to_bf16(array)
            if not np.array_equal(bf16_to_float32(bits), array, equal_nan=True):
                problems.append(f"{key} holds float32 values that are not bfloat16 values")
            out[key] = bits
        else:
            out[key] = array
    if problems:
        raise StateMismatch(_describe(model_or_state), problems)
    return out


def load_numpy_state(model: nn.Module, state: Mapping[str, NDArray[Any]]) -> None:
    """Copy ``state`` into ``model`` bit for bit (every parameter and persistent buffer; devices kept).

    Checked first (:func:`check_numpy_state`), so nothing is half-loaded when it does not fit.
    """
    check_numpy_state(model, state)
    expected = model.state_dict()
    tensors = {key: to_torch(np.asarray(state[key])) for key in expected}
    with torch.no_grad():
        model.load_state_dict(tensors, strict=True)


def _label(dtype: np.dtype[Any]) -> str:
    return "uint16 (bfloat16 bits)" if dtype == np.uint16 else str(dtype)


def _accepted() -> str:
    return "accepted: " + ", ".join(str(d).removeprefix("torch.") for d in _NUMPY)
