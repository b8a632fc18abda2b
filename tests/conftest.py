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
