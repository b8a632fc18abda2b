"""`meshprov node run | status | relay | genesis`: a consortium member from the command line.

Heavy imports (torch, web3, redis) stay inside the command bodies so that `meshprov --help` stays fast.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledger.cli.output import JsonFlag, emit, info, want_json
from ledger.cli.state import settings as load_settings

if TYPE_CHECKING:
    from rich.console import Console

    from ledger.chain.client import LedgerClient
    from ledger.settings import Settings

app = typer.Typer(no_args_is_help=True, help="A consortium member: train, publish, submit.")

BEHAVIOURS = ("honest", "scale", "sign-flip", "noise", "free-rider", "copycat", "little-is-enough")
_DATA = "Data"
_EXPERIMENTS = "Experiments"
_PRIVACY = "Differential privacy"


def _client(s: Settings, *, read_only: bool, wait_s: float | None) -> LedgerClient:
    """The ledger client; while the chain does not answer yet, wait (up to ``wait_s``, None: forever)."""
    from ledger.chain.client import LedgerClient
    from ledger.cli.endpoints import chain_url
    from ledger.errors import ServiceUnavailable

    started = time.monotonic()
    delay = 0.5
    while True:
        try:
            return LedgerClient.from_settings(s, endpoint=chain_url(s), read_only=read_only)
        except ServiceUnavailable as exc:
            if wait_s is not None and time.monotonic() - started > wait_s:
                raise
            if delay == 0.5:
                info(f"{exc.message}; waiting for it")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


@app.command()
def run(
    *,
    recipe: Annotated[
        str | None,
        typer.Option(
            "--recipe",
            help="The task's recipe: a builtin (digits, digits_cnn), an installed module, a .py file or a package "
            "directory; default: the builtin the task's spec names, else digits. Refused (exit 3) unless its hash is "
            "the task's.",
        ),
    ] = None,
    require_spec: Annotated[
        bool,
        typer.Option(
            "--require-spec",
            help="Refuse to train when the task's spec cannot be read or names no recipe (default: warn).",
        ),
    ] = False,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Legacy: mlp (= --recipe digits) or cnn (= --recipe digits_cnn)."),
    ] = None,
    shard: Annotated[
        int,
        typer.Option(
            "--shard",
            min=0,
            help="This member's share of the recipe's data(shard, shards, seed) (0-based).",
            rich_help_panel=_DATA,
        ),
    ] = 0,
    shards: Annotated[
        int,
        typer.Option(
            "--shards",
            min=1,
            help="Number of members the recipe's data is split over.",
            rich_help_panel=_DATA,
        ),
    ] = 1,
    alpha: Annotated[
        float | None,
        typer.Option(
            "--alpha",
            min=1e-6,
            help="Dirichlet α of the non-IID split (small: skewed); default: the task spec's, else 0.5.",
            rich_help_panel=_DATA,
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Seed of the split and of training.", rich_help_panel=_DATA)
    ] = 0,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="MODULE:FUNCTION returning this member's own training set, a torch Dataset (replaces the recipe's "
            "data(shard, shards, seed)).",
            rich_help_panel=_DATA,
        ),
    ] = None,
    rounds: Annotated[
        int | None,
        typer.Option("--rounds", min=1, help="Stop after this many rounds (default: run forever)."),
    ] = None,
    task: Annotated[
        int | None, typer.Option("--task", min=1, help="Task id (default: the task_id setting).")
    ] = None,
    relay: Annotated[
        bool,
        typer.Option("--relay", help="Sign submissions (EIP-712) for a relayer instead of paying gas."),
    ] = False,
    relay_via: Annotated[
        str | None,
        typer.Option(
            "--relay-via",
            help="The relayer: http(s)://HOST:PORT (`meshprov worker relay`, across organisations) or the Redis "
            "URL of its queue (inside the operator's organisation; default: the redis_url setting).",
        ),
    ] = None,
    relay_timeout: Annotated[
        float,
        typer.Option(
            "--relay-timeout",
            min=1.0,
            help="HTTP relay: seconds to wait for the submission on chain before --relay-fallback submits it.",
        ),
    ] = 120.0,
    relay_fallback: Annotated[
        bool,
        typer.Option(
            "--relay-fallback/--no-relay-fallback",
            help="HTTP relay: submit directly (the key pays gas) when the relayer has not got it on chain in time.",
        ),
    ] = False,
    relay_ca: Annotated[
        Path | None,
        typer.Option(
            "--relay-ca",
            help="HTTPS relay: the PEM CA file that signed the relayer's certificate (default: the system's CAs).",
        ),
    ] = None,
    relay_insecure_http: Annotated[
        bool,
        typer.Option(
            "--relay-insecure-http",
            help="Allow a plain http:// relayer beyond loopback (anyone on the path can read, drop or delay "
            "submissions).",
        ),
    ] = False,
    behaviour: Annotated[
        str,
        typer.Option(
            "--behaviour", help=f"What to publish: {', '.join(BEHAVIOURS)}.", rich_help_panel=_EXPERIMENTS
        ),
    ] = "honest",
    scale: Annotated[
        float, typer.Option("--scale", help="Factor of the scale behaviour.", rich_help_panel=_EXPERIMENTS)
    ] = 10.0,
    dp_clip: Annotated[
        float | None,
        typer.Option(
            "--dp-clip",
            min=0.0,
            help="Clip each update to this L2 norm (with --dp-noise; default 1).",
            rich_help_panel=_PRIVACY,
        ),
    ] = None,
    dp_noise: Annotated[
        float | None,
        typer.Option(
            "--dp-noise",
            min=0.0,
            help="Gaussian noise multiplier σ: turns update-level DP on.",
            rich_help_panel=_PRIVACY,
        ),
    ] = None,
    dp_delta: Annotated[
        float,
        typer.Option("--dp-delta", help="δ of the (ε, δ) recorded in each update.", rich_help_panel=_PRIVACY),
    ] = 1e-5,
    poll: Annotated[
        float, typer.Option("--poll", min=0.01, help="First poll interval, seconds (backs off).")
    ] = 0.25,
    max_poll: Annotated[
        float, typer.Option("--max-poll", min=0.01, help="Longest poll interval, seconds.", hidden=True)
    ] = 2.0,
    base_attempts: Annotated[
        int,
        typer.Option(
            "--base-attempts", min=1, help="Attempts to fetch a round's base model before exiting (6)."
        ),
    ] = 6,
    wait_chain: Annotated[
        float | None,
        typer.Option(
            "--wait-chain", min=0, help="Give up when the chain is unreachable this long (default: wait)."
        ),
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Progress bars on a terminal.")
    ] = True,
    json_output: JsonFlag = False,
) -> None:
    """Take part in every round: train on the base, publish the update, submit it, wait for the verdict.

    Exit codes: 9 the key is not a contributor, 6 the base model cannot be fetched (after retries), 3 the installed
    recipe's hash is not the task's or the base is not a model of the recipe, 5 a recipe that cannot be loaded,
    130 interrupted. Update files stay in <data_dir>/node/<address>/updates/."""
    from ledger.content import open_store
    from node.faults import NoSigningKey
    from node.journal import Journal
    from node.progress import bars_for_stderr
    from node.runner import NodeOptions, NodeRunner

    if behaviour not in BEHAVIOURS:
        raise typer.BadParameter(f"choose one of {', '.join(BEHAVIOURS)}", param_hint="--behaviour")
    if dp_clip is not None and dp_noise is None:
        raise typer.BadParameter("--dp-clip needs --dp-noise (the noise multiplier)", param_hint="--dp-clip")
    if shard >= shards:
        raise typer.BadParameter(f"must be below --shards ({shards})", param_hint="--shard")
    if model is not None and model not in ("mlp", "cnn"):
        raise typer.BadParameter("choose one of mlp, cnn (or pass --recipe)", param_hint="--model")
    if model is not None and recipe is not None:
        raise typer.BadParameter("give --recipe or the legacy --model, not both", param_hint="--model")
    if recipe is not None:
        from node.recipe import load_recipe

        load_recipe(recipe)  # a recipe that cannot be loaded fails now (exit 5), before any connection
    http_relay = relay_via is not None and relay_via.startswith(("http://", "https://"))
    if relay_via is not None and not relay_via.startswith(
        ("http://", "https://", "redis://", "rediss://", "unix://")
    ):
        raise typer.BadParameter("an http(s):// relayer or a redis(s):// queue", param_hint="--relay-via")
    if relay_fallback and not http_relay:
        raise typer.BadParameter(
            "is for an http(s) relayer (--relay-via http://…)", param_hint="--relay-fallback"
        )
    if (relay_ca is not None or relay_insecure_http) and not http_relay:
        raise typer.BadParameter(
            "is for an http(s) relayer (--relay-via https://…)",
            param_hint="--relay-ca" if relay_ca is not None else "--relay-insecure-http",
        )
    s = load_settings(redis_url=None if http_relay else relay_via)
    key = s.signing_key()
    if key is None:
        raise NoSigningKey()
    http: Any = None
    if relay and http_relay:
        from node.relay import HttpRelay

        assert relay_via is not None
        http = HttpRelay(  # a bad URL or CA file fails now, before any connection
            relay_via,
            timeout_s=relay_timeout,
            fallback_direct=relay_fallback,
            ca_file=relay_ca,
            allow_http=relay_insecure_http,
        )
    options = NodeOptions(
        task=task or s.task_id,
        recipe=recipe,
        require_spec=require_spec,
        model=model,
        shard=shard,
        shards=shards,
        alpha=alpha,
        seed=seed,
        rounds=rounds,
        behaviour=behaviour,
        scale_factor=scale,
        dp_clip=dp_clip,
        dp_noise=dp_noise,
        dp_delta=dp_delta,
        relay=relay,
        data_hook=data,
        poll_s=poll,
        max_poll_s=max(poll, max_poll),
        base_attempts=base_attempts,
        outage_max_s=wait_chain,
    )
    # A fallback to direct submission needs the signing client; otherwise a relayed member never sends a tx.
    client = _client(s, read_only=relay and not relay_fallback, wait_s=wait_chain)
    redis_client: Any = None
    if http is not None:
        redis_client = http
    elif relay:
        redis_client = _relay_redis(s)
    from eth_account import Account

    address = Account.from_key(key).address
    stop = threading.Event()
    runner = NodeRunner(
        options,
        client=client,
        store=open_store(s),
        key=key,
        journal=Journal.for_member(s.data_dir, address),
        max_update_bytes=s.max_update_bytes,
        say=lambda message: info(f"{time.strftime('%H:%M:%S')} {message}"),
        bars=bars_for_stderr(progress),
        relay_redis=redis_client,
        stop=stop,
    )
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())  # `docker stop`: finish the step, exit 0
    info(
        f"member {address}: task {options.task} on ledger {client.address}, "
        + (f"recipe {recipe}, " if recipe else "")
        + (
            f"data {data}"
            if data
            else f"shard {shard} of {shards} (α={'from the spec' if alpha is None else alpha}, seed {seed})"
        )
        + (f", behaviour {behaviour}" if behaviour != "honest" else "")
        + (", relayed" if relay else "")
    )
    try:
        records = runner.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if redis_client is not None:
            redis_client.close()
    result = {"address": address, "rounds": [r.to_dict() for r in records]}
    emit(result, json_mode=want_json(json_output), human=lambda c: _print_rounds(c, records))


def _relay_redis(s: Settings) -> Any:
    import redis

    from ledger.cli.endpoints import redis_url

    return redis.Redis.from_url(redis_url(s), socket_timeout=30, socket_connect_timeout=5)


def _print_rounds(console: Console, records: list[Any]) -> None:
    for r in records:
        extra = f" ({', '.join(r.reasons)})" if r.reasons else ""
        console.print(f"round {r.round}: {r.status}{extra} {r.cid}", highlight=False)


@app.command()
def status(
    *,
    address: Annotated[
        str | None, typer.Option("--address", help="Member to show (default: this member's key).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """This member's submissions with verdicts and reasons, reputation and rewards (index synced first)."""
    from eth_account import Account

    from ledger.chain.types import checksum
    from ledger.errors import ConfigError
    from node.status import member_status, render

    s = load_settings()
    if address is None:
        key = s.signing_key()
        if key is None:
            raise ConfigError("no member to show", hint="pass --address or set MESHPROV_PRIVATE_KEY_FILE")
        address = Account.from_key(key).address
    try:
        who = checksum(address)
    except ValueError:
        raise typer.BadParameter("not an address", param_hint="--address") from None
    from ledger.chain.client import LedgerClient
    from ledger.cli.endpoints import chain_url

    client = LedgerClient.from_settings(s, endpoint=chain_url(s), read_only=True)
    report = member_status(s, client, who)
    emit(report.to_dict(), json_mode=want_json(json_output), human=lambda c: render(c, report))


@app.command()
def claim(json_output: JsonFlag = False) -> None:
    """Mint this member's accrued rewards to its address (claimRewards; the member pays the gas)."""
    from ledger.chain.client import LedgerClient
    from ledger.chain.errors import NothingToClaim
    from ledger.cli.endpoints import chain_url
    from node.faults import NoSigningKey
    from node.runner import tokens

    s = load_settings()
    if s.signing_key() is None:
        raise NoSigningKey("member claiming its rewards")
    client = LedgerClient.from_settings(s, endpoint=chain_url(s))
    me = client.sender_address or ""
    try:
        result = client.claim_rewards()
        report: dict[str, Any] = {"address": me, "claimed": str(result.value), "tx": result.tx_hash}
    except NothingToClaim:
        report = {"address": me, "claimed": "0", "tx": None}
    balance = client.token_client().balance_of(me)
    report["balance"] = str(balance)

    def human(console: Any) -> None:
        if report["tx"] is None:
            console.print(f"{me}: nothing to claim (no reward accrued since the last claim)", highlight=False)
        else:
            console.print(
                f"{me}: claimed {tokens(int(report['claimed']))} tokens (tx {report['tx']}); "
                f"balance {tokens(balance)} tokens",
                highlight=False,
            )

    emit(report, json_mode=want_json(json_output), human=human)


@app.command("relay")
def relay_command(
    *,
    max_batch: Annotated[
        int, typer.Option("--max-batch", min=1, max=112, help="Submissions per transaction.")
    ] = 16,
    batch_wait: Annotated[
        float,
        typer.Option("--batch-wait", min=0.0, help="Seconds to gather a batch after the first message."),
    ] = 0.5,
    once: Annotated[bool, typer.Option("--once", help="Handle what is queued now, then exit.")] = False,
) -> None:
    """Relay members' signed submissions from the Redis queue in batches (this key pays the gas)."""
    import redis

    from ledger.chain.client import LedgerClient
    from ledger.cli.endpoints import chain_url, redis_url
    from node.faults import NoSigningKey
    from node.relay import Relayer

    s = load_settings()
    if s.signing_key() is None:
        raise NoSigningKey("relayer")
    client = LedgerClient.from_settings(s, endpoint=chain_url(s))
    client.view_block = "pending"
    r = redis.Redis.from_url(redis_url(s), socket_timeout=30, socket_connect_timeout=5)
    relayer = Relayer(client, r, max_batch=max_batch, batch_wait_s=batch_wait, say=info)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    info(f"relaying to ledger {client.address} from {relayer.queue} as {client.sender_address}")
    try:
        if once:
            relayer.handle(relayer.next_batch(1.0))
        else:
            relayer.run(stop.is_set)
    finally:
        signal.signal(signal.SIGTERM, previous)
        r.close()
    info(f"relayed {relayer.relayed}, refused {relayer.rejected}")


@app.command()
def genesis(
    *,
    model: Annotated[str, typer.Option("--model", help="Architecture (mlp, cnn).")] = "mlp",
    recipe: Annotated[
        str | None,
        typer.Option(
            "--recipe",
            help="Write the genesis of this recipe's model() instead (builtin, module, .py or package).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Initialisation seed.")] = 0,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Where to write the file (default: <data_dir>/genesis-<model>.safetensors)."
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Write a task's genesis model (full weights, metadata to rebuild it), put it in the store, print its CID."""
    from ledger.content import cid_to_digest, open_store
    from node.packaging import put_update, write_genesis

    s = load_settings()
    if recipe is not None:
        from node.packaging import write_recipe_genesis
        from node.recipe import load_recipe

        loaded = load_recipe(recipe)
        model = loaded.name
        path = out or s.data_dir / f"genesis-{loaded.name}-{seed}.safetensors"
        written = write_recipe_genesis(path, loaded, seed)
    else:
        path = out or s.data_dir / f"genesis-{model}-{seed}.safetensors"
        written = write_genesis(path, model, seed)
    store = open_store(s)
    try:
        cid = put_update(store, written)
    finally:
        store.close()
    data = {
        "cid": cid,
        "digest": "0x" + cid_to_digest(cid).hex(),
        "file": str(path),
        "model": model,
        "seed": seed,
    }
    emit(data, json_mode=want_json(json_output), human=lambda c: c.print(f"{cid}  {path}", highlight=False))
