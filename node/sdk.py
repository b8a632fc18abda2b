"""The member SDK: an existing PyTorch training loop becomes a consortium member with a handful of added lines.

    from node.sdk import Member                                      # + 1

    for rnd in Member.from_settings().rounds():                      # + 2  (the loop below indented into it)
        model.load_state_dict(rnd.base)                              # + 3
        for epoch in range(epochs):                                  #   the script's own training, unchanged
            ...
        rnd.submit(model.state_dict(), num_samples=len(train_set))   # + 4

Everything else is the node's own round machinery (:class:`node.runner.NodeRunner`, with this SDK as its pluggable
training step): the contributor-role check, waiting for an open round, fetching and verifying the base by the
chain's digest, the delta against the base per dtype, the update file with its metadata (``frameworks``, and the
``dataset`` commitment when ``submit(..., dataset=train_set)`` is given), the maxSamples check, the digest on chain
(direct or ``relay=True``), publishing after the close, the verdict. Settings come from the environment like
``meshprov node run`` (``MESHPROV_PRIVATE_KEY_FILE``, ``MESHPROV_CHAIN_RPC_URL``, ``MESHPROV_DEPLOYMENT_FILE``,
``MESHPROV_TASK_ID``, ``MESHPROV_STORE``, …; docs/node.md).

The runner works in a background thread; :meth:`Member.rounds` yields a :class:`Round` whenever it needs an
update, and the loop body's ``rnd.submit`` hands the weights back. ``rnd.result()`` waits for the round's verdict.
A loop body that ends without ``submit`` stops the member (:class:`SdkError`); leaving the loop (``break``) stops it
cleanly.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ledger.errors import ConfigError, MeshprovError
from node.trainer import Trained

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ledger.recipe import RecipeRef
    from node.journal import RoundRecord
    from node.runner import NodeRunner

StateDict = dict[str, np.ndarray]
_POLL_S = 0.2


class SdkError(MeshprovError):
    """The member's script broke the SDK's contract (e.g. a round's body ended without ``rnd.submit``)."""


@dataclass
class Round:
    """One round this member trains: the base weights, the round's seed and the task's hyperparameters."""

    task: int
    number: int
    base_cid: str
    base: dict[str, torch.Tensor]
    """The round's base model as a torch state_dict: ``model.load_state_dict(rnd.base)``."""
    base_numpy: StateDict
    seed: int
    """A seed for this member and round (``round_seed``): use it for shuffling to vary batch orders per round."""
    settings: dict[str, Any]
    """The task specification's hyperparameters (empty when the task's spec names none)."""
    _submitted: threading.Event = field(default_factory=threading.Event, repr=False)
    _trained: Trained | None = field(default=None, repr=False)
    _record: RoundRecord | None = field(default=None, repr=False)
    _settled: threading.Event = field(default_factory=threading.Event, repr=False)
    _started: float = field(default_factory=time.perf_counter, repr=False)
    _member: Member | None = field(default=None, repr=False)

    def submit(
        self,
        weights: nn.Module | Mapping[str, Any],
        *,
        num_samples: int,
        dataset: Any | None = None,
        train_loss: float | None = None,
    ) -> None:
        """Hand the trained weights (a module, its ``state_dict()`` or numpy arrays) to the node, which makes the
        update (delta against the base), submits and publishes it. ``dataset`` (the torch Dataset trained on) adds
        the dataset commitment to the update's metadata. Names, shapes and dtypes are checked against the base
        here, so a mismatch raises in the script (``node.errors.StateMismatch``)."""
        from node.statedict import check_numpy_state, state_to_numpy

        if self._submitted.is_set():
            raise SdkError(f"round {self.number}: submit() was already called")
        from node.training import sample_count

        count = sample_count(num_samples)
        if count is None:
            raise SdkError(f"round {self.number}: num_samples must be a positive int, got {num_samples!r}")
        num_samples = count
        if isinstance(weights, Mapping) and all(isinstance(v, np.ndarray) for v in weights.values()):
            local = {k: np.array(v, copy=True) for k, v in weights.items()}
        else:
            local = state_to_numpy(weights)
        check_numpy_state(self.base, local, name=f"the base of round {self.number}")
        commitment = None
        if dataset is not None and self._member is not None:
            commitment = self._member.commit_dataset(dataset)
        from node.training import compute_delta

        self._trained = Trained(
            delta=compute_delta(local, self.base_numpy),
            num_samples=num_samples,
            train_loss=float(train_loss) if train_loss is not None else math.nan,
            seconds=time.perf_counter() - self._started,
            dataset=commitment,
        )
        self._submitted.set()

    @property
    def submitted(self) -> bool:
        return self._submitted.is_set()

    def result(self, timeout: float | None = None) -> RoundRecord | None:
        """The round's record once the node has its verdict (``status`` accepted / rejected / missed); None when
        ``timeout`` seconds pass first."""
        self._settled.wait(timeout)
        return self._record


class _Done:
    """The runner thread finished (or failed: ``error``)."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class SdkTrainer:
    """The runner's training step: hand the base to the script's loop, wait for its ``submit``."""

    def __init__(self, member: Member, recipe_ref: RecipeRef | None) -> None:
        self.member = member
        self._recipe_ref = recipe_ref

    @property
    def recipe_ref(self) -> RecipeRef | None:
        return self._recipe_ref

    def steps(self) -> int | None:
        return None

    def train(
        self,
        round_: int,
        base_cid: str,
        base: Mapping[str, np.ndarray],
        *,
        seed: int,
        progress: Any,
    ) -> Trained:
        from node.runner import Stopped
        from node.statedict import to_torch

        runner = self.member.runner
        spec = runner.spec
        rnd = Round(
            task=runner.options.task,
            number=round_,
            base_cid=base_cid,
            base={k: to_torch(v) for k, v in base.items()},
            base_numpy={k: np.asarray(v) for k, v in base.items()},
            seed=seed,
            settings=dict(spec.hyperparameters) if spec is not None else {},
            _member=self.member,
        )
        self.member.handoff.put(rnd)
        while not rnd._submitted.wait(_POLL_S):
            if runner.stop.is_set():
                raise Stopped
        assert rnd._trained is not None
        return rnd._trained


class Member:
    """A consortium member driven by the script's own training loop (module docstring)."""

    def __init__(self, make_runner: Any, *, recipe_ref: RecipeRef | None = None) -> None:
        self.handoff: queue.Queue[Round | _Done] = queue.Queue()
        self.records: list[RoundRecord] = []
        self._recipe_ref = recipe_ref
        self._manifests: dict[int, str] = {}
        self._rounds: dict[int, Round] = {}
        self.runner: NodeRunner = make_runner(SdkTrainer(self, recipe_ref), self._on_record)
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(
        cls,
        *,
        rounds: int | None = None,
        task: int | None = None,
        relay: bool = False,
        recipe: str | None = None,
        say: Any = None,
        **options: Any,
    ) -> Member:
        """A member configured like ``meshprov node run`` (settings from ``MESHPROV_*`` and the config file).

        ``rounds``: stop after that many rounds (default: forever); ``relay``: gasless submissions through the
        relayer's queue; ``recipe``: a recipe whose hash must be the task's (otherwise nothing is checked: the
        script is its own code); other ``NodeOptions`` fields (e.g. ``shard``, ``poll_s``) by name."""
        from eth_account import Account

        from ledger.chain.client import LedgerClient
        from ledger.cli.endpoints import chain_url
        from ledger.content import open_store
        from ledger.settings import load_settings
        from node.faults import NoSigningKey
        from node.journal import Journal
        from node.runner import NodeOptions, NodeRunner

        s = load_settings()
        key = s.signing_key()
        if key is None:
            raise NoSigningKey()
        try:
            node_options = NodeOptions(task=task or s.task_id, rounds=rounds, relay=relay, **options)
        except TypeError as exc:
            raise ConfigError(
                f"Member.from_settings: {exc}", hint="pass NodeOptions fields by name"
            ) from None
        recipe_ref = None
        if recipe is not None:
            from node.recipe import load_recipe

            recipe_ref = load_recipe(recipe).ref
        client = LedgerClient.from_settings(s, endpoint=chain_url(s), read_only=relay)
        relay_redis = None
        if relay:
            import redis

            from ledger.cli.endpoints import redis_url

            relay_redis = redis.Redis.from_url(redis_url(s), socket_timeout=30, socket_connect_timeout=5)
        address = Account.from_key(key).address

        def make_runner(trainer: SdkTrainer, on_record: Any) -> NodeRunner:
            return NodeRunner(
                node_options,
                client=client,
                store=open_store(s),
                key=key,
                journal=Journal.for_member(s.data_dir, address),
                max_update_bytes=s.max_update_bytes,
                say=say or _say,
                relay_redis=relay_redis,
                trainer=trainer,
                on_record=on_record,
            )

        return cls(make_runner, recipe_ref=recipe_ref)

    @property
    def address(self) -> str:
        return self.runner.address

    def commit_dataset(self, dataset: Any) -> str:
        """The commitment of the script's training set (its manifest kept beside the journal; computed once per
        Dataset object)."""
        from node.provenance import dataset_manifest, keep_manifest

        cached = self._manifests.get(id(dataset))
        if cached is not None:
            return cached
        o = self.runner.options
        manifest = dataset_manifest(
            dataset, recipe=self._recipe_ref, source="sdk", member=o.shard, members=o.shards, seed=o.seed
        )
        _, commitment = keep_manifest(self.runner.journal.root / "datasets", manifest)
        self._manifests[id(dataset)] = commitment
        return commitment

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            self.records = self.runner.run()
        except BaseException as exc:  # handed to the script's thread, which re-raises it
            error = exc
        finally:
            self.handoff.put(_Done(error))

    def _on_record(self, record: RoundRecord) -> None:
        """The runner is done with a round (verdict known, or missed): wake ``rnd.result()``."""
        rnd = self._rounds.get(record.round)
        if rnd is not None:
            rnd._record = record
            rnd._settled.set()

    def rounds(self) -> Iterator[Round]:
        """Yield a :class:`Round` whenever the node needs an update; ends when ``rounds`` are done."""
        if self._thread is not None:
            raise SdkError("rounds() was already started for this member")
        self._thread = threading.Thread(target=self._run, name="meshprov-member", daemon=True)
        self._thread.start()
        try:
            while True:
                item = self.handoff.get()
                if isinstance(item, _Done):
                    if item.error is not None:
                        raise item.error
                    return
                self._rounds[item.number] = item
                yield item
                if not item.submitted:
                    raise SdkError(
                        f"round {item.number}: the loop body ended without rnd.submit(...)",
                        hint="call rnd.submit(model.state_dict(), num_samples=n) at the end of each round",
                    )
        finally:
            if self._thread.is_alive():  # the script left the loop early (break, an exception): stop the node
                self.runner.stop.set()
            self._thread.join(timeout=30)


def _say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)
