"""Run a ``meshprov`` command as one host of a multi-host lab:
``python -m lab.host_exec RECORD [--warm MODULE,…] [--after DEPLOYMENT] -- ARGS…``.

``--warm`` imports the heavy modules (torch, the recipe's libraries, Celery) first and ``--after`` then waits for
the deployment record to appear (the harness copies it to every host once the operator deployed) and takes
``MESHPROV_TASK_ID`` from it: processes start before the task exists, so the first round's submission window is
not spent importing torch on a loaded machine.

The command runs unchanged (``ledger.cli.app.main(ARGS)``); the additions are a record of every block this process
took from a gateway after the gateway client verified it (one line ``<cid> <bytes>`` appended to RECORD, see
:func:`install_record`).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def install_record(path: str) -> bool:
    """Record in ``path`` every block a gateway walk took (one line ``<cid> <bytes>``); False when the gateway
    module has no walk to wrap any more.

    The walk (``iter_file`` over the fetch's block reader) only ever sees blocks already checked against their
    CID: the raw reader hashes each one, the CAR reader hashes each section, and a block that fails is refused
    (logged as a warning, the next gateway asked) before the walk gets it. So each line is a verified block."""
    from ledger.content import gateway
    from ledger.content.multiformats import CID

    original = getattr(gateway, "iter_file", None)
    if original is None:
        return False
    lock = threading.Lock()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def walk(root: bytes, read_block: Callable[[bytes], Any], **kwargs: Any) -> Any:
        def recorded(digest: bytes) -> Any:
            block = read_block(digest)
            line = f"{CID(digest).v0} {len(block)}\n".encode()
            with lock:
                os.write(fd, line)
            return block

        return original(root, recorded, **kwargs)

    setattr(gateway, "iter_file", walk)  # noqa: B010 (a module attribute replaced on purpose)
    return True


def wait_for_deployment(path: Path, poll: float = 0.1) -> None:
    """Wait until the deployment record at ``path`` exists (written atomically), then set the task id from it."""
    while True:
        try:
            record = json.loads(path.read_text())
            break
        except (OSError, ValueError):  # not there yet, or being written
            time.sleep(poll)
    os.environ["MESHPROV_TASK_ID"] = str(int(record["task_id"]))


def main(argv: list[str]) -> int:
    usage = "usage: python -m lab.host_exec RECORD [--warm MODULE,…] [--after DEPLOYMENT] -- MESHPROV-ARGS…"
    if "--" not in argv or argv.index("--") < 1:
        print(usage, file=sys.stderr)
        return 2
    split = argv.index("--")
    head, args = argv[:split], argv[split + 1 :]
    options = dict(zip(head[1::2], head[2::2], strict=False))
    if len(head) % 2 != 1 or set(options) - {"--warm", "--after"}:
        print(usage, file=sys.stderr)
        return 2
    install_record(head[0])
    for module in filter(None, options.get("--warm", "").split(",")):
        importlib.import_module(module)
    from ledger.cli.app import main as meshprov

    if "--after" in options:
        wait_for_deployment(Path(options["--after"]))
    return meshprov(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
