"""The global options work before or after the command, for every command in the tree (external groups too)."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.cli import app as root
from ledger.cli import global_options
from ledger.cli.app import main
from ledger.cli.state import current, reset
from ledger.exit_codes import ExitCode

# option -> (words on the command line, where the value lands: CliState attribute or settings override)
GIVEN: dict[str, tuple[list[str], str, Any]] = {
    "--data-dir": (["--data-dir", "/tmp/meshprov-global"], "override:data_dir", Path("/tmp/meshprov-global")),
    "--config": (["--config", "/tmp/meshprov-global.toml"], "config_file", Path("/tmp/meshprov-global.toml")),
    "--json": (["--json"], "json", True),
    "--log-level": (["--log-level", "debug"], "override:log_level", "DEBUG"),
    "--rpc-url": (["--rpc-url", "http://127.0.0.1:1"], "override:chain_rpc_url", "http://127.0.0.1:1"),
}
EXTERNAL = ("worker", "node", "demo", "experiment")


@pytest.fixture(autouse=True)
def _restore_state() -> Iterator[None]:
    """Parsing sets the global state and --log-level the root logger: undo both for the tests that follow."""
    level = logging.getLogger().level
    yield
    reset()
    logging.getLogger().setLevel(level)


@functools.cache
def tree(group: str | None) -> Any:
    """The click tree `main` builds for a command line whose group is ``group`` (external groups are loaded only
    when invoked). Building it is slow, so the tests parse many command lines with one tree each."""
    return root.root_command([group] if group else [])


def every_command() -> list[tuple[str, ...]]:
    """The path of every group and command of the tree, the external groups loaded as `main` loads them."""
    paths: set[tuple[str, ...]] = set()

    def walk(command: Any, path: tuple[str, ...]) -> None:
        paths.add(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))

    walk(tree(None), ())
    for group in EXTERNAL:
        walk(tree(group).commands[group], (group,))
    return sorted(paths)


def required_words(path: tuple[str, ...]) -> list[str]:
    """Values for the command's required arguments and options ("1" parses as every one of them)."""
    command = leaf(path)
    words: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        if param.param_type_name == "argument":
            words.append("1")
        else:
            words += [param.opts[0], "1"]
    return words


def leaf(path: tuple[str, ...]) -> Any:
    command: Any = tree(path[0] if path and path[0] in EXTERNAL else None)
    for name in path:
        command = command.commands[name]
    return command


def parse(args: list[str]) -> Any:
    """Parse ``meshprov ARGS`` down to the last command without running it, as `main` does (fresh state, the
    invoked group's tree); returns the innermost context."""
    group = root._invoked_group(args)
    command: Any = tree(group if group in EXTERNAL else None)
    reset()
    ctx = command.make_context("meshprov", list(args))
    while hasattr(command, "resolve_command") and (getattr(ctx, "_protected_args", []) or ctx.args):
        name, command, rest = command.resolve_command(ctx, [*getattr(ctx, "_protected_args", []), *ctx.args])
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


def landed(ctx: Any, option: str) -> Any:
    """The option's value as the command sees it: its own parameter of that name when it has one and it was given
    there (such commands fall back to the global value, as `want_json` and `demo --data-dir` do), else the
    invocation's state."""
    _, target, _ = GIVEN[option]
    for param in ctx.command.params:
        own = option in getattr(param, "opts", ()) and param not in global_options.PARAMETERS
        if own and ctx.params[param.name]:
            return ctx.params[param.name]
    state = current()
    if target.startswith("override:"):
        return state.overrides.get(target.split(":", 1)[1])
    return getattr(state, target)


COMMANDS = every_command()


def test_the_tree_is_complete() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"audit verify", "audit lineage", "store get", "worker run", "node run", "demo", "dev up"} <= names
    assert set(global_options.NAMES) == set(GIVEN)


def first_leaf(path: tuple[str, ...]) -> tuple[str, ...]:
    """``path`` itself for a command; for a group, the path down to its first command."""
    command = leaf(path)
    while getattr(command, "commands", None):
        name = sorted(command.commands)[0]
        path, command = (*path, name), command.commands[name]
    return path


@pytest.mark.parametrize("option", sorted(GIVEN))
@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "meshprov")
def test_every_command_takes_every_global_option_before_and_after(path: tuple[str, ...], option: str) -> None:
    """A command takes the option after its arguments and before its name; a group takes it right after its own
    name (``meshprov audit --json verify F``)."""
    words, _, expected = GIVEN[option]
    full = first_leaf(path)
    tail = required_words(full)
    if full == path:  # a command
        cases = {"before": [*words, *path, *tail], "after": [*path, *tail, *words]}
    else:  # a group (the root too): its options come before its subcommand
        cases = {"in the group": [*path, *words, *full[len(path) :], *tail]}
    for where, args in cases.items():
        assert landed(parse(args), option) == expected, f"{where}: meshprov {' '.join(args)}"


def test_a_global_option_given_twice_takes_the_later(tmp_path: Path) -> None:
    ctx = parse(
        ["--data-dir", "/outer", "audit", "--data-dir", "/group", "verify", "f", "--data-dir", "/inner"]
    )
    assert landed(ctx, "--data-dir") == Path("/inner")


def test_options_after_the_command_reach_the_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MESHPROV_DATA_DIR", "MESHPROV_STORE_DIR", "MESHPROV_STORE", "MESHPROV_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "data"
    file = tmp_path / "hello.txt"
    file.write_bytes(b"hello world\n")
    assert main(["store", "put", str(file), "--data-dir", str(data), "--json"]) == ExitCode.OK
    cid = json.loads(capsys.readouterr().out)["cid"]
    assert any((data / "blocks").rglob("*")), "the block went to the --data-dir given after the command"
    out = tmp_path / "out.txt"
    assert main(["store", "get", cid, "-o", str(out), "--data-dir", str(data)]) == ExitCode.OK
    assert out.read_bytes() == b"hello world\n"
    config = tmp_path / "m.toml"
    config.write_text(f'data_dir = "{data}"\n')
    assert main(["store", "has", cid, "--config", str(config), "--json"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["present"] is True


def test_a_bad_global_option_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "f", "--log-level", "loud"]) == ExitCode.USAGE
    assert "--log-level" in capsys.readouterr().err
