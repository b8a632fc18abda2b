"""One local training round on CPU, and evaluation of a state_dict on a dataset.

Weights come in and go out as ``dict[str, numpy.ndarray]`` in float32; torch stays inside this module. A round
is deterministic for a fixed seed and thread count: the batch order comes from a seeded ``torch.Generator``, the
model has no dropout, and ``torch.use_deterministic_algorithms`` is on while training. Torch uses one thread by
default because several nodes share a 2-core machine, and one thread is also the fastest for models this small.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from node.data import Dataset
from node.errors import InvalidParameter
from node.models import StateDict, load_state, state_to_numpy

if TYPE_CHECKING:
    from torch.utils.data import Dataset as TorchDataset

    from node.recipe import Recipe

ProgressCallback = Callable[[int, int], None]
"""Called after every optimiser step with (steps done, total steps), e.g. to drive a progress bar."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one local round. The defaults reach ≥ 95 % FedAvg accuracy on digits (docs/node-training.md)."""

    epochs: int = 5
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    threads: int | None = 1
    """torch intra-op threads while training; None leaves torch's setting alone."""

    def validate(self) -> None:
        if self.epochs < 1:
            raise InvalidParameter("epochs", self.epochs, "must be at least 1")
        if self.batch_size < 1:
            raise InvalidParameter("batch_size", self.batch_size, "must be at least 1")
        if not self.lr > 0.0:
            raise InvalidParameter("lr", self.lr, "must be positive")
        if not 0.0 <= self.momentum < 1.0:
            raise InvalidParameter("momentum", self.momentum, "must be in [0, 1)")
        if self.weight_decay < 0.0:
            raise InvalidParameter("weight_decay", self.weight_decay, "must be non-negative")
        if self.threads is not None and self.threads < 1:
            raise InvalidParameter("threads", self.threads, "must be at least 1 (or None)")


# Tuned per model on 5 nodes, α=0.5, seeds 0-9 (docs/node-training.md): the CNN diverges with the MLP's lr.
_MODEL_DEFAULTS: dict[str, TrainConfig] = {
    "mlp": TrainConfig(),
    "cnn": TrainConfig(epochs=3, lr=0.05),
}


def round_seed(seed: int, round_index: int, node_index: int) -> int:
    """The local-training seed of a node in a round: distinct batch orders per round and node, reproducible."""
    return seed * 1_000_003 + round_index * 1_009 + node_index


def default_config(model_name: str) -> TrainConfig:
    """The tuned hyperparameters for ``model_name`` (the generic defaults for a model without tuned ones)."""
    return _MODEL_DEFAULTS.get(model_name, TrainConfig())


@dataclass(frozen=True)
class LocalResult:
    """What a local round produced. ``delta`` is exactly ``state - base`` computed in float32."""

    state: StateDict
    delta: StateDict
    num_samples: int
    train_loss: float
    """Mean cross-entropy over the samples of the last epoch, measured while training."""
    steps: int
    seconds: float


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float
    num_samples: int


@contextmanager
def torch_settings(threads: int | None) -> Iterator[None]:
    """Deterministic algorithms on and ``threads`` intra-op threads inside the block; restored afterwards."""
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        if threads is not None:
            torch.set_num_threads(previous_threads)


def compute_delta(local: Mapping[str, np.ndarray], base: Mapping[str, np.ndarray]) -> StateDict:
    """``local - base`` key by key, per dtype as update files define it (``ledger.updatefile.deltas``: floats
    rounded once in the base's dtype, integers exact, bfloat16 as bits, bool as XOR)."""
    from ledger.updatefile.deltas import state_delta

    delta = state_delta({k: np.asarray(local[k]) for k in base}, base)
    return {key: delta[key] for key in base}  # the base's (the model's) key order, not sorted


def apply_delta(base: Mapping[str, np.ndarray], delta: Mapping[str, np.ndarray]) -> StateDict:
    """``base + delta`` key by key, the inverse of :func:`compute_delta`."""
    from ledger.updatefile.deltas import apply_state_delta

    exact = {}
    loose = {}
    for key, value in base.items():
        d = np.asarray(delta[key])
        if (
            d.dtype != value.dtype
            and d.dtype.kind == "f"
            and value.dtype.kind == "f"
            and value.dtype != np.uint16
        ):
            # A float64 aggregate of float32 deltas (lab.simulate's rules): added and rounded once, as before.
            loose[key] = (value + d).astype(value.dtype, copy=False)
        else:
            exact[key] = value
    state = apply_state_delta(exact, {k: delta[k] for k in exact}) if exact else {}
    return {key: loose[key] if key in loose else state[key] for key in base}


def float_kind(value: np.ndarray) -> str | None:
    """The safetensors name of a floating-point tensor (``F32``, ``F16``, ``BF16`` for uint16 bits, ``F64``), None
    for integer, uint8 and bool tensors (buffers such as ``num_batches_tracked``)."""
    from ledger.updatefile.deltas import delta_kind, state_dtype

    name = state_dtype(np.asarray(value))
    return name if name is not None and delta_kind(name) == "float" else None


def float_values(delta: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The float tensors of a delta as exact float64 values (bfloat16 decoded from its bits), by key."""
    from ledger.updatefile.deltas import as_float64

    out: dict[str, np.ndarray] = {}
    for key, value in delta.items():
        name = float_kind(value)
        if name is not None:
            out[key] = as_float64(name, np.asarray(value))
    return out


def with_float_values(delta: Mapping[str, np.ndarray], values: Mapping[str, np.ndarray]) -> StateDict:
    """``delta`` with its float tensors replaced by ``values`` (float64, rounded once to each tensor's dtype);
    integer, uint8 and bool tensors are kept as they are (arithmetic on them would not mean the same thing)."""
    from ledger.updatefile.deltas import round_to

    out: StateDict = {}
    for key, value in delta.items():
        name = float_kind(value)
        out[key] = round_to(name, np.asarray(values[key])) if name is not None else np.array(value, copy=True)
    return out


def update_norm(delta: Mapping[str, np.ndarray]) -> float:
    """Global L2 norm of an update over its floating-point tensors (bfloat16 decoded), accumulated in float64.
    Integer, uint8 and bool buffers (e.g. BatchNorm's counter) are not in it, as in the validators' norms."""
    return float(np.sqrt(sum(float(np.sum(np.square(v))) for v in float_values(delta).values())))


def _tensors(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(data.x, dtype=np.float32)), torch.from_numpy(
        np.ascontiguousarray(data.y, dtype=np.int64)
    )


def local_train(
    model_name: str,
    base: Mapping[str, np.ndarray],
    data: Dataset,
    config: TrainConfig = TrainConfig(),
    *,
    progress: ProgressCallback | None = None,
) -> LocalResult:
    """Train ``model_name`` from ``base`` on ``data`` with SGD and return the new state and its delta.

    Use a different ``config.seed`` per round (e.g. derived from the node and round) so batch orders differ.
    """
    config.validate()
    if len(data) == 0:
        raise InvalidParameter("data", "empty dataset", "a node needs at least one sample to train")
    started = time.perf_counter()
    base_arrays = {key: np.asarray(value) for key, value in base.items()}
    with torch_settings(config.threads):
        model = load_state(model_name, base_arrays)
        model.train()
        x, y = _tensors(data)
        n = len(data)
        batches_per_epoch = -(-n // config.batch_size)
        total_steps = batches_per_epoch * config.epochs
        optimiser = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        loss_fn = nn.CrossEntropyLoss()
        generator = torch.Generator().manual_seed(config.seed)
        step = 0
        epoch_loss = 0.0
        for _ in range(config.epochs):
            order = torch.randperm(n, generator=generator)
            epoch_loss = 0.0
            for start in range(0, n, config.batch_size):
                batch = order[start : start + config.batch_size]
                optimiser.zero_grad(set_to_none=True)
                loss = loss_fn(model(x[batch]), y[batch])
                loss.backward()
                optimiser.step()
                epoch_loss += float(loss.item()) * len(batch)
                step += 1
                if progress is not None:
                    progress(step, total_steps)
        state = state_to_numpy(model)
    return LocalResult(
        state=state,
        delta=compute_delta(state, base_arrays),
        num_samples=n,
        train_loss=epoch_loss / n,
        steps=total_steps,
        seconds=time.perf_counter() - started,
    )


def recipe_round(
    recipe: Recipe,
    base: Mapping[str, np.ndarray],
    data: TorchDataset[Any],
    settings: Mapping[str, Any],
    *,
    progress: ProgressCallback | None = None,
) -> LocalResult:
    """One local round through a recipe: its model loaded with ``base`` (names, shapes and dtypes checked), trained
    by :meth:`Recipe.fit_result` with ``settings`` (the task's hyperparameters and the round's ``seed``), and its
    delta against ``base`` per dtype. ``train_loss`` is NaN when the recipe trains itself."""
    from node.statedict import load_numpy_state, state_to_numpy

    started = time.perf_counter()
    base_arrays = {key: np.asarray(value) for key, value in base.items()}
    model = recipe.build_model(0)
    load_numpy_state(model, base_arrays)
    fitted = recipe.fit_result(model, data, settings, progress=progress)
    state = state_to_numpy(model)
    return LocalResult(
        state=state,
        delta=compute_delta(state, base_arrays),
        num_samples=fitted.num_samples,
        train_loss=fitted.train_loss,
        steps=fitted.steps,
        seconds=time.perf_counter() - started,
    )


def evaluate(
    model_name: str,
    state: Mapping[str, np.ndarray],
    data: Dataset,
    *,
    batch_size: int = 1024,
    threads: int | None = 1,
) -> Evaluation:
    """Accuracy and mean cross-entropy of the weights ``state`` on ``data``."""
    if len(data) == 0:
        raise InvalidParameter("data", "empty dataset", "evaluation needs at least one sample")
    with torch_settings(threads), torch.no_grad():
        model = load_state(model_name, state)
        model.eval()
        x, y = _tensors(data)
        loss_sum = 0.0
        correct = 0
        for start in range(0, len(data), batch_size):
            logits = model(x[start : start + batch_size])
            target = y[start : start + batch_size]
            loss_sum += float(nn.functional.cross_entropy(logits, target, reduction="sum").item())
            correct += int((logits.argmax(dim=1) == target).sum().item())
    return Evaluation(accuracy=correct / len(data), loss=loss_sum / len(data), num_samples=len(data))


def sample_count(value: object) -> int | None:
    """``value`` as a number of samples, or None when it is not one: any integer of at least 1, including a numpy
    integer or a one-element integer tensor (counts computed with numpy or torch come back so); never a bool, a
    float or a string."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        return None
    try:
        count = operator.index(value)  # type: ignore[arg-type]
    except (TypeError, RuntimeError):  # not an integer; a tensor of more than one element
        return None
    return count if count >= 1 else None
