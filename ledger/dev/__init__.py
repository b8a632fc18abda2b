"""Development machinery: embedded services, the non-Python toolchain, the contracts' build.

    services.py    DevServices, AnvilProcess, RedisProcess: anvil and redis-server children of a data directory
    toolchain.py   where anvil, forge, cast, the solc wrapper and redis-server are (and how to get them)
    build.py       `python -m ledger.dev.build` (`make contracts`): compile and export ledger/artifacts

ledger's library code never imports this package to start a process: a command line decides that
(``ledger/cli/endpoints.py``), and only when the tool it needs is installed.
"""
