"""The member's round loop: wait for an open round, train on the base, submit the digest, publish the content once
submissions close, wait for the verdict.

One round, as :meth:`NodeRunner.step` runs it (every step re-reads the chain, so any step may be repeated):

1. the task's live round; if this member already submitted to it, go to 6; if it is not open, wait for the next;
2. the base (genesis or the previous aggregate) from the store by the digest the chain records, CID verified;
3. local training on the member's data (or reuse the update file an earlier run left for this round): the
   pluggable step of :mod:`node.trainer`, the task's recipe (``--recipe``) or the member's own loop
   (:mod:`node.sdk`); before the first round the runner reads the task's specification and refuses a recipe whose
   hash is not the task's (:class:`RecipeMismatch`, exit 10);
4. the update file (delta, canonical metadata, optional DP record) in ``<data_dir>/node/<address>/updates/``,
   kept for good; its sample count must not exceed the task's ``maxSamples`` (:class:`TooManySamplesClaimed`);
5. the submission of the file's *digest only*, direct (the member pays gas) or relayed (EIP-712 signature, see
   :mod:`node.relay`); a round that closed meanwhile keeps the file, is logged as ``missed``, and the loop moves on;
6. once submissions have closed, the content is put in the store (docs/protocol.md R1: before the close nobody
   can read it, so nobody can submit a copy of it as their own); then polling (with backoff) until the round is
   finalized, and the verdict from the chain's events: accepted or rejected with the validators' reason codes and
   the consensus score, the reward accrued and the new reputation.

Faults: a chain that stops answering (or restarts) is waited for and reconnected to, then the step is repeated;
a base the store cannot give is retried with backoff and then ends the node with :class:`BaseUnavailable`
(exit 6); a key without the contributor role ends it with :class:`NotMember` (exit 9). See docs/node.md.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ledger.chain.errors import RoundNotLive
from ledger.chain.types import Phase, Role, Submission
from ledger.content import ContentStore, digest_to_cid, read_bytes
from ledger.errors import ConfigError, MeshprovError, ServiceUnavailable
from ledger.reasons import Reason
from ledger.recipe import RecipeMismatch
from node.faults import NotMember, SpecUnavailable, TooManySamplesClaimed
from node.journal import Journal, RoundRecord
from node.packaging import Submitted, put_update, submit_direct, write_update_file
from node.progress import Bars, NoBars

if TYPE_CHECKING:
    import redis

    from ledger.chain.client import LedgerClient
    from ledger.chain.types import Finalization, ScoresRevealed
    from ledger.recipe import RecipeRef, TaskSpec
    from node.recipe import Recipe
    from node.trainer import Trainer

StateDict = dict[str, np.ndarray]
_Logged = TypeVar("_Logged")


@dataclass(frozen=True)
class NodeOptions:
    """What `meshprov node run` was asked to do (see its --help for each option)."""

    task: int = 1
    recipe: str | None = None
    """The recipe (builtin name, module name, .py path or package dir); None: the builtin the task's spec names,
    else the builtin of ``model``, else ``digits``."""
    model: str | None = None
    """Legacy architecture name: ``mlp`` is the builtin recipe ``digits``, ``cnn`` is ``digits_cnn``."""
    require_spec: bool = False
    """Refuse to train when the task's spec cannot be read or names no recipe (default: warn, train unchecked)."""
    shard: int = 0
    shards: int = 1
    alpha: float | None = None
    """Dirichlet α of the simulated split; None: the task spec's ``shards.alpha`` (else the recipe's default)."""
    seed: int = 0
    rounds: int | None = None
    """Stop after this many rounds (each submitted-and-finalized or missed round counts); None: forever."""
    behaviour: str = "honest"
    scale_factor: float = 10.0
    dp_clip: float | None = None
    dp_noise: float | None = None
    dp_delta: float = 1e-5
    relay: bool = False
    data_hook: str | None = None
    """MODULE:FUNCTION returning the member's own training set (a torch Dataset, or the old ``node.data.Dataset``)
    instead of the recipe's ``data(shard, shards, seed)``."""
    poll_s: float = 0.25
    max_poll_s: float = 2.0
    base_attempts: int = 6
    base_backoff_s: float = 0.5
    outage_max_s: float | None = None
    """Give up after the chain has been unreachable this long (None: wait forever)."""
    logs_behind_max_s: float = 60.0
    """How long to wait for an event the chain's views already show (the round finalized, the member's update
    submitted): a node can serve its new state before the logs of the block that made it."""
    copy_wait_s: float = 60.0
    """copycat / little-is-enough: how long to wait for other members' updates of the round."""


class Stopped(Exception):
    """The runner was asked to stop (Ctrl-C, SIGTERM, a test)."""


def _short(text: str) -> str:
    return text.splitlines()[0] if text else text


def tokens(amount: int, decimals: int = 18) -> str:
    """A token amount in base units as a decimal number of tokens (4 decimals)."""
    return f"{amount / 10**decimals:.4f}"


class NodeRunner:
    """One member's loop over the rounds of one task. Chain, store, clock and output are injected."""

    def __init__(
        self,
        options: NodeOptions,
        *,
        client: LedgerClient,
        store: ContentStore,
        key: str,
        journal: Journal,
        max_update_bytes: int,
        say: Callable[[str], None] = print,
        bars: Bars | None = None,
        relay_redis: redis.Redis[bytes] | None = None,
        data: Any | None = None,
        stop: threading.Event | None = None,
        trainer: Trainer | None = None,
        on_record: Callable[[RoundRecord], None] | None = None,
        train_lock: contextlib.AbstractContextManager[Any] | None = None,
    ) -> None:
        from eth_account import Account

        self.options = options
        self.client = client
        self.client.view_block = "pending"  # a round's phase depends on the time the next block will have
        self.store = store
        self.key = key
        self.address: str = Account.from_key(key).address
        self.journal = journal
        self.max_update_bytes = max_update_bytes
        self.say = say
        self.bars = bars or NoBars()
        self.relay_redis = relay_redis
        self.stop = stop or threading.Event()
        self._data = data
        self.trainer = trainer
        self.on_record = on_record
        # Members sharing a process (lab.members) take turns to load their data and train: torch's global RNG
        # and thread pool belong to the process, so two at once would neither be reproducible nor faster.
        self.train_lock = train_lock if train_lock is not None else contextlib.nullcontext()
        self.spec: TaskSpec | None = None
        self._prepared = False
        self._from_block = client.deployment.deploy_block if client.deployment is not None else 0
        self._done: set[int] = set()
        self._awaiting: RoundRecord | None = None  # submitted, verdict not yet read

    # ─── the loop ───────────────────────────────────────────────────────────────────────────────────────────
    def run(self) -> list[RoundRecord]:
        """Rounds until ``options.rounds`` are done (or forever); returns their records."""
        self._resilient(self.ensure_member)
        done: list[RoundRecord] = []
        try:
            self._resilient(self.prepare)
            while self.options.rounds is None or len(done) < self.options.rounds:
                record = self._resilient(self.step)
                if record is not None:
                    done.append(record)
                    if self.on_record is not None:
                        self.on_record(record)
        except Stopped:
            self.say("stopped")
        return done

    def ensure_member(self) -> None:
        """Refuse to run with a key that does not hold the contributor role."""
        if not self.client.account(self.address).contributor:
            raise NotMember(self.address, "contributor", self.client.address)

    def step(self) -> RoundRecord | None:
        """Handle the live round once: its record when this member is done with it, None after waiting for the
        next round to open."""
        task = self.options.task
        round_ = self.client.current_round(task)
        awaiting = self._awaiting
        if awaiting is not None and awaiting.round < round_ and awaiting.round not in self._done:
            # The round we submitted to was finalized while the chain was out of reach: settle it first.
            return self._await_outcome(awaiting)
        if round_ in self._done:
            self._wait_new_round(round_)
            return None
        record = self.journal.load(task, round_)
        try:
            status = self.client.submission_of(task, round_, self.address)
        except RoundNotLive:
            return None  # the round was finalized between the two reads: the next step sees the new one
        if status.submitted:
            if record is None or record.status in ("trained", "stored", "missed"):
                record = self._adopt(record, round_, status.index, status.num_samples)
            return self._await_outcome(record)
        view = self.client.round_view(task, round_)
        if view.phase is not Phase.OPEN:
            if record is not None and record.status in ("trained", "stored"):
                return self._missed(record, f"round {round_} closed before the update was submitted")
            self._wait_new_round(round_)
            return None
        base_cid = digest_to_cid(view.base_digest)
        if record is None or record.base != base_cid or not self._file_intact(record):
            record = self._train(round_, base_cid, view.submission_end)
        else:
            self.say(f"round {round_}: reusing the update trained earlier ({record.cid})")
        self._check_samples(record)
        # Only the digest goes out now: the content is published once submissions close (_await_outcome).
        submitted = self._submit(record)
        if submitted.status == "closed":
            return self._missed(record, submitted.detail or "the round closed while the update was made")
        record.status = "submitted"
        record.index = submitted.index
        record.tx_hash = submitted.tx_hash
        self.journal.save(record)
        how = "relayed" if record.relayed else "submitted"
        self.say(
            f"round {round_}: {how} as update #{record.index}"
            + (f" (tx {submitted.tx_hash})" if submitted.tx_hash else "")
        )
        return self._await_outcome(record)

    # ─── the task's recipe ──────────────────────────────────────────────────────────────────────────────────
    def prepare(self) -> None:
        """Before the first round: read the task's specification, choose the recipe, refuse one whose hash is not
        the task's, and build the training step (unless one was given)."""
        if self._prepared:
            return
        self.spec = self._read_spec()
        if self.trainer is None:
            with self.train_lock:
                recipe = self._choose_recipe()
                self._check_recipe(recipe.ref)  # before any data is loaded or anything trained
                self.trainer = self._recipe_trainer(recipe)
        else:
            self._check_recipe(self.trainer.recipe_ref)
        self._prepared = True

    def _read_spec(self) -> TaskSpec | None:
        from ledger.content.errors import ContentError
        from ledger.recipe import MAX_SPEC_BYTES, LegacyTaskSpec, TaskSpecRejected, parse_task_spec

        o = self.options
        cid = digest_to_cid(self.client.task(o.task).params.spec_digest)
        try:
            raw = read_bytes(self.store, cid, max_bytes=MAX_SPEC_BYTES)
        except (ContentError, OSError) as exc:
            if o.require_spec:
                raise SpecUnavailable(o.task, cid, _short(str(exc))) from None
            self.say(
                f"task {o.task}: its specification {cid} is not readable ({_short(str(exc))}); recipe unchecked"
            )
            return None
        try:
            return parse_task_spec(raw)
        except LegacyTaskSpec:
            if o.require_spec:
                raise
            self.say(f"task {o.task}: its specification {cid} names no recipe (pre-recipe); recipe unchecked")
            return None
        except TaskSpecRejected as exc:
            raise TaskSpecRejected(f"task {o.task}'s specification {cid}: {exc.problem}") from None

    def _choose_recipe(self) -> Recipe:
        from node.recipe import DEFAULT_RECIPE, builtin_for, load_recipe

        o = self.options
        if o.recipe:
            return load_recipe(o.recipe)
        if o.model is not None:
            return load_recipe(_MODEL_RECIPES.get(o.model, o.model))
        if self.spec is not None:
            builtin = builtin_for(self.spec.recipe.cid)
            if builtin is not None:
                return load_recipe(builtin)
        return load_recipe(DEFAULT_RECIPE)

    def _check_recipe(self, ref: RecipeRef | None) -> None:
        if self.spec is None:
            if ref is not None:
                self.say(f"recipe {ref} (not checked against the task)")
            return
        wanted = self.spec.recipe
        if ref is None:
            self.say(f"task {self.options.task} runs the recipe {wanted}; this member trains its own loop")
            return
        if ref.cid != wanted.cid:
            raise RecipeMismatch(self.options.task, ref, wanted, refusing="train")
        self.say(f"recipe {ref}: the task's")

    def _recipe_trainer(self, recipe: Recipe) -> Trainer:
        from node.provenance import dataset_manifest, keep_manifest
        from node.recipe import as_torch_dataset
        from node.trainer import RecipeTrainer

        o = self.options
        if self._data is not None:
            data, source = as_torch_dataset(self._data), "given"
        elif o.data_hook:
            data, source = load_hook_data(o.data_hook), f"hook {o.data_hook}"
        else:
            options = dict(self.spec.shards) if self.spec is not None else {}
            if o.alpha is not None:
                options["alpha"] = o.alpha
            data, source = recipe.data(o.shard, o.shards, o.seed, **options)[0], "recipe"
        manifest = dataset_manifest(
            data, recipe=recipe.ref, source=source, member=o.shard, members=o.shards, seed=o.seed
        )
        path, commitment = keep_manifest(self.journal.root / "datasets", manifest)
        self.say(
            f"dataset: {manifest['train']['examples']} examples, manifest {path.name} ({commitment[:18]}…)"
        )
        settings = dict(self.spec.hyperparameters) if self.spec is not None else {}
        return RecipeTrainer(recipe, data, settings, dataset=commitment)

    # ─── training ───────────────────────────────────────────────────────────────────────────────────────────
    def _fetch_base(self, round_: int, base_cid: str) -> StateDict:
        from node.basemodel import fetch_base, load_weights

        o = self.options
        with self.bars.task(f"round {round_}: base", None, unit="bytes") as advance:
            path = fetch_base(
                self.store,
                base_cid,
                self.journal.models,
                round_=round_,
                max_bytes=self.max_update_bytes,
                attempts=o.base_attempts,
                backoff_s=o.base_backoff_s,
                sleep=self._sleep,
                progress=advance,
                on_retry=lambda n, err: self.say(
                    f"round {round_}: base {base_cid} not fetched ({err}); retry {n}"
                ),
            )
        return load_weights(path, base_cid)

    def _train(self, round_: int, base_cid: str, submission_end: int) -> RoundRecord:
        from node.provenance import frameworks
        from node.training import round_seed, update_norm

        o = self.options
        self.prepare()
        assert self.trainer is not None
        base = self._fetch_base(round_, base_cid)
        seed = round_seed(o.seed, round_, o.shard)
        with self.train_lock, self.bars.task(f"round {round_}: training", self.trainer.steps()) as advance:
            result = self.trainer.train(round_, base_cid, base, seed=seed, progress=advance)
        delta = self._behave(result.delta, round_, seed, submission_end)
        privacy = None
        if o.dp_noise is not None:
            delta, privacy = self._privatize(delta, round_, seed)
        path = self.journal.update_path(o.task, round_)
        written = write_update_file(
            path,
            delta,
            task=o.task,
            round_=round_,
            base=base_cid,
            contributor=self.address,
            num_samples=result.num_samples,
            privacy=privacy,
            dataset=result.dataset,
            frameworks=frameworks(),
        )
        record = RoundRecord(
            task=o.task,
            round=round_,
            status="trained",
            file=str(path),
            cid=written.cid,
            base=base_cid,
            num_samples=result.num_samples,
            behaviour=o.behaviour,
            train_loss=result.train_loss,
            norm=update_norm(delta),
            privacy=privacy,
            relayed=o.relay,
            dataset=result.dataset,
            recipe=str(self.trainer.recipe_ref) if self.trainer.recipe_ref is not None else None,
        )
        self.journal.save(record)
        self.say(
            f"round {round_}: trained on {result.num_samples} samples in {result.seconds:.2f} s "
            f"(loss {result.train_loss:.3f}, update norm {record.norm:.3g}"
            + (f", {o.behaviour}" if o.behaviour != "honest" else "")
            + (f", ε={privacy['epsilon']:.3g}" if privacy else "")
            + ")"
        )
        return record

    def _behave(self, delta: StateDict, round_: int, seed: int, submission_end: int) -> StateDict:
        from node.behaviours import Behaviour, apply_behaviour

        kind = Behaviour(self.options.behaviour)
        copy_from = None
        benign: list[StateDict] = []
        if kind is Behaviour.COPYCAT:
            others = self._others(round_, need=1, submission_end=submission_end)
            if others:
                copy_from = others[0]
            else:
                self.say(f"round {round_}: no other update to copy; publishing our own")
                kind = Behaviour.HONEST
        elif kind is Behaviour.LITTLE_IS_ENOUGH:
            need = max(1, self.client.contributor_count() - 1)
            benign = [*self._others(round_, need=need, submission_end=submission_end), delta]
        return apply_behaviour(
            kind,
            delta,
            seed=seed,
            copy_from=copy_from,
            benign=benign,
            scale_factor=self.options.scale_factor,
            lie_num_nodes=self.client.contributor_count() or None,
        )

    def _others(self, round_: int, *, need: int, submission_end: int) -> list[StateDict]:
        """Other members' published deltas of this round (read from the store via the chain's submissions),
        waiting until ``need`` are there or the submission window is about to end."""
        from ledger.content import read_bytes
        from ledger.updatefile import FileRejected, UpdateFile

        now = int(self.client.rpc(lambda: self.client.w3.eth.get_block("pending"))["timestamp"])
        deadline = time.monotonic() + min(self.options.copy_wait_s, max(0, submission_end - now - 3))
        while True:
            subs = [s for s in self._submissions(round_) if s.contributor != self.address]
            if len(subs) >= need or time.monotonic() >= deadline:
                break
            self._sleep(self.options.poll_s)
        out: list[StateDict] = []
        for sub in subs:
            cid = digest_to_cid(sub.digest)
            try:
                data = read_bytes(self.store, cid, max_bytes=self.max_update_bytes)
                with UpdateFile.from_bytes(data) as update:
                    out.append({k: np.array(update.tensor(k)) for k in update})
            except (FileRejected, MeshprovError) as exc:
                self.say(f"round {round_}: cannot use {cid}: {_short(str(exc))}")
        return out

    def _privatize(self, delta: StateDict, round_: int, seed: int) -> tuple[StateDict, dict[str, Any]]:
        from node.privacy import DPConfig, privatize

        o = self.options
        config = DPConfig(
            clip=o.dp_clip if o.dp_clip is not None else 1.0,
            noise_multiplier=float(o.dp_noise or 0.0),
            delta=o.dp_delta,
        )
        steps = self.journal.dp_releases(o.task, round_) + 1
        private = privatize(delta, config, seed=seed, steps=steps)
        return private.delta, {**private.params, "steps": steps, "sample_rate": config.sample_rate}

    def _file_intact(self, record: RoundRecord) -> bool:
        from ledger.content import cid_of_file

        path = Path(record.file)
        return path.is_file() and cid_of_file(path) == record.cid

    # ─── publishing ─────────────────────────────────────────────────────────────────────────────────────────
    def _check_samples(self, record: RoundRecord) -> None:
        """Refuse, before any transaction, a sample count the task's ``maxSamples`` forbids (the chain would)."""
        limit = self.client.task(self.options.task).params.max_samples
        if record.num_samples > limit:
            raise TooManySamplesClaimed(record.num_samples, limit, self.options.task)

    def _publish(self, record: RoundRecord) -> None:
        """Put the update in the store once submissions have closed (R1); idempotent (a put of the same bytes)."""
        if record.published or not record.file or not Path(record.file).is_file():
            return
        self._store(record)
        record.published = True
        self.journal.save(record)

    def _store(self, record: RoundRecord) -> RoundRecord:
        from ledger.updatefile import WrittenFile

        path = Path(record.file)
        written = WrittenFile(path, path.stat().st_size, record.cid)
        with self.bars.task(f"round {record.round}: upload", written.size, unit="bytes") as advance:
            put_update(self.store, written, progress=advance)
        self.journal.save(record)
        self.say(
            f"round {record.round}: submissions closed; update {record.cid} published ({written.size} bytes)"
        )
        return record

    def _submit(self, record: RoundRecord) -> Submitted:
        from ledger.chain.errors import LedgerPaused, NotContributor, TooManySamples

        o = self.options
        while True:
            try:
                if o.relay:
                    from node.relay import submit_relayed

                    if self.relay_redis is None:
                        raise ConfigError("--relay needs a Redis connection to the relayer's queue")
                    return submit_relayed(
                        self.client,
                        self.relay_redis,
                        self.key,
                        task=o.task,
                        round_=record.round,
                        cid=record.cid,
                        num_samples=record.num_samples,
                        poll_s=o.poll_s,
                        sleep=self._sleep,
                    )
                return submit_direct(
                    self.client,
                    task=o.task,
                    round_=record.round,
                    cid=record.cid,
                    num_samples=record.num_samples,
                )
            except NotContributor:
                raise NotMember(self.address, "contributor", self.client.address) from None
            except TooManySamples:
                limit = self.client.task(o.task).params.max_samples
                raise TooManySamplesClaimed(record.num_samples, limit, o.task) from None
            except LedgerPaused:
                self.say("the ledger is paused; waiting")
                self._sleep(self.options.max_poll_s)

    def _missed(self, record: RoundRecord, detail: str) -> RoundRecord:
        record.status = "missed"
        record.detail = detail
        self.journal.save(record)
        self._done.add(record.round)
        self.say(f"round {record.round}: missed ({detail}); the update stays in {record.file}")
        return record

    def _adopt(self, record: RoundRecord | None, round_: int, index: int, num_samples: int) -> RoundRecord:
        """The chain has this member's update for the round (an earlier run submitted it): record that."""
        if record is None:
            subs = self._logs_caught_up(
                f"round {round_}: submitted",
                lambda: [s for s in self._submissions(round_) if s.contributor == self.address],
            )
            cid = digest_to_cid(subs[0].digest) if subs else ""
            record = RoundRecord(
                task=self.options.task, round=round_, status="submitted", file="", cid=cid, base="",
                num_samples=num_samples,
            )  # fmt: skip
        record.status = "submitted"
        record.index = index
        self.journal.save(record)
        return record

    # ─── the verdict ────────────────────────────────────────────────────────────────────────────────────────
    def _await_outcome(self, record: RoundRecord) -> RoundRecord:
        self._awaiting = record
        task, round_ = self.options.task, record.round
        delay = self.options.poll_s
        announced = False
        while (phase := self.client.round_view(task, round_).phase) is not Phase.FINALIZED:
            if phase is not Phase.OPEN and not record.published:
                self._publish(record)
            if not announced:
                self.say(f"round {round_}: waiting for the validators and the aggregator")
                announced = True
            self._sleep(delay)
            delay = min(delay * 1.5, self.options.max_poll_s)
        self._verdict(record)
        self.journal.save(record)
        self._done.add(round_)
        self._awaiting = None
        if record.status == "accepted":
            self.say(
                f"round {round_}: accepted with consensus score {record.score}; reward "
                f"{tokens(record.reward or 0)} tokens accrued (`meshprov node claim` mints them), "
                f"reputation {record.reputation}"
            )
        else:
            reasons = ", ".join(record.reasons) or f"consensus score {record.score}"
            self.say(f"round {round_}: rejected ({reasons}); reputation {record.reputation}")
        return record

    def _verdict(self, record: RoundRecord) -> None:
        """Accepted or not, why, and what it earned, from the round's ScoresRevealed and RoundFinalized events."""
        task, round_ = self.options.task, record.round
        index = record.index if record.index is not None else -1
        final = self._finalization(round_)
        reveals = self.client.reveals(task, round_, from_block=self._from_block)
        reasons = score_reasons(reveals, index)
        record.reasons = sorted({reason_slug(code) for _, _score, code in reasons if code})
        if final is None:
            record.status = "rejected"
            record.detail = "finalization event not found"
            return
        accepted = index >= 0 and bool(final.accepted_bitmap >> index & 1)
        record.status = "accepted" if accepted else "rejected"
        record.aggregate = digest_to_cid(final.aggregate_digest)
        if final.carried_over:
            record.detail = "carried over: the aggregator did not finalize within the grace (no reward)"
        for s in final.settlements:
            if s.account == self.address and s.role is Role.CONTRIBUTOR:
                record.reward = s.reward
                record.reputation = s.reputation
                record.score = s.score
        self._from_block = max(self._from_block, final.block_number - 1)

    def _finalization(self, round_: int) -> Finalization | None:
        """The round's RoundFinalized event (None if the logs never show it)."""
        found = self._logs_caught_up(
            f"round {round_}: finalized",
            lambda: self.client.finalizations(self.options.task, round_, from_block=self._from_block),
        )
        return found[0] if found else None

    def _logs_caught_up(self, what: str, read: Callable[[], list[_Logged]]) -> list[_Logged]:
        """``read()`` once it finds the event the chain's views already show. A node can answer from its new state
        before its logs hold the block that made it: wait for them rather than read "no event" as "did not
        happen"; what ``read`` gives (maybe nothing) once ``logs_behind_max_s`` has passed."""
        delay = self.options.poll_s
        deadline = time.monotonic() + self.options.logs_behind_max_s
        announced = False
        while not (found := read()) and time.monotonic() < deadline:
            if not announced:
                self.say(f"{what}, but the chain's logs do not show it yet; waiting")
                announced = True
            self._sleep(delay)
            delay = min(delay * 1.5, self.options.max_poll_s)
        return found

    def _submissions(self, round_: int) -> list[Submission]:
        """The round's submissions so far, by index (from the logs since the last round this runner settled)."""
        return self.client.submissions(self.options.task, round_, from_block=self._from_block)

    # ─── waiting and faults ─────────────────────────────────────────────────────────────────────────────────
    def _wait_new_round(self, round_: int) -> None:
        delay = self.options.poll_s
        while self.client.current_round(self.options.task) <= round_:
            self._sleep(delay)
            delay = min(delay * 1.5, self.options.max_poll_s)

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Stopped

    def _resilient(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; while the chain (or the store) is unreachable, wait with backoff, reconnect, run it again."""
        from ledger.chain.sender import TxTimeout

        delay = self.options.poll_s
        down_since: float | None = None
        while True:
            try:
                result = fn()
            except (ServiceUnavailable, TxTimeout) as exc:
                now = time.monotonic()
                if down_since is None:
                    down_since = now
                    what = _short(str(exc))
                    self.say(f"{what}; waiting and retrying (the update files are kept)")
                limit = self.options.outage_max_s
                if limit is not None and now - down_since > limit:
                    raise
                self._sleep(delay)
                delay = min(delay * 2, 5.0)
                self._reconnect()
                continue
            if down_since is not None:
                self.say(f"reconnected after {time.monotonic() - down_since:.1f} s")
            return result

    def _reconnect(self) -> None:
        """After an outage: forget cached nonces; refuse a chain that came back without the ledger."""
        if self.client.sender is not None:
            self.client.sender.resync()
        deployment = self.client.deployment
        if deployment is not None:
            with contextlib.suppress(ServiceUnavailable):  # still down: the caller waits again
                self.client.check_chain(deployment.chain_id)


def score_reasons(reveals: Sequence[ScoresRevealed], index: int) -> list[tuple[str, int, int]]:
    """Every revealing validator's (validator, score, reason code) for update ``index``, in reveal order."""
    if index < 0:
        return []
    return [(r.validator, r.scores[index], r.reasons[index]) for r in reveals if index < len(r.scores)]


def reason_slug(code: int) -> str:
    """The slug of a reason code (`norm-outlier`), or the number for a code this version does not know."""
    try:
        return Reason(code).slug
    except ValueError:
        return str(code)


_MODEL_RECIPES = {"mlp": "digits", "cnn": "digits_cnn"}
"""The legacy ``--model`` names and the builtin recipes that are those models."""


def load_hook_data(hook_name: str) -> Any:
    """The training set a ``--data MODULE:FUNCTION`` hook returns (a torch Dataset, or the old
    ``node.data.Dataset`` of digits arrays, converted)."""
    import importlib

    from node.recipe import as_torch_dataset

    module_name, _, attr = hook_name.partition(":")
    try:
        hook = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(
            f"cannot load the data hook {hook_name!r}: {exc}", hint="give MODULE:FUNCTION"
        ) from None
    data = hook()
    try:
        return as_torch_dataset(data)
    except MeshprovError:
        raise ConfigError(
            f"the data hook {hook_name!r} returned {type(data).__name__}, not a torch Dataset"
        ) from None


def load_dataset(options: NodeOptions) -> Any:
    """The member's training data: the ``--data`` hook's, or shard ``shard`` of ``shards`` of the recipe's
    (``--recipe``, ``--model``, default digits) ``data``."""
    if options.data_hook:
        return load_hook_data(options.data_hook)
    from node.recipe import DEFAULT_RECIPE, load_recipe

    recipe = load_recipe(options.recipe or _MODEL_RECIPES.get(options.model or "", DEFAULT_RECIPE))
    extra = {"alpha": options.alpha} if options.alpha is not None else {}
    return recipe.data(options.shard, options.shards, options.seed, **extra)[0]
