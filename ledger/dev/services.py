"""Embedded development services: an anvil chain and a redis-server broker as child processes.

`meshprov dev up` starts each service that is not configured by URL, on 127.0.0.1 and a free port, keeping its
data in the data directory (anvil's state file, redis's append-only file) so that a restart keeps the chain and
the queue. Endpoints and process identities go to ``<data_dir>/services.json``; `down` stops exactly the processes
recorded there (checked by pid *and* start time, so a reused pid is never killed). The same classes give the test
suite its fixtures.

Nothing in ledger's library code starts these: the CLI decides when a command may (``ledger/cli/endpoints.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import httpx

from ledger.dev.toolchain import foundry_binary, redis_server_binary
from ledger.errors import MeshprovError, ServiceUnavailable
from ledger.settings import Settings

SERVICES_FILE = "services.json"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers themselves do: a port whose old connections linger in TIME_WAIT is free to listen on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def proc_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None when no such process lives."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie is dead for our purposes
        return None
    return int(fields[19])


def anvil_chain_id(url: str, timeout: float = 2.0) -> int:
    """Ask a JSON-RPC endpoint for ``eth_chainId``; raises ServiceUnavailable when it does not answer."""
    try:
        reply = httpx.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=timeout
        )
        reply.raise_for_status()
        if len(reply.content) > 4096:
            raise ValueError("reply too large")
        return int(reply.json()["result"], 16)
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise ServiceUnavailable(
            "chain RPC",
            url,
            str(exc) or type(exc).__name__,
            hint="check --rpc-url / MESHPROV_CHAIN_RPC_URL, or start the embedded chain with `meshprov dev up`",
        ) from None


def redact_url(url: str) -> str:
    """``url`` with its password (``redis://user:secret@host``, ``rediss://:secret@host``) shown as ``***``: a
    broker URL goes into error messages and logs, its generated password must not."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "<unparseable URL>"
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def redis_ping(url: str, timeout: float = 2.0) -> None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            if not client.ping():
                raise redis.RedisError("PING was not answered with PONG")
        finally:
            client.close()
    except (redis.RedisError, ValueError) as exc:
        raise ServiceUnavailable(
            "redis",
            redact_url(url),
            (str(exc) or type(exc).__name__).replace(url, redact_url(url)),
            hint="check MESHPROV_REDIS_URL or run `meshprov dev up`",
        ) from None


@dataclass
class ServiceRecord:
    """What `up` wrote about one service: enough for `status` and `down` in another process."""

    name: str
    url: str
    pid: int | None = None
    start_time: int | None = None
    port: int | None = None
    log: str | None = None
    external: bool = False

    def alive(self) -> bool:
        if self.pid is None:
            return False
        return proc_start_time(self.pid) == self.start_time


class ChildService:
    """A service run as a child process on 127.0.0.1; subclasses say how to start and probe it."""

    name: ClassVar[str]

    def __init__(self, process: subprocess.Popen[bytes], port: int, url: str, log: Path) -> None:
        self.process = process
        self.port = port
        self.url = url
        self.log = log

    # --- subclass hooks -----------------------------------------------------------------------------------------
    @classmethod
    def command(cls, binary: Path, port: int, data_dir: Path, settings: Settings) -> list[str]:
        raise NotImplementedError

    @classmethod
    def binary(cls, settings: Settings) -> Path:
        raise NotImplementedError

    @classmethod
    def url_for(cls, port: int) -> str:
        raise NotImplementedError

    @classmethod
    def probe(cls, url: str) -> None:
        """Raise ServiceUnavailable unless the service answers."""
        raise NotImplementedError

    # --- lifecycle -------------------------------------------------------------------------------------------
    @classmethod
    def start(
        cls, data_dir: Path, *, port: int = 0, settings: Settings | None = None, detach: bool = False
    ) -> Self:
        """Start the service and wait until it answers; on any failure nothing is left running."""
        settings = settings or Settings(data_dir=data_dir)
        binary = cls.binary(settings)
        service_dir = (data_dir / cls.name).resolve()
        service_dir.mkdir(parents=True, exist_ok=True)
        if port and not _port_is_free(port):
            raise ServiceUnavailable(
                cls.name,
                f"{HOST}:{port}",
                "the port is already in use",
                hint=f"pick another MESHPROV_{cls.name.upper()}_PORT, or 0 for a free one",
            )
        # A free port is only free until someone binds it: another process (a parallel test, a client's ephemeral
        # port) may take it before the service does, which then exits at once. A port we chose is chosen again.
        attempts = 1 if port else 3
        for attempt in range(1, attempts + 1):
            chosen = port or free_port()
            service = cls._spawn(binary, chosen, service_dir, settings, detach)
            try:
                service.wait_ready(settings.service_start_timeout_s)
            except ServiceUnavailable:
                exited = service.process.poll() is not None
                service.stop()
                if exited and attempt < attempts:
                    continue
                raise
            except BaseException:
                service.stop()
                raise
            return service
        raise AssertionError("unreachable")  # the last attempt returns or raises

    @classmethod
    def _spawn(cls, binary: Path, port: int, service_dir: Path, settings: Settings, detach: bool) -> Self:
        log = service_dir / f"{cls.name}.log"
        with log.open("ab") as log_file:
            process = subprocess.Popen(
                cls.command(binary, port, service_dir, settings),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=service_dir,
                # Detached services outlive `meshprov dev up` and ignore the terminal's Ctrl-C.
                start_new_session=detach,
            )
        return cls(process, port, cls.url_for(port), log)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceUnavailable(
                    self.name,
                    self.url,
                    f"the process exited with code {self.process.returncode}: {self.log_tail()}",
                    hint=f"see {self.log}",
                )
            try:
                self.probe(self.url)
                return
            except ServiceUnavailable as exc:
                last = exc
            time.sleep(0.05)
        raise ServiceUnavailable(
            self.name, self.url, f"no answer within {timeout:.0f} s ({last})", hint=f"see {self.log}"
        )

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def record(self) -> ServiceRecord:
        return ServiceRecord(
            name=self.name,
            url=self.url,
            pid=self.process.pid,
            start_time=proc_start_time(self.process.pid),
            port=self.port,
            log=str(self.log),
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (anvil writes its state file on it), then SIGKILL after ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL, for fault-injection tests."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class AnvilProcess(ChildService):
    """anvil on 127.0.0.1, its state in ``<dir>/state.json`` (loaded at start, written every second and on exit)."""

    name = "anvil"

    @classmethod
    def binary(cls, settings: Settings) -> Path:
        return foundry_binary("anvil", settings.anvil_bin)

    @classmethod
    def command(cls, binary: Path, port: int, data_dir: Path, settings: Settings) -> list[str]:
        return [
            str(binary),
            "--host", HOST,
            "--port", str(port),
            "--mnemonic", settings.anvil_mnemonic,
            "--accounts", "20",
            "--state", str(data_dir / "state.json"),
            # A periodic dump bounds what a crash (kill -9) can lose to about a second of blocks.
            "--state-interval", "1",
            "--silent",
        ]  # fmt: skip

    @classmethod
    def url_for(cls, port: int) -> str:
        return f"http://{HOST}:{port}"

    @classmethod
    def probe(cls, url: str) -> None:
        anvil_chain_id(url, timeout=1.0)

    @property
    def rpc_url(self) -> str:
        return self.url


class RedisProcess(ChildService):
    """redis-server on 127.0.0.1 with an append-only file, so a restart keeps queued tasks."""

    name = "redis"

    @classmethod
    def binary(cls, settings: Settings) -> Path:
        return redis_server_binary(settings.redis_server_bin)

    @classmethod
    def command(cls, binary: Path, port: int, data_dir: Path, settings: Settings) -> list[str]:
        return [
            str(binary),
            "--bind", HOST,
            "--port", str(port),
            "--dir", str(data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--protected-mode", "yes",
            "--daemonize", "no",
        ]  # fmt: skip

    @classmethod
    def url_for(cls, port: int) -> str:
        return f"redis://{HOST}:{port}/0"

    @classmethod
    def probe(cls, url: str) -> None:
        redis_ping(url, timeout=1.0)


_KINDS: dict[str, type[ChildService]] = {"anvil": AnvilProcess, "redis": RedisProcess}


def dev_accounts(mnemonic: str, count: int) -> list[tuple[str, str]]:
    """(address, hex private key) of the dev chain's funded accounts, as anvil derives them."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    out = []
    for i in range(count):
        acct = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}")
        out.append((acct.address, "0x" + bytes(acct.key).hex()))
    return out


_DETACHED: list[subprocess.Popen[bytes]] = []
"""Popen objects of the services `DevServices.up` started detached (see there)."""


class DevServices:
    """The set of embedded services recorded in one data directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.path = self.data_dir / SERVICES_FILE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise `up`/`down` across processes (a demo and an audit command may race)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / ".services.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> dict[str, ServiceRecord]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise MeshprovError(
                f"{self.path} is unreadable: {exc}", hint="run `meshprov dev down` and then `meshprov dev up`"
            ) from None
        return {name: ServiceRecord(**rec) for name, rec in raw.items() if name in _KINDS}

    def _write(self, records: dict[str, ServiceRecord]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: asdict(v) for k, v in records.items()}, indent=2, sort_keys=True))
        os.replace(tmp, self.path)

    def _configured_url(self, name: str) -> str | None:
        return self.settings.chain_rpc_url if name == "anvil" else self.settings.redis_url

    def up(self, names: tuple[str, ...] = ("anvil", "redis")) -> dict[str, ServiceRecord]:
        """Start what is not running; reuse what is. Returns the records of the requested services."""
        with self._locked():
            records = self.read()
            started: list[ChildService] = []
            try:
                for name in names:
                    kind = _KINDS[name]
                    configured = self._configured_url(name)
                    if configured:
                        kind.probe(configured)
                        records[name] = ServiceRecord(name=name, url=configured, external=True)
                        continue
                    existing = records.get(name)
                    if existing is not None and not existing.external and existing.alive():
                        kind.probe(existing.url)
                        continue
                    port = self.settings.anvil_port if name == "anvil" else self.settings.redis_port
                    service = kind.start(self.data_dir, port=port, settings=self.settings, detach=True)
                    started.append(service)
                    records[name] = service.record()
            except BaseException:
                for service in started:  # nothing half-started is left running
                    service.stop()
                raise
            self._write(records)
            # The detached children outlive this call by design; keeping their Popen objects stops Python from
            # warning, when one is garbage-collected, that its process "is still running".
            _DETACHED.extend(service.process for service in started)
            return {n: records[n] for n in names}

    def down(self) -> list[str]:
        """Stop every process `up` started in this data directory; returns the names stopped."""
        with self._locked():
            records = self.read()
            stopped = []
            for name, rec in records.items():
                if rec.external or rec.pid is None or not rec.alive():
                    continue
                _terminate(rec.pid, rec.start_time)
                _reap(rec.pid)
                stopped.append(name)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return stopped

    def running(self, name: str) -> ServiceRecord | None:
        """The record of ``name`` when `up` started it here and that process still lives (nothing is started)."""
        record = self.read().get(name)
        if record is None or record.external or not record.alive():
            return None
        return record

    def status(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, rec in self.read().items():
            answering = True
            error = None
            try:
                _KINDS[name].probe(rec.url)
            except ServiceUnavailable as exc:
                answering, error = False, exc.reason
            out[name] = {
                **asdict(rec),
                "running": rec.external or rec.alive(),
                "answering": answering,
                "error": error,
            }
        return out


def _reap(pid: int) -> None:
    """When this process started ``pid`` (a detached child of `up`), collect its exit status: no zombie is left
    and Python does not warn at exit that the child "is still running"."""
    for process in [p for p in _DETACHED if p.pid == pid]:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        _DETACHED.remove(process)


def _terminate(pid: int, start_time: int | None, timeout: float = 10.0) -> None:
    """SIGTERM a recorded process and wait for it to go; SIGKILL if it does not. Never signals a reused pid."""
    if proc_start_time(pid) != start_time:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc_start_time(pid) != start_time:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while proc_start_time(pid) == start_time:
        time.sleep(0.05)
