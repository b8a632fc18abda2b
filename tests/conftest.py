"""The tests' shared fixtures live in ``tests/support`` and are loaded here as plugins, so every test module
sees them without importing (or re-binding) fixture names.

Layout: ``tests/<package>/...`` mirrors the source tree (``ledger/chain`` -> ``tests/ledger/chain``); ``tests/lab``
holds the whole-consortium runs; ``tests/test_layout.py`` guards the import direction and self-containment;
``tests/data`` holds recorded replies and vectors (facts from real Kubo), ``tests/support`` the helpers.
"""

pytest_plugins = [
    "tests.support.services",
    "tests.support.chain",
    "tests.support.index",
    "tests.support.dashboard",
    "tests.support.worker",
    "tests.support.node",
]


def _restore_ctrl_c() -> None:
    """A shell starts background jobs (`pytest … &`, nohup) with SIGINT ignored, and every child inherits that:
    the tests that stop a command with Ctrl-C would then wait on a process that cannot hear it. Python only
    installs its KeyboardInterrupt handler when SIGINT is not ignored, so put it back for us and our children."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


_restore_ctrl_c()
