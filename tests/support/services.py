"""Embedded services for the tests: real anvil and redis-server children from `ledger.dev.services`, stopped after
the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger.dev.services import AnvilProcess, RedisProcess, dev_accounts
from ledger.settings import Settings


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilProcess]:
    """One anvil for the session; use the `w3` fixture for per-test isolation (snapshot/revert)."""
    with AnvilProcess.start(tmp_path_factory.mktemp("anvil")) as proc:
        yield proc


@pytest.fixture
def w3(anvil: AnvilProcess) -> Iterator[object]:
    """A Web3 on the session's anvil; every change a test makes is reverted after it."""
    from web3 import HTTPProvider, Web3

    web3 = Web3(HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 30}))
    snapshot = web3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    yield web3
    web3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def dev_keys() -> list[tuple[str, str]]:
    """(address, private key) of anvil's funded dev accounts."""
    return dev_accounts(Settings().anvil_mnemonic, 20)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    with RedisProcess.start(tmp_path_factory.mktemp("redis")) as proc:
        yield proc


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> Iterator[str]:
    """The session's redis-server, emptied after each test."""
    import redis

    yield redis_server.url
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
