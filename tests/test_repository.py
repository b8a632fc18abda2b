"""The repository stands alone, and its README tells the truth about the command line.

* No tracked file refers to anything outside the checkout: no sibling directory of the checkout, no paths of the
  machine it was written on, no relative path that climbs above the repository root.
* Every ``meshprov`` command in the README's code blocks (quick start, command sections) parses with the real CLI,
  in its shortest and its fullest form and with each alternative it names; every ``make`` target it names exists.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ledger.cli import app as root
from ledger.cli.state import reset
from tests.support import REPO

# Roots of the machines meshprov was developed on; a tracked file naming one depends on that machine.
MACHINE_PATHS = re.compile(r"(?<![\w.-])(?:\.\./shared\b|/work/|/root/|/scratch/|/mnt/)")
RELATIVE = re.compile(r"(?<![\w.$/-])((?:\.\./)+)[\w@.-]")


def tracked_text_files() -> list[Path]:
    """The text files git tracks, and those it would add (untracked, not ignored)."""
    names = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout.decode()
    files = []
    for name in filter(None, names.split("\0")):
        path = REPO / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" not in data[:8192]:
            files.append(path)
    return files


def test_no_tracked_file_refers_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    offenders = []
    for path in tracked_text_files():
        if path.resolve() == this:
            continue
        text = path.read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            where = f"{path.relative_to(REPO)}:{number}"
            offenders += [f"{where}: {m.group(0)!r}" for m in MACHINE_PATHS.finditer(line)]
            for match in RELATIVE.finditer(line):
                target = os.path.normpath(path.parent / match.group(1))
                if not Path(target).is_relative_to(REPO):
                    offenders.append(f"{where}: {match.group(0)!r} climbs out of the repository")
    assert offenders == []


def test_the_self_containment_check_catches_what_it_should() -> None:
    sibling = "/".join(("..", "shared"))  # spelled apart so that this file names no sibling directory itself
    assert MACHINE_PATHS.search(f"see {sibling}/vectors/x.json")
    assert MACHINE_PATHS.search("demo in /work/main/.meshprov/demo")
    assert not MACHINE_PATHS.search("docs/worker.md, a /var/lib/meshprov data dir")
    assert [m.group(1) for m in RELATIVE.finditer("libs = ['../node_modules'] and ../../x")] == [
        "../",
        "../../",
    ]


# --- the README's commands ----------------------------------------------------------------------------------


def readme_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    # every fenced block is matched (so a ```python block cannot pair its closing fence with the next opening);
    # only shell blocks hold commands
    blocks = re.findall(r"```([a-z]*)\n(.*?)```", text, flags=re.DOTALL)
    return [body for lang, body in blocks if lang in ("", "sh", "bash", "console")]


def readme_lines(program: str) -> list[str]:
    """The command lines of ``program`` in the README's code blocks: comments dropped, continuation lines (an
    indented line after a command) joined to their command."""
    lines: list[str] = []
    for block in readme_blocks():
        for raw in block.splitlines():
            line = raw.split("  #", 1)[0].split("# ", 1)[0].rstrip() if "#" in raw else raw.rstrip()
            if line.startswith(program + " ") or line == program:
                lines.append(line.strip())
            elif (
                lines
                and raw.startswith(" ")
                and line.strip().startswith("[")
                and lines[-1].startswith(program)
            ):
                lines[-1] += " " + line.strip()
    return lines


def expand(synopsis: str) -> list[list[str]]:
    """Concrete command lines of a synopsis: `A | B` after a group are separate commands; `[...]` optional parts
    left out (shortest) or all given (fullest); `x|y` alternatives each taken once; PLACEHOLDERS made "1"."""
    words = synopsis.split()
    alternatives = [i for i, word in enumerate(words) if word == "|"]
    if alternatives:  # `meshprov store pin CID | stat CID | has CID`
        prefix = words[:2]
        parts = [
            list(group)
            for is_bar, group in itertools.groupby(words[2:], key=lambda w: w == "|")
            if not is_bar
        ]
        return [line for part in parts for line in expand(" ".join([*prefix, *part]))]
    text = " ".join(words)
    width = max([len(w.strip("[]").split("|")) for w in words] + [1])
    out = []
    for optional in (False, True):
        for choice in range(width):
            shown = re.sub(r"\[([^\]]*)\]", (lambda m: m.group(1)) if optional else "", text)
            out.append([_concrete(word, choice) for word in shown.split()][1:])
    return [list(x) for x in {tuple(x) for x in out}]


def _concrete(word: str, choice: int) -> str:
    """The ``choice``-th alternative of ``a|b`` (the last when there are fewer); "1" for a PLACEHOLDER."""
    options = word.split("|")
    picked = options[min(choice, len(options) - 1)]
    return "1" if re.fullmatch(r"[A-Z][A-Z_]*", picked) else picked


def parse(args: list[str]) -> list[str]:
    """Parse ``meshprov ARGS`` with the real CLI down to the command, as `main` would, without running it."""
    command: Any = root.root_command(args)
    ctx = command.make_context("meshprov", list(args))
    path = ["meshprov"]
    while hasattr(command, "resolve_command") and (getattr(ctx, "_protected_args", []) or ctx.args):
        name, command, rest = command.resolve_command(ctx, [*getattr(ctx, "_protected_args", []), *ctx.args])
        ctx = command.make_context(name, rest, parent=ctx)
        path.append(name)
    reset()
    return path


def test_the_readme_names_its_commands() -> None:
    lines = readme_lines("meshprov")
    assert len(lines) >= 25
    assert any(line.startswith("meshprov demo") and "--json" in line for line in lines)  # continuation joined
    assert sorted(expand("meshprov store pin CID | stat CID | has CID")) == [
        ["store", "has", "1"],
        ["store", "pin", "1"],
        ["store", "stat", "1"],
    ]
    assert sorted(expand("meshprov dev up [--only anvil|redis]")) == [
        ["dev", "up"],
        ["dev", "up", "--only", "anvil"],
        ["dev", "up", "--only", "redis"],
    ]


@pytest.mark.parametrize("synopsis", readme_lines("meshprov"))
def test_every_readme_command_parses_with_the_real_cli(synopsis: str) -> None:
    for args in expand(synopsis):
        path = parse(args)
        assert len(path) >= 2, f"`meshprov {' '.join(args)}` names no command"


def test_a_wrong_readme_command_would_be_caught() -> None:
    from typer._click.exceptions import UsageError

    for bad in ("meshprov audit lineage CID --no-such-flag", "meshprov audit lineag CID", "meshprov cid"):
        (args,) = expand(bad)
        with pytest.raises(UsageError):
            parse(args)


def test_every_make_target_the_readme_names_exists() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.MULTILINE))
    named = {line.split()[1] for line in readme_lines("make")}
    assert {"demo", "test", "setup"} <= named
    assert named <= targets
