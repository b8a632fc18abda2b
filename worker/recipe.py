"""A validator's recipe: the task's code, installed by the validator, judging updates with the recipe's own
``evaluate`` and training the reference update with the recipe's ``train`` (or the default loop).

``worker`` imports only ``ledger`` (docs/layout.md), and a recipe is torch code run through ``node.recipe``, so
the worker reaches it through a *host*: a plug-in named ``MODULE:FUNCTION`` (default :data:`DEFAULT_HOST`, the
one meshprov ships) called as

    host(recipe: str, spec: TaskSpec | None) -> RecipeHooks

where ``recipe`` is what ``meshprov worker run --recipe`` was given (a builtin name, a module name, a ``.py``
path or a package directory) and ``spec`` the task's specification read from the chain and the store. The hooks
give the worker exactly what it called ``--evaluator`` and ``--reference-trainer`` before recipes:

* ``ref``: the installed recipe's name, version and hash (``ledger.recipe.RecipeRef``);
* ``metrics(weights) -> dict[str, float]``: the recipe's ``evaluate`` of full weights on this validator's
  held-out data, with a ``"loss"`` (the loss gate, ``LOSS_REGRESSION``, compares it before and after an update);
* ``reference(weights, *, seed, steps) -> delta``: the validator's reference update (``worker.reference``).

Before serving, :func:`check_recipe` refuses a recipe whose hash is not the one the task's specification anchors
(:class:`RecipeMismatch`, exit 10, ``RECIPE_MISMATCH``), as the node refuses to train with one: a validator judging with other code
than the members train with would score them against the wrong task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ledger.errors import ConfigError
from ledger.recipe import RecipeMismatch

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from ledger.content import ContentStore
    from ledger.recipe import RecipeRef, TaskSpec
    from worker.chain import WorkerChain

DEFAULT_HOST = "lab.recipe_validator:validator_hooks"
"""The host meshprov ships: ``node.recipe.load_recipe`` plus the held-out slice ``HELDOUT_SLICE=v/V`` of the
recipe's test set (lab/recipe_validator.py)."""


class RecipeHooks(Protocol):
    """What a validator needs of a recipe (see the module docstring)."""

    @property
    def ref(self) -> RecipeRef: ...

    def metrics(self, weights: Mapping[str, NDArray[Any]]) -> dict[str, float]: ...

    def reference(
        self, weights: Mapping[str, NDArray[Any]], *, seed: int, steps: int
    ) -> Mapping[str, NDArray[Any]]: ...


def _host(spec: str) -> Callable[..., RecipeHooks]:
    from worker.plugins import load_plugin

    host: Callable[..., RecipeHooks] = load_plugin(spec, "the recipe host", example=DEFAULT_HOST)
    return host


def read_task_spec(chain: WorkerChain, store: ContentStore, task_id: int) -> TaskSpec | None:
    """The task's schema-2 specification (bounded read, strict parse); None for a pre-recipe (legacy) one.

    An unreadable or invalid specification is an error naming the CID: a validator does not guess the task."""
    from ledger.content import digest_to_cid, read_bytes
    from ledger.content.errors import ContentError
    from ledger.recipe import MAX_SPEC_BYTES, LegacyTaskSpec, TaskSpecRejected, parse_task_spec

    cid = digest_to_cid(chain.task(task_id).params.spec_digest)
    try:
        raw = read_bytes(store, cid, max_bytes=MAX_SPEC_BYTES)
    except (ContentError, OSError) as exc:
        raise ConfigError(
            f"cannot read the specification {cid} of task {task_id}: {str(exc).splitlines()[0]}",
            hint="the recipe is checked against the task's specification: make the store hold it (the deployer "
            "puts it there)",
        ) from None
    try:
        return parse_task_spec(raw)
    except LegacyTaskSpec:
        return None
    except TaskSpecRejected as exc:
        raise TaskSpecRejected(f"task {task_id}'s specification {cid}: {exc.problem}") from None


def check_recipe(task_id: int, installed: RecipeRef, spec: TaskSpec | None) -> None:
    """Refuse (:class:`RecipeMismatch`) a recipe whose hash is not the task's; a legacy spec names none."""
    if spec is not None and installed.cid != spec.recipe.cid:
        raise RecipeMismatch(task_id, installed, spec.recipe, refusing="judge its updates")


def load_hooks(recipe: str, spec: TaskSpec | None, *, host: str = DEFAULT_HOST) -> RecipeHooks:
    """The host's hooks for ``recipe`` (``ConfigError`` when the host returns something else)."""
    hooks = _host(host)(recipe, spec)
    for name in ("ref", "metrics", "reference"):
        if not hasattr(hooks, name):
            raise ConfigError(f"the recipe host {host!r} returned hooks without `{name}`")
    return hooks


def loss_of(hooks: RecipeHooks) -> Callable[[Mapping[str, NDArray[Any]]], float]:
    """The loss hook (``ledger.checks.LossFn``) of the recipe's ``evaluate``: its ``"loss"``."""

    def loss(weights: Mapping[str, NDArray[Any]]) -> float:
        metrics = hooks.metrics(weights)
        if "loss" not in metrics:
            raise ConfigError(f'the recipe {hooks.ref.name} evaluates to no "loss" ({sorted(metrics)})')
        return float(metrics["loss"])

    return loss
