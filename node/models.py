"""The registry of models a task can name, and the conversions between torch modules and numpy state_dicts.

Every model takes digits images shaped ``(batch, 1, 8, 8)`` and returns 10 logits. None holds buffers (no
batch norm), so a state_dict is exactly its float32 parameters: the update file has nothing that would need a
dtype other than the base's, nor a counter that averaging would corrupt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

from node.errors import StateMismatch, UnknownModel
from node.recipes import digits, digits_cnn

NUM_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)
DEFAULT_MODEL = "mlp"

StateDict = dict[str, np.ndarray]


# The builtin recipes hold the two architectures (a recipe's hash covers its own file, so the model lives there).
_REGISTRY: dict[str, Callable[[], nn.Module]] = {"mlp": digits.model, "cnn": digits_cnn.model}


def model_names() -> list[str]:
    """The names a task may use, sorted."""
    return sorted(_REGISTRY)


def build_model(name: str, seed: int = 0) -> nn.Module:
    """A fresh model whose initial weights depend only on ``name`` and ``seed``.

    The global torch RNG is forked, so building a model neither depends on nor disturbs other random draws.
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownModel(name, _REGISTRY) from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory()
    return model.to(torch.float32)


def genesis_state(name: str, seed: int = 0) -> StateDict:
    """The round-0 base model of a task: the state_dict of ``build_model(name, seed)`` as numpy float32."""
    return state_to_numpy(build_model(name, seed))


def state_to_numpy(model: nn.Module) -> StateDict:
    """The module's state_dict as independent numpy arrays (copies, so later training cannot alter them); every
    dtype as ``node.statedict`` converts it (bfloat16 as uint16 bits)."""
    from node.statedict import state_to_numpy as convert

    return convert(model)


def check_state(name: str, model: nn.Module, state: Mapping[str, np.ndarray]) -> None:
    """Raise ``StateMismatch`` unless ``state`` has exactly the model's keys, shapes and dtypes."""
    expected = model.state_dict()
    problems: list[str] = []
    for key in sorted(set(expected) - set(state)):
        problems.append(f"missing {key}")
    for key in sorted(set(state) - set(expected)):
        problems.append(f"unexpected {key}")
    for key in sorted(set(expected) & set(state)):
        want = expected[key]
        got = np.asarray(state[key])
        if tuple(got.shape) != tuple(want.shape):
            problems.append(f"{key} has shape {tuple(got.shape)}, expected {tuple(want.shape)}")
        elif got.dtype != np.float32:
            problems.append(f"{key} has dtype {got.dtype}, expected float32")
    if problems:
        raise StateMismatch(name, problems)


def load_state(name: str, state: Mapping[str, np.ndarray]) -> nn.Module:
    """A model of architecture ``name`` holding the weights ``state`` (checked first)."""
    from node.statedict import load_numpy_state

    model = build_model(name)
    check_state(name, model, state)
    load_numpy_state(model, state)  # the one torch <-> numpy conversion (node.statedict)
    return model
