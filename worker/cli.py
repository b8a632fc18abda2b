"""`meshprov worker run | watch | carry-over | check | status | relay`: the validator and aggregator workers from the command line.

Heavy imports (Celery, web3, numpy) stay inside the command bodies so that `meshprov --help` stays fast.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledger.cli.output import JsonFlag, emit, info, want_json
from ledger.cli.state import settings as load_settings
from ledger.exit_codes import ExitCode

if TYPE_CHECKING:
    from rich.console import Console

    from ledger.checks import CheckLimits, LossFn
    from ledger.settings import Settings
    from worker.config import WorkerConfig

app = typer.Typer(no_args_is_help=True, help="Validator and aggregator workers (Celery).")


def _register_relay() -> None:
    # The HTTP relayer (docs/relay.md) lives in its own module; it imports only typer and ledger.cli up front.
    from worker.relay_cli import relay_command

    app.command("relay")(relay_command)


_register_relay()
log = logging.getLogger(__name__)

# --- shared options -------------------------------------------------------------------------------------------
_TUNING = "Tuning"
_CHECKS = "Checks"
PollInterval = Annotated[
    float | None,
    typer.Option(
        "--poll-interval",
        help="Seconds between the watcher's looks at the chain (setting `worker_poll_interval_s`, 2).",
        rich_help_panel=_TUNING,
    ),
]
JobTtl = Annotated[
    int | None,
    typer.Option(
        "--job-ttl",
        help="Seconds before the watcher enqueues a job again (`worker_job_ttl_s`, 120).",
        rich_help_panel=_TUNING,
    ),
]
TimeLimit = Annotated[
    int | None,
    typer.Option(
        "--time-limit",
        help="Hard time limit of a job, seconds (`worker_time_limit_s`, 600).",
        rich_help_panel=_TUNING,
    ),
]
SoftTimeLimit = Annotated[
    int | None,
    typer.Option(
        "--soft-time-limit",
        help="Soft time limit (`worker_soft_time_limit_s`; default: 90% of the hard one).",
        rich_help_panel=_TUNING,
    ),
]
Visibility = Annotated[
    int | None,
    typer.Option(
        "--visibility-timeout",
        help="Seconds before Redis redelivers an unacknowledged job (`worker_visibility_timeout_s`; default: 3x "
        "the hard time limit).",
        rich_help_panel=_TUNING,
    ),
]
LockLease = Annotated[
    int | None,
    typer.Option(
        "--lock-lease",
        help="Round lock lease, seconds (`worker_lock_lease_s`; default: the hard time limit).",
        rich_help_panel=_TUNING,
    ),
]
MaxRetries = Annotated[
    int | None,
    typer.Option(
        "--max-retries",
        help="Retries of a transient fault before giving up (`worker_max_retries`, 6).",
        rich_help_panel=_TUNING,
    ),
]
Backoff = Annotated[
    int | None,
    typer.Option(
        "--retry-backoff",
        help="First retry delay bound, seconds, doubling (`worker_retry_backoff_s`, 2).",
        rich_help_panel=_TUNING,
    ),
]
BackoffMax = Annotated[
    int | None,
    typer.Option(
        "--retry-backoff-max",
        help="Largest retry delay, seconds (`worker_retry_backoff_max_s`, 120).",
        rich_help_panel=_TUNING,
    ),
]
Heartbeat = Annotated[
    float | None,
    typer.Option(
        "--heartbeat",
        help="Seconds between health records (`worker_heartbeat_s`, 5).",
        rich_help_panel=_TUNING,
    ),
]
CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Downloads and verdict cache (`worker_cache_dir`; default: <data_dir>/worker).",
        rich_help_panel=_TUNING,
    ),
]
Failpoints = Annotated[
    list[str] | None,
    typer.Option("--failpoint", help="STAGE=SECONDS: pause there (fault-injection tests).", hidden=True),
]
MaxNorm = Annotated[
    float | None,
    typer.Option("--max-norm", help="Absolute bound on an update's L2 norm.", rich_help_panel=_CHECKS),
]
MinNorm = Annotated[
    float,
    typer.Option(
        "--min-norm", help="Free-rider floor on the norm (0 rejects all-zero).", rich_help_panel=_CHECKS
    ),
]
ZScore = Annotated[
    float,
    typer.Option(
        "--zscore", min=0, help="Robust z-score threshold of the log norm (0: off).", rich_help_panel=_CHECKS
    ),
]
MaxScale = Annotated[
    float | None,
    typer.Option(
        "--max-scale-ratio",
        min=0,
        help="Reject an update whose L2 norm exceeds this multiple of the base model's norm "
        "(default: ledger's DEFAULT_MAX_SCALE_RATIO, 5; 0: off).",
        show_default=False,
        rich_help_panel=_CHECKS,
    ),
]
LossDelta = Annotated[
    float | None,
    typer.Option(
        "--loss-delta", help="Allowed held-out loss increase (needs --evaluator).", rich_help_panel=_CHECKS
    ),
]
LossRatio = Annotated[
    float | None,
    typer.Option(
        "--loss-ratio",
        help="Allowed held-out loss ratio over the base's (>= 1, e.g. 1.5; with --loss-delta the tighter decides).",
        rich_help_panel=_CHECKS,
    ),
]
Evaluator = Annotated[
    str | None,
    typer.Option(
        "--evaluator",
        help="MODULE:FUNCTION returning the held-out loss of full weights (dict of arrays) for LOSS_REGRESSION.",
        rich_help_panel=_CHECKS,
    ),
]


def _limits(
    settings: Settings,
    max_norm: float | None,
    min_norm: float,
    zscore: float,
    loss_delta: float | None,
    *,
    max_scale_ratio: float | None,
    loss_ratio: float | None = None,
) -> CheckLimits:
    from ledger.checks import CheckLimits
    from ledger.checks.limits import DEFAULT_MAX_SCALE_RATIO

    return CheckLimits(
        max_update_bytes=settings.max_update_bytes,
        max_norm=max_norm,
        min_norm=min_norm,
        max_scale_ratio=DEFAULT_MAX_SCALE_RATIO if max_scale_ratio is None else max_scale_ratio or None,
        zscore_threshold=zscore or None,
        loss_delta=loss_delta,
        loss_ratio=loss_ratio,
    )


def _settings_and_config(failpoints: list[str] | None = None, **flags: Any) -> tuple[Settings, WorkerConfig]:
    """The settings with the tuning flags given on the command line over env, file and defaults (``flags`` are
    ``worker_*`` setting names; None: not given), and the worker configuration they make (invariants checked)."""
    from worker.config import WorkerConfig, parse_failpoints

    s = load_settings(**flags)
    return s, WorkerConfig.from_settings(s, failpoints=parse_failpoints(failpoints))


def _load_evaluator(spec: str | None) -> LossFn | None:
    if spec is None:
        return None
    from worker.plugins import load_plugin

    evaluator: LossFn = load_plugin(spec, "the evaluator", example="node.heldout:loss")
    return evaluator


# --- run ------------------------------------------------------------------------------------------------------


@app.command()
def run(
    *,
    role: Annotated[str, typer.Option("--role", help="validator or aggregator.", show_default=False)],
    watch: Annotated[bool, typer.Option("--watch", help="Also run the watcher in this process.")] = False,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=64, help="Jobs at once.")] = 1,
    pool: Annotated[str, typer.Option("--pool", help="Celery pool: prefork, threads or solo.")] = "prefork",
    loglevel: Annotated[str, typer.Option("--loglevel", help="Log level of the worker.")] = "INFO",
    poll_interval: PollInterval = None,
    job_ttl: JobTtl = None,
    time_limit: TimeLimit = None,
    soft_time_limit: SoftTimeLimit = None,
    visibility_timeout: Visibility = None,
    lock_lease: LockLease = None,
    max_retries: MaxRetries = None,
    retry_backoff: Backoff = None,
    retry_backoff_max: BackoffMax = None,
    heartbeat: Heartbeat = None,
    cache_dir: CacheDir = None,
    max_norm: MaxNorm = None,
    min_norm: MinNorm = 0.0,
    max_scale_ratio: MaxScale = None,
    zscore: ZScore = 3.5,
    loss_delta: LossDelta = None,
    loss_ratio: LossRatio = None,
    evaluator: Evaluator = None,
    reference_trainer: Annotated[
        str | None,
        typer.Option(
            "--reference-trainer",
            help="MODULE:FUNCTION training this validator's reference update on its held-out slice (e.g. "
            "node.heldout:reference); without it an update is scored against the round's other updates.",
            rich_help_panel=_CHECKS,
        ),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(
            "--recipe",
            help="The task's recipe as installed here (builtin name, module name, .py file or package "
            "directory): its evaluate() is the held-out loss and score, its training the reference update; "
            "refused (exit 10) when its hash is not the one the task's specification anchors. Replaces "
            "--evaluator and --reference-trainer.",
            rich_help_panel=_CHECKS,
        ),
    ] = None,
    recipe_host: Annotated[
        str | None,
        typer.Option(
            "--recipe-host",
            hidden=True,
            help="MODULE:FUNCTION giving the recipe's hooks (worker.recipe; default: the one meshprov ships).",
        ),
    ] = None,
    failpoint: Failpoints = None,
    lie: Annotated[
        bool,
        typer.Option(
            "--lie",
            hidden=True,
            help="Lab only: accept with the highest score every update the checks reject (a dishonest validator "
            "for `meshprov audit rejudge` to find).",
        ),
    ] = False,
) -> None:
    """Start a Celery worker for ROLE with this member's key (refused, exit 9, when the key lacks the role)."""
    from ledger.errors import ConfigError

    if role not in ("validator", "aggregator"):
        raise typer.BadParameter("choose validator or aggregator", param_hint="--role")
    if pool not in ("prefork", "threads", "solo"):
        raise typer.BadParameter("choose prefork, threads or solo", param_hint="--pool")
    if watch and role != "aggregator":
        raise typer.BadParameter("the watcher runs beside the aggregator (or alone: `meshprov worker watch`)")
    if recipe is not None and (evaluator is not None or reference_trainer is not None):
        raise typer.BadParameter(
            "--recipe gives the evaluator and the reference trainer: drop --evaluator / --reference-trainer",
            param_hint="--recipe",
        )
    if recipe is not None and role != "validator":
        raise typer.BadParameter("only validators judge with the recipe", param_hint="--recipe")
    s, config = _settings_and_config(
        failpoint,
        worker_poll_interval_s=poll_interval,
        worker_job_ttl_s=job_ttl,
        worker_time_limit_s=time_limit,
        worker_soft_time_limit_s=soft_time_limit,
        worker_visibility_timeout_s=visibility_timeout,
        worker_lock_lease_s=lock_lease,
        worker_max_retries=max_retries,
        worker_retry_backoff_s=retry_backoff,
        worker_retry_backoff_max_s=retry_backoff_max,
        worker_heartbeat_s=heartbeat,
        worker_cache_dir=cache_dir,
    )
    key = s.signing_key()
    if key is None:
        raise ConfigError(
            f"a {role} needs this member's key",
            hint="set MESHPROV_PRIVATE_KEY_FILE (or MESHPROV_PRIVATE_KEY)",
        )
    limits = _limits(
        s, max_norm, min_norm, zscore, loss_delta, max_scale_ratio=max_scale_ratio, loss_ratio=loss_ratio
    )
    rt = _runtime(s, config=config, role=role, key=key, limits=limits, evaluator=evaluator)
    if reference_trainer is not None:
        from worker.reference import load_trainer

        rt.reference_trainer = load_trainer(reference_trainer)
    if lie and role != "validator":
        raise typer.BadParameter("only a validator can lie about its verdicts", param_hint="--lie")
    rt.lie = lie
    _preflight(rt)
    if recipe is not None:
        _use_recipe(
            rt,
            recipe,
            host=recipe_host,
            loss_delta_given=loss_delta is not None,
            loss_ratio_given=loss_ratio is not None,
        )
    _serve(rt, concurrency=concurrency, pool=pool, loglevel=loglevel, watch=watch)


def _runtime(
    s: Settings,
    *,
    config: WorkerConfig,
    role: str,
    key: str | None,
    limits: CheckLimits,
    evaluator: str | None,
) -> Any:
    from ledger.cli.endpoints import chain_url, redis_url, with_chain
    from worker import runtime

    rt = runtime.Runtime(
        settings=with_chain(s, chain_url(s)),
        config=config,
        role=role,
        redis_url=redis_url(s),
        private_key=key,
        limits=limits,
        evaluate=_load_evaluator(evaluator),
    )
    runtime.configure(rt)
    return rt


def _use_recipe(
    rt: Any, recipe: str, *, host: str | None, loss_delta_given: bool, loss_ratio_given: bool = False
) -> None:
    """Judge with the installed recipe: read the task's specification, refuse a recipe of another hash, then
    take its evaluate as the loss hook and its training as the reference trainer. The spec's ``checks`` set the
    checks' limits (``ledger.checks.anchored``), its ``loss_delta``/``loss_ratio`` unless given on the command line (consortium-wide
    values live in the spec)."""
    from ledger.checks.anchored import anchored_limits, reference_steps_of
    from ledger.checks.privacy_budget import budget_of
    from ledger.errors import ConfigError
    from worker.recipe import DEFAULT_HOST, check_recipe, load_hooks, loss_of, read_task_spec

    task_id = rt.settings.task_id
    spec = read_task_spec(rt.chain(), rt.store(), task_id)
    hooks = load_hooks(recipe, spec, host=host or DEFAULT_HOST)
    check_recipe(task_id, hooks.ref, spec)
    if spec is None:
        info(f"recipe {hooks.ref}: task {task_id}'s specification names no recipe (pre-recipe); unchecked")
    else:
        info(f"recipe {hooks.ref}: the task's")
        # The task anchors its checks' settings (ledger.checks.anchored): judging with others would be found by
        # `meshprov audit rejudge`. --loss-delta alone may override, as before.
        given = {"loss_delta"} if loss_delta_given else set()
        given |= {"loss_ratio"} if loss_ratio_given else set()
        checks = {k: v for k, v in spec.checks.items() if k not in given}
        try:
            rt.limits = anchored_limits(checks, rt.limits)
            rt.privacy_budget = budget_of(spec.checks)
            rt.reference_steps = reference_steps_of(spec.checks)
        except ConfigError as exc:
            raise ConfigError(
                f"task {task_id}'s specification: {exc}", hint="fix the specification the task anchors"
            ) from None
    warm_up = getattr(hooks, "warm_up", None)
    if callable(warm_up):
        warm_up()
    rt.recipe = hooks.ref
    rt.evaluate = loss_of(hooks)
    rt.reference_trainer = hooks.reference


def _preflight(rt: Any) -> None:
    """Refuse to start with a key that does not hold the role on chain."""
    from worker.errors import NotMember

    if not rt.chain().account(rt.address).has_role(rt.role):
        raise NotMember(rt.address, rt.role)
    info(f"{rt.role} {rt.address}: role confirmed on chain")


def _serve(rt: Any, *, concurrency: int, pool: str, loglevel: str, watch: bool) -> None:
    from celery import signals

    from worker.celery_app import make_app
    from worker.tasks import AGGREGATOR_QUEUE, validator_queue

    app = make_app(rt.redis_url, rt.config)
    queue = validator_queue(rt.address) if rt.role == "validator" else AGGREGATOR_QUEUE
    stop = threading.Event()

    def after_fork(**_: Any) -> None:
        rt.after_fork()

    def ready(**_: Any) -> None:
        threading.Thread(
            target=_heartbeats, args=(rt, stop, queue), name="meshprov-heartbeat", daemon=True
        ).start()
        if watch:
            _watcher(rt, app, stop).start_thread()

    def shutdown(**_: Any) -> None:
        stop.set()

    signals.worker_process_init.connect(after_fork, weak=False)
    signals.worker_ready.connect(ready, weak=False)
    signals.worker_shutdown.connect(shutdown, weak=False)
    name = f"{rt.role}.{rt.address[2:10].lower()}@%h"
    app.worker_main(
        [
            "worker",
            f"--loglevel={loglevel}",
            "--queues",
            queue,
            "--concurrency",
            str(concurrency),
            "--pool",
            pool,
            "--hostname",
            name,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


def _heartbeats(rt: Any, stop: threading.Event, queue: str) -> None:
    ttl = max(3, int(3 * rt.config.heartbeat_s))
    while not stop.is_set():
        try:
            rt.state().heartbeat(ttl, "worker", role=rt.role, address=rt.address, queue=queue)
        except Exception as exc:
            log.debug("heartbeat failed: %s", exc)
        stop.wait(rt.config.heartbeat_s)


def _watcher(rt: Any, app: Any, stop: threading.Event) -> Any:
    from worker.chain import WorkerChain
    from worker.state import WorkerState
    from worker.watcher import Watcher

    # Its own chain handle and Redis client: the watcher thread must not share the job's connections.
    chain = WorkerChain.from_settings(rt.settings)
    state = WorkerState.from_url(rt.redis_url, f"watcher:{rt.address.lower()}")
    # The aggregator's watcher also carries a round over once its grace is over (the aggregate could not be made).
    return Watcher(chain, app, state, rt.config, [rt.settings.task_id], stop=stop, carry_over=True)


# --- watch ----------------------------------------------------------------------------------------------------


@app.command()
def watch(
    *,
    task: Annotated[
        list[int] | None,
        typer.Option("--task", help="Task to watch (repeatable; default: the task_id setting)."),
    ] = None,
    poll_interval: PollInterval = None,
    job_ttl: JobTtl = None,
    time_limit: TimeLimit = None,
    heartbeat: Heartbeat = None,
    once: Annotated[bool, typer.Option("--once", help="Poll once, print what was enqueued, exit.")] = False,
    carry_over: Annotated[
        bool,
        typer.Option(
            "--carry-over",
            help="Also carry a round over (finalizeCarryOver, signed with this member's key) once its grace is "
            "over and the aggregator has not finalized it.",
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Poll the chain and enqueue scoring and aggregation jobs for whatever is still to do."""
    from ledger.cli.endpoints import chain_url, redis_url, with_chain
    from worker.celery_app import make_app
    from worker.chain import WorkerChain
    from worker.state import WorkerState
    from worker.watcher import Watcher

    s, config = _settings_and_config(
        worker_poll_interval_s=poll_interval,
        worker_job_ttl_s=job_ttl,
        worker_time_limit_s=time_limit,
        worker_heartbeat_s=heartbeat,
    )
    broker = redis_url(s)
    chain = WorkerChain.from_settings(with_chain(s, chain_url(s)))
    if carry_over and s.signing_key() is None:
        from ledger.errors import ConfigError

        raise ConfigError(
            "--carry-over sends a transaction and needs a key",
            hint="set MESHPROV_PRIVATE_KEY_FILE (or MESHPROV_PRIVATE_KEY): any account with gas will do",
        )
    watcher = Watcher(
        chain, make_app(broker, config, with_tasks=False), WorkerState.from_url(broker, "watcher"), config,
        task or [s.task_id], carry_over=carry_over,
    )  # fmt: skip
    if once:
        enqueued = watcher.poll_once()
        emit(enqueued, json_mode=want_json(json_output), human=lambda c: _print_enqueued(c, enqueued))
        return
    info(
        f"watching task(s) {', '.join(map(str, watcher.task_ids))} every {config.poll_interval_s:g} s (Ctrl-C stops)"
    )
    try:
        watcher.run()
    except KeyboardInterrupt:
        watcher.stop.set()
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


def _print_enqueued(console: Console, enqueued: list[dict[str, Any]]) -> None:
    if not enqueued:
        console.print("nothing to enqueue")
    for job in enqueued:
        console.print(f"{job['job']}({job['task']}, {job['round']}) -> {job['queue']}")


# --- carry-over -----------------------------------------------------------------------------------------------


@app.command("carry-over")
def carry_over_command(
    *,
    round_: Annotated[
        int | None, typer.Option("--round", help="The round (default: the task's live round).", min=1)
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Carry the round over (finalizeCarryOver) if its aggregator has not finalized it within the grace: anyone's
    fallback, with any key that has gas. The base becomes the round's aggregate, reputations settle, no reward."""
    from ledger.cli.endpoints import chain_url, with_chain
    from ledger.errors import ConfigError
    from worker.aggregate import carry_over
    from worker.config import WorkerConfig
    from worker.runtime import Runtime

    s = load_settings()
    key = s.signing_key()
    if key is None:
        raise ConfigError(
            "carrying a round over sends a transaction and needs a key",
            hint="set MESHPROV_PRIVATE_KEY_FILE (or MESHPROV_PRIVATE_KEY): any account with gas will do",
        )
    rt = Runtime(
        settings=with_chain(s, chain_url(s)),
        config=WorkerConfig(),
        role="anyone",
        redis_url="",
        private_key=key,
    )
    rt._state = _NoState()  # type: ignore[assignment]  # a one-shot command needs no Redis
    task_id = s.task_id
    r = round_ if round_ is not None else rt.chain().task(task_id).current_round
    result = {"task": task_id, "round": r, **carry_over(rt, task_id, r)}

    def human(console: Console) -> None:
        status = result["status"]
        if status == "grace-not-over":
            left = result.get("seconds_left")
            console.print(
                f"round {r}: the grace is not over yet"
                + (f" ({left} s of ledger time left)" if left is not None else "")
                + "; the aggregator may still finalize"
            )
        else:
            console.print(f"round {r}: {status}" + (f" (tx {result['tx']})" if "tx" in result else ""))

    emit(result, json_mode=want_json(json_output), human=human)
    if result["status"] == "grace-not-over":
        raise typer.Exit(int(ExitCode.ERROR))


class _NoState:
    """Counters of a one-shot command go nowhere."""

    def incr(self, metric: str, amount: int = 1) -> None:
        return None


# --- check ----------------------------------------------------------------------------------------------------


@app.command()
def check(
    update_file: Annotated[Path, typer.Argument(help="The update file to check.", show_default=False)],
    *,
    base: Annotated[Path, typer.Option("--base", help="The round's base model file.", show_default=False)],
    task: Annotated[int | None, typer.Option("--task", help="Expected task id.")] = None,
    round_: Annotated[int | None, typer.Option("--round", help="Expected round.")] = None,
    contributor: Annotated[
        str | None, typer.Option("--contributor", help="Expected contributor address.")
    ] = None,
    num_samples: Annotated[int | None, typer.Option("--num-samples", help="Expected sample count.")] = None,
    cid: Annotated[
        str | None, typer.Option("--cid", help="Expected CID (as the chain would record it).")
    ] = None,
    peer: Annotated[
        list[Path] | None,
        typer.Option(
            "--peer", help="Another update of the same round (repeatable): enables z-score and duplicates."
        ),
    ] = None,
    max_norm: MaxNorm = None,
    min_norm: MinNorm = 0.0,
    max_scale_ratio: MaxScale = None,
    zscore: ZScore = 3.5,
    json_output: JsonFlag = False,
) -> None:
    """Run the offline checks on UPDATE_FILE against BASE (no chain): verdict and reason code; exit 8 on reject."""
    from ledger.checks import ChainRecord, kubo_digest
    from ledger.content import cid_to_digest
    from ledger.errors import NotFound

    for path in [update_file, base, *(peer or [])]:
        if not path.is_file():
            raise NotFound(f"no such file: {path}")
    s = load_settings()
    limits = _limits(s, max_norm, min_norm, zscore, None, max_scale_ratio=max_scale_ratio)
    record = ChainRecord(
        digest=cid_to_digest(cid) if cid else None,
        task=task,
        round=round_,
        base=kubo_digest(base),
        contributor=contributor,
        num_samples=num_samples,
    )
    verdict = offline_verdict(update_file, base, record, limits, peers=peer or [])
    data = {"file": str(update_file), **verdict.to_dict()}
    data.pop("profile", None)

    def human(console: Console) -> None:
        if verdict.accepted:
            console.print(f"[green]accepted[/] {update_file} (norm {verdict.norm:.6g})", highlight=False)
        else:
            console.print(
                f"[red]rejected[/] {update_file}: [bold]{verdict.reason.slug}[/] ({int(verdict.reason)})",
                highlight=False,
            )
            console.print(f"  {verdict.reason.help}", highlight=False)
            if verdict.detail:
                console.print(f"  detail: {verdict.detail}", highlight=False)

    emit(data, json_mode=want_json(json_output), human=human)
    if not verdict.accepted:
        raise typer.Exit(int(ExitCode.REJECTED))


def offline_verdict(
    update_file: Path, base: Path, record: Any, limits: CheckLimits, *, peers: list[Path]
) -> Any:
    """The verdict `worker check` prints: per-update checks, then the round checks against ``peers``."""
    from ledger.checks import ChainRecord, base_norm, judge_round, judge_update
    from ledger.errors import MeshprovError
    from ledger.updatefile import FileRejected, UpdateFile

    try:
        base_file = UpdateFile.open(base)
    except FileRejected as exc:
        raise MeshprovError(f"the base {base} is not a usable model file: {exc.detail}") from None
    with base_file as model:
        from ledger.aggregation.source import describe_source

        layout = describe_source(model)
        scale = base_norm(model, layout) if limits.max_scale_ratio is not None else None
        peer_record = ChainRecord(base=record.base)
        files = [(p, peer_record) for p in peers] + [(update_file, record)]
        judged = [
            judge_update(p, base=model, layout=layout, record=r, limits=limits, base_scale=scale)
            for p, r in files
        ]
    return judge_round(judged, limits)[-1]


# --- status ---------------------------------------------------------------------------------------------------


@app.command()
def status(json_output: JsonFlag = False) -> None:
    """Workers alive, their faults, jobs in progress, queue lengths and counters. Exit 6 while a fault is set."""
    from ledger.dev.services import DevServices, redis_ping
    from ledger.errors import ServiceUnavailable
    from worker.state import WorkerState

    s = load_settings()
    url = s.redis_url
    if url is None:
        record = DevServices(s).read().get("redis")
        url = record.url if record is not None and (record.external or record.alive()) else None
    if url is None:
        raise ServiceUnavailable(
            "Redis", "(not configured)", "no redis_url and no embedded redis-server running",
            hint="set MESHPROV_REDIS_URL or run `meshprov dev up`",
        )  # fmt: skip
    redis_ping(url)
    state = WorkerState.from_url(url)
    faults = state.faults()
    report = {
        "redis": url,
        "workers": state.workers(),
        "faults": faults,
        "progress": state.all_progress(),
        "queues": state.queue_lengths(state.known_queues()),
        "metrics": state.metrics(),
    }
    emit(report, json_mode=want_json(json_output), human=lambda c: _print_status(c, report))
    if faults:
        raise typer.Exit(int(ExitCode.UNAVAILABLE))


def _print_status(console: Console, report: dict[str, Any]) -> None:
    from rich.table import Table

    workers = Table("worker", "component", "pid", "host", "queue / state", title="workers")
    for w in report["workers"]:
        extra = w.get("queue") or ("ok" if w.get("ok") else f"error: {w.get('error')}")
        workers.add_row(
            str(w.get("worker")), str(w.get("component")), str(w.get("pid")), str(w.get("host")), extra
        )
    console.print(workers)
    if report["faults"]:
        faults = Table("worker", "kind", "count", "gave up", "detail", title="[red]faults[/]")
        for f in report["faults"]:
            faults.add_row(
                str(f["worker"]), f["kind"], str(f.get("count")), str(f.get("gave_up")), f["detail"]
            )
        console.print(faults)
    else:
        console.print("no faults")
    for job in report["progress"]:
        console.print(
            f"{job['job']} task {job['task']} round {job['round']}: {job['stage']} ({job.get('worker')})"
        )
    for queue, length in report["queues"].items():
        console.print(f"queue {queue}: {length} waiting")
    for metric, value in report["metrics"].items():
        console.print(f"{metric} = {value}")
