"""The operator's Redis in docker-compose.yml: TLS only, no anonymous user, a password generated at first start
(deploy/redis/init.sh, nothing secret committed), credentials only for the operator's workers; members get no
Redis and no Kubo RPC. The generated configuration is also run for real: deploy/redis/redis.conf and init.sh's
output on the local redis-server, with the workers' own clients (redis-py, Celery) over rediss://."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO

OPERATOR_WORKERS = {"validator-1", "validator-2", "validator-3", "aggregator"}
NO_REDIS = {"deployer", "indexer", "dashboard", "node-1", "node-2", "node-3", "relayer"}
MEMBERS = {"node-1", "node-2", "node-3"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is missing: `make setup` installs Debian's docker-compose package")
    done = subprocess.run(
        [binary, "-f", str(REPO / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def conf_lines() -> dict[str, str]:
    out = {}
    for line in (REPO / "deploy/redis/redis.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out[key] = value
    return out


def targets(service: dict[str, Any]) -> dict[str, str]:
    """Mount target -> source (volume name or host path) of a service, with the read-only flag."""
    out = {}
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            out[v["target"]] = f"{v['source']}{':ro' if v.get('read_only') else ''}"
        else:
            source, target, *mode = v.split(":")
            out[target] = source + (":ro" if mode == ["ro"] else "")
    return out


def test_redis_speaks_tls_only_with_an_acl_and_publishes_nothing(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["command"] == ["redis-server", "/etc/redis/redis.conf"]
    mounts = targets(redis)
    assert mounts["/etc/redis/redis.conf"].endswith("deploy/redis/redis.conf:ro")
    assert mounts["/secrets"] == "redis-secrets:ro"
    assert "ports" not in redis  # reachable on the compose network only
    conf = conf_lines()
    assert conf["port"] == "0"  # no plain-text port
    assert conf["tls-port"] == "6379"
    assert conf["aclfile"] == "/secrets/users.acl"
    for key in ("tls-cert-file", "tls-key-file", "tls-ca-cert-file"):
        assert conf[key].startswith("/secrets/tls/")
    assert "requirepass" not in conf  # the password lives in the generated ACL file, not in the repository
    assert redis["depends_on"]["redis-init"]["condition"] == "service_completed_successfully"
    assert "--tls" in redis["healthcheck"]["test"][1]


def test_the_secrets_are_generated_at_first_start_not_committed(compose: dict[str, Any]) -> None:
    init = compose["services"]["redis-init"]
    assert init["entrypoint"][:2] == ["sh", "/init/init.sh"]
    assert init["restart"] == "no"
    assert set(targets(init)) == {"/init/init.sh", "/secrets", "/redis-client"}
    committed = subprocess.run(
        ["git", "ls-files", "deploy/redis"], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout.split()
    assert sorted(committed) <= ["deploy/redis/init.sh", "deploy/redis/redis.conf"]
    text = (REPO / "docker-compose.yml").read_text()
    assert not re.search(r"redis://[^@\s]*:[^@\s]+@", text), "a Redis password in docker-compose.yml"


def test_only_the_operators_workers_get_redis_credentials(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        env = service.get("environment") or {}
        assert "MESHPROV_REDIS_URL" not in env, f"{name} has a Redis URL in its environment"
    for name in OPERATOR_WORKERS:
        service = services[name]
        assert service["environment"]["MESHPROV_CONFIG"] == "/redis-client/meshprov.toml", name
        assert targets(service)["/redis-client"] == "redis-client:ro", name
    for name in NO_REDIS:
        service = services[name]
        assert "MESHPROV_CONFIG" not in service["environment"], name
        assert "/redis-client" not in targets(service), name


def test_nothing_but_loopback_ports_and_no_kubo_rpc_for_members(compose: dict[str, Any]) -> None:
    published = {}
    for name, service in compose["services"].items():
        if (
            name == "relayer"
        ):  # HTTPS for members of other organisations: tests/ledger/dev/test_compose_relayer.py
            continue
        for port in service.get("ports", []):
            # docker-compose v1 prints "HOST_IP:PUBLISHED:TARGET", v2 a mapping
            host_ip, target = (
                (port.get("host_ip"), port["target"])
                if isinstance(port, dict)
                else (port.split(":")[0], port.split(":")[-1])
            )
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            published.setdefault(name, set()).add(int(str(target).split("/")[0]))
    # The Kubo RPC (an admin API) is the operator's, on loopback; Redis and Postgres are not published at all.
    assert published["kubo"] == {5001}
    assert "redis" not in published
    assert "postgres" not in published
    for name in MEMBERS:  # the compose members are the operator's own (docs/relay.md); they publish nothing
        assert "ports" not in compose["services"][name]


# ─── the generated configuration, for real ──────────────────────────────────────────────────────────────────


@dataclass
class SecureRedis:
    url: str  # the generated redis_url, pointed at this server
    port: int
    ca: Path
    client_dir: Path
    server_dir: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def secure_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRedis]:
    if shutil.which("redis-server") is None or shutil.which("openssl") is None:
        pytest.skip("needs redis-server and openssl (`make setup`)")
    root = tmp_path_factory.mktemp("secure-redis")
    server_dir, client_dir = root / "secrets", root / "client"
    port = free_port()
    done = subprocess.run(
        ["sh", str(REPO / "deploy/redis/init.sh"), str(server_dir), str(client_dir), "redis", "localhost"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "REDIS_PORT": str(port)},
    )
    assert done.returncode == 0, done.stderr
    conf = (REPO / "deploy/redis/redis.conf").read_text()
    conf = conf.replace("/secrets", str(server_dir)).replace("dir /data", f"dir {root}")
    conf = conf.replace("tls-port 6379", f"tls-port {port}").replace("protected-mode yes", "bind 127.0.0.1")
    (root / "redis.conf").write_text(conf)
    proc = subprocess.Popen(["redis-server", str(root / "redis.conf")], stdout=subprocess.DEVNULL)
    url = tomllib.loads((client_dir / "meshprov.toml").read_text())["redis_url"]
    url = url.replace(f"@redis:{port}/", f"@127.0.0.1:{port}/")
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield SecureRedis(url, port, client_dir / "ca.crt", client_dir, server_dir)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.redis
def test_the_generated_url_is_rediss_with_the_generated_password(secure_redis: SecureRedis) -> None:
    password = (secure_redis.client_dir / "password").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", password)
    assert secure_redis.url.startswith(f"rediss://meshprov:{password}@127.0.0.1:")
    assert "ssl_cert_reqs=required" in secure_redis.url
    for path in (secure_redis.client_dir / "password", secure_redis.server_dir / "tls/server.key"):
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"


@pytest.mark.redis
def test_the_workers_clients_work_over_tls_with_the_password(secure_redis: SecureRedis) -> None:
    import redis

    from worker.celery_app import make_app
    from worker.config import WorkerConfig
    from worker.state import WorkerState

    client = redis.Redis.from_url(secure_redis.url)
    try:
        assert client.ping()
        # Celery: the broker (a task message lands in the queue) and the result backend, both over rediss://.
        app = make_app(secure_redis.url, WorkerConfig(), with_tasks=False)
        app.send_task("meshprov.probe", args=[1])
        assert client.llen("meshprov") == 1
        assert app.backend.client.ping()
        # The workers' shared state (claims, locks) and the Redis relay queue's commands.
        state = WorkerState.from_url(secure_redis.url, "w1")
        assert state.claim_job("probe", 10)
        assert not state.claim_job("probe", 10)
        client.rpush("meshprov:relay:probe", b"x")
        assert client.blpop(["meshprov:relay:probe"], timeout=1) == (b"meshprov:relay:probe", b"x")
    finally:
        client.close()


@pytest.mark.redis
def test_anonymous_plain_and_administrative_access_is_refused(secure_redis: SecureRedis) -> None:
    import redis

    plain = redis.Redis(host="127.0.0.1", port=secure_redis.port, socket_timeout=3)
    with pytest.raises(redis.exceptions.ConnectionError):
        plain.ping()  # no plain-text port: the TLS port drops a plain-text client
    anonymous = redis.Redis(
        host="127.0.0.1", port=secure_redis.port, ssl=True, ssl_ca_certs=str(secure_redis.ca)
    )
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    wrong = redis.Redis.from_url(secure_redis.url.replace("meshprov:", "meshprov:0", 1))
    with pytest.raises(redis.exceptions.AuthenticationError):
        wrong.ping()
    unverified = redis.Redis(
        host="127.0.0.1", port=secure_redis.port, ssl=True, ssl_cert_reqs="required", socket_timeout=3
    )
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate"):
        unverified.ping()  # the system CAs do not vouch for the generated one: a man in the middle is refused
    worker = redis.Redis.from_url(secure_redis.url)
    try:
        for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("SHUTDOWN",), ("ACL", "SETUSER", "x", "on")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                worker.execute_command(*command)
    finally:
        worker.close()
    healthcheck = redis.Redis(
        host="127.0.0.1",
        port=secure_redis.port,
        ssl=True,
        ssl_ca_certs=str(secure_redis.ca),
        username="healthcheck",
        password="-",
    )
    assert healthcheck.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        healthcheck.get("meshprov")


@pytest.mark.redis
def test_init_is_idempotent(secure_redis: SecureRedis) -> None:
    before = {p: p.read_bytes() for p in sorted(secure_redis.client_dir.iterdir())}
    key = (secure_redis.server_dir / "tls/server.key").read_bytes()
    done = subprocess.run(
        [
            "sh",
            str(REPO / "deploy/redis/init.sh"),
            str(secure_redis.server_dir),
            str(secure_redis.client_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "REDIS_PORT": str(secure_redis.port)},
    )
    assert done.returncode == 0, done.stderr
    assert {p: p.read_bytes() for p in sorted(secure_redis.client_dir.iterdir())} == before
    assert (secure_redis.server_dir / "tls/server.key").read_bytes() == key
