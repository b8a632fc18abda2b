"""A GPT-style byte-level transformer language model (25.5M parameters) on the Python Language Reference text.

A meshprov recipe (docs/recipes.md) that needs nothing but torch and numpy. The corpus is the text that ships with
every CPython: ``pydoc_data.topics`` (the reference-manual topics ``help()`` shows; 466 KB of English prose and
grammar in CPython 3.11.7; PSF License 2.0). Nothing is downloaded. Tokens are the UTF-8 bytes (vocabulary 256),
so no tokenizer is needed either.

Split (deterministic in ``(member, members, seed)`` for a given CPython; ``corpus_sha256()`` tells which text a
member has): the corpus is cut into non-overlapping windows of ``block + 1`` bytes; a permutation drawn from
``seed`` sets aside ``test_blocks`` windows as the shared held-out test set; the rest are dealt to ``members``
disjoint training shards. A sample is ``(x, y)`` = (a window's first ``block`` bytes, the same shifted by one).

One optimiser step of batch 8 × 128 bytes takes about a second on one CPU core; ``SETTINGS`` cap a round at
``max_steps`` steps (raise it, or ``epochs``, for a real run).
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional
from torch.utils.data import Dataset, Subset, TensorDataset

NAME = "transformer_lm"
VERSION = "1"
SETTINGS: dict[str, Any] = {
    "epochs": 1,
    "batch_size": 8,
    "lr": 3e-4,
    "weight_decay": 0.01,
    "optimizer": "adamw",
    "max_steps": 4,
}

VOCAB = 256  # bytes
CONTEXT = 256  # the longest sequence the position table covers
WIDTH = 512
LAYERS = 8
HEADS = 8
BLOCK = 128  # bytes per training sample (data(..., block=))
TEST_BLOCKS = 32  # held-out windows (data(..., test_blocks=)): 4,096 predicted bytes


class Block(nn.Module):
    """Pre-norm transformer block: causal multi-head self-attention, then a 4× GELU MLP, each residual."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(width, dim=2)
        shape = (batch, length, self.heads, width // self.heads)
        q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))
        attended = functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        out: torch.Tensor = x + self.down(functional.gelu(self.up(self.ln2(x))))
        return out


class ByteGPT(nn.Module):
    """Token and position embeddings, ``layers`` blocks, a final LayerNorm, and the output head tied to the
    token embedding. ``forward(x)`` takes int64 ``(batch, length)`` bytes and returns ``(batch, length, 256)``
    logits of the next byte. No buffers: the causal mask is the attention kernel's."""

    def __init__(
        self, width: int = WIDTH, layers: int = LAYERS, heads: int = HEADS, context: int = CONTEXT
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.context = context
        self.tokens = nn.Embedding(VOCAB, width)
        self.positions = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        # GPT-2's initialisation: N(0, 0.02), residual projections scaled down by the depth, biases 0.
        for name, parameter in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(parameter)
            elif parameter.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight", "down.weight")) else 0.02
                nn.init.normal_(parameter, mean=0.0, std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        if length > self.context:
            raise ValueError(f"a sequence of {length} bytes is longer than the context ({self.context})")
        h = self.tokens(x) + self.positions(torch.arange(length, device=x.device))
        for block in self.blocks:
            h = block(h)
        return self.ln(h) @ self.tokens.weight.T  # type: ignore[no-any-return]


def model() -> nn.Module:
    return ByteGPT()


@lru_cache(maxsize=1)
def corpus() -> bytes:
    """The reference-manual topics in sorted order, each followed by a blank line, as UTF-8."""
    from pydoc_data.topics import topics

    return "".join(topics[key].rstrip("\n") + "\n\n" for key in sorted(topics)).encode("utf-8")


def corpus_sha256() -> str:
    return hashlib.sha256(corpus()).hexdigest()


def split(
    member: int, members: int, seed: int, windows: int, test_blocks: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``member``'s training windows and of the shared test windows, out of ``windows``."""
    if members < 1:
        raise ValueError(f"members must be ≥ 1, got {members}")
    if not 0 <= member < members:
        raise ValueError(f"member must be in [0, {members}), got {member}")
    if test_blocks < 1 or windows - test_blocks < members:
        raise ValueError(
            f"{windows} windows cannot give {test_blocks} test windows and at least one to each of {members} "
            "members"
        )
    order = np.random.default_rng(seed).permutation(windows)
    return np.sort(order[test_blocks:][member::members]), np.sort(order[:test_blocks])


def data(
    member: int, members: int, seed: int, block: int = BLOCK, test_blocks: int = TEST_BLOCKS
) -> tuple[Dataset[Any], Dataset[Any]]:
    if not 1 <= block <= CONTEXT:
        raise ValueError(f"block must be in [1, {CONTEXT}], got {block}")
    text = np.frombuffer(corpus(), dtype=np.uint8)
    count = len(text) // (block + 1)
    train, test = split(member, members, seed, count, test_blocks)
    windows = torch.from_numpy(text[: count * (block + 1)].astype(np.int64).reshape(count, block + 1))
    return _pairs(windows[train]), _pairs(windows[test])


def _pairs(windows: torch.Tensor) -> TensorDataset:
    return TensorDataset(windows[:, :-1].contiguous(), windows[:, 1:].contiguous())


def tensors(data: Dataset[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of a whole dataset as two stacked tensors: a TensorDataset's own (also through Subsets of one,
    as validators pass their held-out slices), any other Dataset of ``(x, y)`` item by item."""
    indices: Any = None
    inner = data
    while isinstance(inner, Subset):
        indices = inner.indices if indices is None else [inner.indices[i] for i in indices]
        inner = inner.dataset
    if isinstance(inner, TensorDataset) and len(inner.tensors) == 2:
        x, y = inner.tensors
        if indices is None:
            return x, y
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return x[index], y[index]
    items = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
    if not items:
        return torch.empty(0), torch.empty(0)
    return (
        torch.stack([torch.as_tensor(item[0]) for item in items]),
        torch.stack([torch.as_tensor(item[1]) for item in items]),
    )


def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean next-byte cross-entropy (nats) over every position of every sequence."""
    return functional.cross_entropy(output.reshape(-1, VOCAB), target.reshape(-1))


def train(model: nn.Module, data: Dataset[Any], settings: dict[str, Any]) -> int:
    """AdamW over shuffled batches for ``epochs`` passes, stopping after ``max_steps`` steps if given (≤ 0: no
    cap); deterministic for a fixed ``seed``. Returns the number of distinct samples used."""
    x, y = tensors(data)
    epochs, batch_size = int(settings["epochs"]), int(settings["batch_size"])
    max_steps = int(settings.get("max_steps") or 0)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be ≥ 1, got {epochs} and {batch_size}")
    if len(y) == 0:
        raise ValueError("the training set is empty")
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=float(settings["lr"]), weight_decay=float(settings.get("weight_decay", 0.0))
    )
    generator = torch.Generator().manual_seed(int(settings.get("seed", 0)))
    used: set[int] = set()
    steps = 0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            if max_steps > 0 and steps >= max_steps:
                return len(used)
            batch = order[start : start + batch_size]
            optimiser.zero_grad(set_to_none=True)
            loss(model(x[batch]), y[batch]).backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            used.update(batch.tolist())
            steps += 1
    return len(used)


def evaluate(model: nn.Module, data: Dataset[Any]) -> dict[str, float]:
    """Mean next-byte cross-entropy (nats), perplexity and bits per byte over the test windows."""
    x, y = tensors(data)
    if len(y) == 0:
        raise ValueError("the evaluation set is empty")
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(y), 16):
            logits = model(x[start : start + 16])
            total += float(
                functional.cross_entropy(
                    logits.reshape(-1, VOCAB), y[start : start + 16].reshape(-1), reduction="sum"
                )
            )
    mean = total / y.numel()
    return {"loss": mean, "perplexity": math.exp(min(mean, 700.0)), "bits_per_byte": mean / math.log(2)}
