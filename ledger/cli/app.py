"""The root of the `meshprov` command.

Command groups are registered without `ledger` importing `node` or `worker`: ledger's own groups are listed in
``_LEDGER_GROUPS``; other packages add theirs through the ``meshprov.commands`` entry-point group. Group
modules keep heavy imports (web3, torch, celery) inside their command functions so ``meshprov --help`` is fast.
:func:`root_command` builds the click tree of one invocation and gives every command in it the global options
(``ledger/cli/global_options.py``), so they work before or after the command.
"""

from __future__ import annotations

import importlib
import logging
import sys
from importlib.metadata import entry_points
from typing import Annotated, Any

import typer
from rich.markup import escape

from ledger import __version__
from ledger.cli import global_options, output
from ledger.cli.state import reset
from ledger.errors import MeshprovError
from ledger.exit_codes import EXIT_CODE_HELP, ExitCode

# name -> "module:attribute" of a typer.Typer (a group) or a function (a single command)
_LEDGER_GROUPS: dict[str, tuple[str, str]] = {
    "dev": ("ledger.cli.dev:app", "Embedded development services: anvil and redis-server children."),
    "chain": ("ledger.cli.chain:app", "Deploy the contracts and show the deployment."),
    "store": ("ledger.cli.store:app", "Put, get and pin content in the configured store."),
    "audit": ("ledger.cli.audit:app", "Rebuild and check the provenance of models and updates."),
    "index": ("ledger.cli.index:app", "Follow the ledger's events into the index."),
    "dashboard": ("ledger.cli.dashboard:app", "Serve the reward dashboard, JSON API and metrics."),
}
_LEDGER_COMMANDS: dict[str, tuple[str, str]] = {
    "cid": ("ledger.cli.cid:cid_command", "Print a file's CID as `ipfs add --only-hash -Q` would."),
}
# Groups other packages provide; when they are not installed the group explains which extra to install.
_EXTERNAL_GROUPS: dict[str, tuple[str, str]] = {  # name -> (extra that provides it, help)
    "worker": ("worker", "Validator and aggregator workers (Celery)."),
    "node": ("node", "A consortium member: train, publish, submit."),
    "demo": ("node", "Run a whole consortium on one machine."),
    "experiment": ("node", "Robustness experiments: Byzantine members and fault injection."),
    "lab": ("node", "Multi-host test consortia in network namespaces."),
}

app = typer.Typer(
    name="meshprov",
    help="Blockchain-anchored model provenance for consortium training.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"meshprov {__version__}")
        raise typer.Exit(0)


def _exit_codes(value: bool) -> None:
    if value:
        for code in ExitCode:
            typer.echo(f"{int(code):>4}  {code.name:<15} {EXIT_CODE_HELP[code]}")
        raise typer.Exit(0)


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    help_exit_codes: Annotated[
        bool,
        typer.Option(
            "--help-exit-codes", callback=_exit_codes, is_eager=True, help="List exit codes and exit."
        ),
    ] = False,
) -> None:
    """meshprov: anchor, verify and audit the lineage of consortium-trained models."""


def _load(target: str) -> object:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _missing_group(name: str, extra: str, help_text: str) -> typer.Typer:
    stub = typer.Typer(help=f"{help_text} (not installed: pip install 'meshprov[{extra}]')")

    @stub.callback(invoke_without_command=True)
    def _explain() -> None:
        raise MeshprovError(
            f"`meshprov {name}` needs the `{extra}` extra, which is not installed",
            hint=f"pip install 'meshprov[{extra}]'",
        )

    return stub


def _register() -> None:
    for name, (target, help_text) in _LEDGER_GROUPS.items():
        try:
            group = _load(target)
        except ModuleNotFoundError as exc:
            if exc.name != target.partition(":")[0]:
                raise
            continue  # a group whose module is not written yet
        assert isinstance(group, typer.Typer)
        app.add_typer(group, name=name, help=help_text)
    for name, (target, help_text) in _LEDGER_COMMANDS.items():
        try:
            func = _load(target)
        except ModuleNotFoundError as exc:
            if exc.name != target.partition(":")[0]:
                raise
            continue
        assert callable(func)
        app.command(name=name, help=help_text)(func)


_register()


def _register_external(invoked: str | None) -> None:
    """Add the groups other packages provide. Only the invoked one is imported: `meshprov audit` must not pay
    for (or need) torch or Celery; the others appear in `--help` by name and help text.

    Runs on every `main()` call: a placeholder registered by an earlier call in the same process (tests call
    `main` many times) is swapped for the real group once that group is invoked."""
    found = {ep.name: ep for ep in entry_points(group="meshprov.commands")}
    for name, (extra, help_text) in _EXTERNAL_GROUPS.items():
        current = next((info for info in app.registered_groups if info.name == name), None)
        if current is not None and (name != invoked or current.typer_instance not in _PLACEHOLDERS):
            continue
        ep = found.get(name)
        group: object = None
        if ep is not None and name == invoked:
            try:
                group = ep.load()
            except ModuleNotFoundError:
                group = None
        if not isinstance(group, typer.Typer):
            group = typer.Typer(help=help_text) if ep is not None and name != invoked else None
            group = group or _missing_group(name, extra, help_text)
            _PLACEHOLDERS.add(group)
        if current is not None:
            app.registered_groups.remove(current)
        app.add_typer(group, name=name, help=help_text)


_PLACEHOLDERS: set[typer.Typer] = set()


def _invoked_group(argv: list[str]) -> str | None:
    """The first positional word of the command line (the group), skipping global options and their values."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in global_options.TAKE_A_VALUE:
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def root_command(argv: list[str] | None = None) -> Any:
    """The click command of the whole CLI with the group ``argv`` invokes loaded and the global options on every
    command, as `main` runs it (also for tools and tests that parse command lines without running them). Starts
    the invocation's state afresh."""
    _register_external(_invoked_group(list(argv or [])))
    reset()
    command = typer.main.get_command(app)
    global_options.add_to_tree(command)
    return command


def _report(exc: MeshprovError) -> int:
    output.stderr.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
    if exc.hint:
        output.stderr.print(f"  [yellow]hint:[/] {escape(exc.hint)}", highlight=False)
    return int(exc.exit_code)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the CLI and turn every foreseen failure into a message and an exit code."""
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    args = list(sys.argv[1:] if argv is None else argv)
    level = logging.getLogger().level
    command = root_command(args)
    try:
        return _run(command, args)
    finally:
        # One invocation's global options (state, --log-level) never leak into what runs after it in the same
        # process (the tests call main many times).
        reset()
        logging.getLogger().setLevel(level)


def _run(command: Any, args: list[str]) -> int:
    try:
        # Standalone mode: click reports usage errors (exit 2) and turns Ctrl-C into exit 130 itself.
        command.main(args=args, prog_name="meshprov", standalone_mode=True)
    except MeshprovError as exc:
        return _report(exc)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        output.stderr.print("interrupted", highlight=False)
        return int(ExitCode.INTERRUPTED)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
