"""Recipes: the task's code, installed by each member (a module name, a ``.py`` file or a package directory).

    recipe = load_recipe("digits")                         # builtin, an installed module, or a path
    model = recipe.build_model(seed=0)                     # torch seeded in a forked RNG: same seed, same weights
    train, test = recipe.data(member=0, members=3, seed=0)
    n = recipe.fit(model, train, {"epochs": 5, "batch_size": 32, "lr": 0.1, "seed": 7})
    metrics = recipe.evaluate(model, test)                 # {"loss": …, …}
    recipe.ref                                             # RecipeRef(name, version, cid of its files)

The interface a recipe module provides (docs/recipes.md):

- ``model() -> torch.nn.Module`` (required);
- ``data(member, members, seed) -> (train, test)`` torch Datasets of ``(x, y)`` (required; extra keyword
  parameters with defaults, e.g. ``alpha``, receive the task's ``shards`` settings of the same name);
- ``evaluate(model, data) -> dict[str, float]`` with a ``"loss"`` (required);
- ``train(model, data, settings) -> int`` (optional: the samples used; otherwise :func:`default_fit`);
- ``loss(output, target)`` (optional, for the default loop; default cross-entropy);
- ``NAME``, ``VERSION`` (optional strings; defaults: the module's name and ``"0"``), ``SETTINGS`` (optional
  dict: default hyperparameters, overridden by the task's).

Code is never downloaded: the task anchors the hash of the recipe's files (:func:`ledger.recipe.recipe_cid`) and
the node refuses to train when the installed recipe's hash differs.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from ledger.errors import MeshprovError
from ledger.recipe import RecipeError, RecipeRef, TaskSpec, recipe_cid
from node.training import sample_count, torch_settings

log = logging.getLogger(__name__)

BUILTIN_PACKAGE = "node.recipes"
DEFAULT_RECIPE = "digits"
BUILTINS = ("digits", "digits_cnn")

Progress = Callable[[int, int], None]

DEFAULT_SETTINGS: dict[str, Any] = {
    "epochs": 1,
    "batch_size": 32,
    "lr": 0.01,
    "optimizer": "sgd",
    "momentum": 0.0,
    "weight_decay": 0.0,
    "seed": 0,
    "threads": 1,
}
"""What the default loop uses for a setting neither the recipe's ``SETTINGS`` nor the task gives."""

_OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class FitResult:
    """What :meth:`Recipe.fit_result` reports: samples used, the default loop's mean loss of the last epoch
    (NaN when the recipe trains itself), optimiser steps (0 when unknown)."""

    num_samples: int
    train_loss: float
    steps: int


class Recipe:
    """A loaded recipe module and what meshprov does with it (see the module docstring)."""

    def __init__(self, module: ModuleType, source: Path, requested: str) -> None:
        self.module = module
        self.source = source
        self.requested = requested
        self._said_distinct = False
        missing = [
            name for name in ("model", "data", "evaluate") if not callable(getattr(module, name, None))
        ]
        if missing:
            raise RecipeError(
                f"the recipe {requested!r} ({source}) has no {' / '.join(f'`{m}`' for m in missing)} function",
                hint="a recipe defines model(), data(member, members, seed) and evaluate(model, data) "
                "(docs/recipes.md)",
            )
        for optional in ("train", "loss"):
            if hasattr(module, optional) and not callable(getattr(module, optional)):
                raise RecipeError(f"the recipe {requested!r}: `{optional}` is not a function")
        self.name = _attribute(module, "NAME", module.__name__.rpartition(".")[2], requested)
        self.version = _attribute(module, "VERSION", "0", requested)
        settings = getattr(module, "SETTINGS", {})
        if not isinstance(settings, Mapping):
            raise RecipeError(
                f"the recipe {requested!r}: `SETTINGS` must be a dict of default hyperparameters"
            )
        self.settings: dict[str, Any] = dict(settings)

    def __repr__(self) -> str:
        return f"Recipe({self.name!r}, version={self.version!r}, source={str(self.source)!r})"

    @cached_property
    def cid(self) -> str:
        """CIDv0 of the deterministic archive of the recipe's files (what the task's spec names)."""
        return recipe_cid(self.source)

    @property
    def ref(self) -> RecipeRef:
        return RecipeRef(self.name, self.version, self.cid)

    @property
    def trains_itself(self) -> bool:
        return callable(getattr(self.module, "train", None))

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Name the recipe and the step when the recipe's own code fails (exit 5 with a message, not a traceback)."""
        try:
            yield
        except MeshprovError:
            raise
        except Exception as exc:
            raise RecipeError(
                f"{what} of the recipe {self.name!r} ({self.source}) failed: {type(exc).__name__}: {exc}",
                hint="the recipe's code raised this; run it directly to debug (docs/recipes.md)",
            ) from exc

    # ─── the interface ─────────────────────────────────────────────────────────────────────────────────────
    def build_model(self, seed: int = 0) -> nn.Module:
        """``model()`` with torch seeded by ``seed`` inside a forked RNG: deterministic initial weights, and
        nobody else's random draws disturbed."""
        with torch.random.fork_rng(devices=[]), self._calling("model()"):
            torch.manual_seed(seed)
            model = self.module.model()
        if not isinstance(model, nn.Module):
            raise RecipeError(
                f"model() of the recipe {self.name!r} returned {type(model).__name__}, not a torch.nn.Module"
            )
        return model

    def data(
        self, member: int, members: int, seed: int, /, **options: Any
    ) -> tuple[Dataset[Any], Dataset[Any]]:
        """``data(member, members, seed)``; ``options`` reach the function only for parameters it declares
        (e.g. the task's ``shards`` ``alpha``), so a recipe need not accept settings it does not use."""
        fn = self.module.data
        accepted = _accepted_keywords(fn, {k: v for k, v in options.items() if k not in _POSITIONAL})
        with self._calling("data()"):
            result = fn(member, members, seed, **accepted)
        if not isinstance(result, tuple | list) or len(result) != 2:
            raise RecipeError(
                f"data() of the recipe {self.name!r} returned {type(result).__name__}, not a (train, test) pair"
            )
        train, test = result
        for label, part in (("train", train), ("test", test)):
            if not hasattr(part, "__getitem__") or not hasattr(part, "__len__"):
                raise RecipeError(
                    f"data() of the recipe {self.name!r}: the {label} set is a {type(part).__name__}, not a "
                    "torch Dataset with a length"
                )
        return train, test

    def merged_settings(self, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults < the recipe's ``SETTINGS`` < ``settings`` (the task's hyperparameters and the round's seed)."""
        return {**DEFAULT_SETTINGS, **self.settings, **(settings or {})}

    def fit(self, model: nn.Module, data: Dataset[Any], settings: Mapping[str, Any] | None = None) -> int:
        """Train ``model`` in place on ``data``: the recipe's ``train`` or :func:`default_fit`; the samples used."""
        return self.fit_result(model, data, settings).num_samples

    def fit_result(
        self,
        model: nn.Module,
        data: Dataset[Any],
        settings: Mapping[str, Any] | None = None,
        *,
        progress: Progress | None = None,
    ) -> FitResult:
        merged = self.merged_settings(settings)
        threads = merged.get("threads")
        with (
            torch_settings(threads if isinstance(threads, int) and threads > 0 else None),
            self._calling("training"),
        ):
            model.train()
            if self.trains_itself:
                returned = self.module.train(model, data, dict(merged))
                used = sample_count(returned)
                if used is None:
                    raise RecipeError(
                        f"train() of the recipe {self.name!r} returned {returned!r}, not the number of samples "
                        "used (a positive int)"
                    )
                return FitResult(self._distinct(used, data), math.nan, 0)
            loss_fn = getattr(self.module, "loss", None) or nn.functional.cross_entropy
            return default_fit(model, data, merged, loss_fn=loss_fn, progress=progress)

    def _distinct(self, used: int, data: Dataset[Any]) -> int:
        """A count over the data's length is samples seen more than once (every epoch counted): an update claims
        distinct samples, at most the shard (the task's ``maxSamples`` is the largest shard, so a member claiming
        three epochs' worth was refused and stopped). Counted as the data's length, and said once."""
        try:
            size = len(data)  # type: ignore[arg-type]
        except TypeError:  # a member's own data without a length: nothing to bound the count by
            return used
        if used <= size:
            return used
        if not self._said_distinct:
            self._said_distinct = True
            log.warning(
                "train() of the recipe %r returned %d samples, more than the %d in its data (samples seen in every "
                "epoch?): counted as %d, the distinct samples an update claims",
                self.name, used, size, size,
            )  # fmt: skip
        return size

    def evaluate(self, model: nn.Module, data: Dataset[Any]) -> dict[str, float]:
        """``evaluate(model, data)`` in eval mode without gradients (the mode is restored); the result must be a
        dict with a ``"loss"`` whose values are all numbers (returned as floats)."""
        was_training = model.training
        model.eval()
        try:
            with torch_settings(1), torch.no_grad(), self._calling("evaluate()"):
                result = self.module.evaluate(model, data)
        finally:
            model.train(was_training)
        if not isinstance(result, Mapping):
            raise RecipeError(
                f"evaluate() of the recipe {self.name!r} returned {type(result).__name__}, not a dict of metrics"
            )
        if "loss" not in result:
            raise RecipeError(
                f'evaluate() of the recipe {self.name!r} returned no "loss" (it returned {sorted(result)})',
                hint='return at least {"loss": mean loss}; validators compare it before and after an update',
            )
        metrics: dict[str, float] = {}
        for key, value in result.items():
            try:
                metrics[str(key)] = float(value)
            except (TypeError, ValueError):
                raise RecipeError(
                    f"evaluate() of the recipe {self.name!r}: metric {key!r} is {value!r}, not a number"
                ) from None
        return metrics


def _attribute(module: ModuleType, name: str, default: str, requested: str) -> str:
    value = getattr(module, name, default)
    if not isinstance(value, str) or not value:
        raise RecipeError(f"the recipe {requested!r}: `{name}` must be a non-empty string, got {value!r}")
    return value


_POSITIONAL = ("member", "members", "seed")


def _accepted_keywords(fn: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


# ─── the default loop ─────────────────────────────────────────────────────────────────────────────────────────
def _setting(
    settings: Mapping[str, Any], name: str, kind: type, check: Callable[[Any], bool], need: str
) -> Any:
    value = settings[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) or not check(value):
        raise RecipeError(f"the setting {name}={value!r} is invalid: {need}")
    return value


def _batch(data: Dataset[Any], indices: torch.Tensor) -> Any:
    # A TensorDataset is indexed by the whole batch at once (same values as stacking its items, much faster).
    if isinstance(data, TensorDataset):
        return tuple(t[indices] for t in data.tensors)
    from torch.utils.data import default_collate

    return default_collate([data[int(i)] for i in indices])


def default_fit(
    model: nn.Module,
    data: Dataset[Any],
    settings: Mapping[str, Any],
    *,
    loss_fn: Callable[[Any, Any], torch.Tensor] = nn.functional.cross_entropy,
    progress: Progress | None = None,
) -> FitResult:
    """Mini-batch training: ``epochs`` passes in an order drawn from a ``torch.Generator`` seeded by ``seed``,
    ``batch_size``, the ``optimizer`` (sgd with ``momentum``, adam, adamw) at ``lr`` and ``weight_decay``, loss
    ``loss_fn(model(x), y)``. Deterministic for a fixed seed (the node turns deterministic algorithms on). For a
    model with BatchNorm layers, a last batch of one sample is folded into the batch before it (BatchNorm cannot
    train on one sample; the sizes of members' shards are arbitrary)."""
    epochs = _setting(settings, "epochs", int, lambda v: v >= 1, "an integer ≥ 1")
    batch_size = _setting(settings, "batch_size", int, lambda v: v >= 1, "an integer ≥ 1")
    lr = _setting(settings, "lr", float, lambda v: v > 0 and math.isfinite(v), "a positive number")
    momentum = _setting(settings, "momentum", float, lambda v: 0 <= v < 1, "a number in [0, 1)")
    weight_decay = _setting(settings, "weight_decay", float, lambda v: v >= 0, "a non-negative number")
    seed = _setting(settings, "seed", int, lambda v: v >= 0, "a non-negative integer")
    optimizer_name = settings["optimizer"]
    if optimizer_name not in _OPTIMIZERS:
        raise RecipeError(
            f"the setting optimizer={optimizer_name!r} is invalid: one of {', '.join(_OPTIMIZERS)}"
        )
    n = len(data)  # type: ignore[arg-type]
    if n == 0:
        raise RecipeError("the training set is empty: a member needs at least one sample to train")
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser: torch.optim.Optimizer
    if optimizer_name == "sgd":
        optimiser = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    elif optimizer_name == "adam":
        optimiser = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1 and _has_batch_norm(model):
        # BatchNorm cannot train on a batch of one sample: fold a trailing single sample into the batch before it.
        starts.pop()
    ends = [*starts[1:], n]
    total = len(starts) * epochs
    step = 0
    epoch_loss = 0.0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        epoch_loss = 0.0
        for start, end in zip(starts, ends, strict=True):
            indices = order[start:end]
            x, y = _batch(data, indices)
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            epoch_loss += float(loss.item()) * len(indices)
            step += 1
            if progress is not None:
                progress(step, total)
    return FitResult(n, epoch_loss / n, total)


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def classification_metrics(
    model: nn.Module, data: Dataset[Any], *, batch_size: int = 1024
) -> dict[str, float]:
    """Mean cross-entropy and accuracy of a classifier over ``data`` (an ``evaluate`` recipes may reuse)."""
    n = len(data)  # type: ignore[arg-type]
    if n == 0:
        raise RecipeError("the evaluation set is empty")
    loss_sum = 0.0
    correct = 0
    for start in range(0, n, batch_size):
        x, y = _batch(data, torch.arange(start, min(n, start + batch_size)))
        logits = model(x)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum").item())
        correct += int((logits.argmax(dim=1) == y).sum().item())
    return {"loss": loss_sum / n, "accuracy": correct / n}


# ─── loading ──────────────────────────────────────────────────────────────────────────────────────────────────
def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith(".py") or text in (".", "..") or Path(text).exists()


def _source_of(module: ModuleType, requested: str) -> Path:
    file = getattr(module, "__file__", None)
    if not file:
        raise RecipeError(f"the recipe module {requested!r} has no source file (a namespace package?)")
    path = Path(file).resolve()
    if path.suffix != ".py":
        raise RecipeError(f"the recipe module {requested!r} is not Python source ({path})")
    return path.parent if path.name == "__init__.py" else path


def _import_path(path: Path, requested: str) -> ModuleType:
    path = path.resolve()
    if path.name == "__init__.py":
        path = path.parent  # the package, as if its directory were given
    if path.is_dir():
        init = path / "__init__.py"
        if not init.is_file():
            raise RecipeError(
                f"the recipe directory {path} has no __init__.py", hint="a recipe directory is a package"
            )
        name, location, search = path.name, init, [str(path)]
    elif path.is_file() and path.suffix == ".py":
        name, location, search = path.stem, path, None
    else:
        raise RecipeError(
            f"the recipe {requested!r} is neither a .py file nor a package directory ({path} does not exist)"
            if not path.exists()
            else f"the recipe {requested!r} is neither a .py file nor a package directory",
            hint="give a module name, a path to a .py file, or a package directory",
        )
    existing = sys.modules.get(name)
    if existing is not None:
        if getattr(existing, "__file__", None) and Path(existing.__file__ or "").resolve() == location:
            return existing
        # Another module already has this name (e.g. a recipe file called data.py): load under a private name.
        name = f"_meshprov_recipe_{name}_{hashlib.sha256(str(location).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, location, submodule_search_locations=search)
    if spec is None or spec.loader is None:
        raise RecipeError(f"cannot import the recipe {requested!r} from {location}")
    module = importlib.util.module_from_spec(spec)
    # Registered so that the package's own imports (relative or by its name) resolve while it executes.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise RecipeError(
            f"importing the recipe {requested!r} ({location}) failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def load_recipe(name_or_path: str) -> Recipe:
    """The recipe named by a builtin name (``digits``), an importable module name (``mypkg.recipe``), a path to a
    ``.py`` file or a package directory. Raises :class:`ledger.recipe.RecipeError` naming what is wrong."""
    requested = str(name_or_path).strip()
    if not requested:
        raise RecipeError(
            "no recipe named", hint=f"give a module name, a path, or a builtin ({', '.join(BUILTINS)})"
        )
    if requested in BUILTINS:
        module = importlib.import_module(f"{BUILTIN_PACKAGE}.{requested}")
    elif _looks_like_path(requested):
        module = _import_path(Path(requested).expanduser(), requested)
    else:
        try:
            module = importlib.import_module(requested)
        except ModuleNotFoundError as exc:
            if exc.name and requested.startswith(exc.name):
                raise RecipeError(
                    f"no recipe module {requested!r} is installed",
                    hint=f"pip install it, give a path to a .py file or package directory, or use a builtin "
                    f"({', '.join(BUILTINS)})",
                ) from None
            raise RecipeError(f"importing the recipe {requested!r} failed: {exc}") from exc
        except Exception as exc:
            raise RecipeError(
                f"importing the recipe {requested!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    return Recipe(module, _source_of(module, requested), requested)


def builtin_for(cid: str) -> str | None:
    """The builtin recipe whose files have this CID, if any (a node without --recipe runs the task's builtin)."""
    for name in BUILTINS:
        if load_recipe(name).cid == cid:
            return name
    return None


def as_torch_dataset(data: Any) -> Dataset[Any]:
    """A ``node.data.Dataset`` (the digits arrays of the old ``--data`` hook) as a TensorDataset; any torch
    Dataset unchanged."""
    from node.data import Dataset as ArrayDataset

    if isinstance(data, ArrayDataset):
        import numpy as np

        return TensorDataset(
            torch.from_numpy(np.ascontiguousarray(data.x, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(data.y, dtype=np.int64)),
        )
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise RecipeError(f"the member's data is a {type(data).__name__}, not a torch Dataset with a length")
    return data  # type: ignore[no-any-return]


def task_spec(
    recipe: Recipe,
    *,
    members: int,
    seed: int = 0,
    alpha: float = 0.5,
    hyperparameters: Mapping[str, Any] | None = None,
    checks: Mapping[str, Any] | None = None,
    dataset: str | None = None,
) -> TaskSpec:
    """The schema-2 specification of a task running ``recipe``: its ref, the hyperparameters (default: the default
    loop's settings with the recipe's ``SETTINGS``, written out in full so the record is explicit), the seed, a
    split over ``members`` and the validators' ``checks``. The split is recorded as it happens: a Dirichlet(α)
    split when the recipe's ``data()`` takes ``alpha``, else ``{"kind": "recipe"}`` (the recipe's own split, with
    no α that was never used). ``checks`` also anchor ``zscore_min_peers``
    (:data:`~ledger.checks.limits.SPEC_ZSCORE_MIN_PEERS`) unless they name it or turn the z-score off."""
    from ledger.recipe import TaskSpec

    if hyperparameters is None:
        defaults = recipe.merged_settings()
        hyperparameters = _json_settings(
            recipe, {k: v for k, v in defaults.items() if k not in ("seed", "threads")}
        )
    return TaskSpec(
        recipe=recipe.ref,
        hyperparameters=dict(hyperparameters),
        seed=seed,
        shards=(
            {"kind": "dirichlet", "alpha": alpha, "members": members}
            if "alpha" in _accepted_keywords(recipe.module.data, {"alpha": alpha})
            else {"kind": "recipe", "members": members}
        ),
        checks=_with_small_round_peers(checks or {}),
        dataset=dataset,
    )


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and tuples as lists, recursively (what JSON holds)."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _json_settings(recipe: Recipe, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe's settings as the specification anchors them (JSON): numpy numbers and tuples become Python
    numbers and lists; any other value JSON cannot hold (a torch dtype, a function) is the recipe's error, named,
    before a task is made. Before, the demo started its chain and store and then failed writing the spec, with a
    hint about ``TaskSpec.to_json``."""
    from ledger.updatefile.canonical import NotCanonical, canonical_json

    out: dict[str, Any] = {}
    for key, value in settings.items():
        plain = _plain(value)
        try:
            canonical_json({str(key): plain})
        except (NotCanonical, TypeError, ValueError) as exc:
            problem = exc.problem if isinstance(exc, NotCanonical) else str(exc)
            raise RecipeError(
                f"the recipe {recipe.name!r}'s setting {key!r} = {value!r} cannot be written in a task's "
                f"specification ({problem})",
                hint="SETTINGS values must be JSON: numbers, strings, booleans, lists or objects (a dtype as its "
                "name, e.g. 'float32', turned into the object in train())",
            ) from None
        out[key] = plain
    return out


def _with_small_round_peers(checks: Mapping[str, Any]) -> dict[str, Any]:
    """``checks`` with ``zscore_min_peers`` anchored when a z-score is: a round of three updates is judged by it
    too, not by the absolute bounds alone (a boosted update in such a round was accepted and paid the most)."""
    from ledger.checks.limits import SPEC_ZSCORE_MIN_PEERS

    if ("zscore" in checks and checks["zscore"] is None) or "zscore_min_peers" in checks:
        return dict(checks)  # the z-score is off, or the caller chose
    return {**checks, "zscore_min_peers": SPEC_ZSCORE_MIN_PEERS}
