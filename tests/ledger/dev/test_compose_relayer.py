"""The HTTP relayer in docker-compose.yml (`docker-compose config`): HTTPS with the certificate that the one-shot
relayer-init (deploy/relayer/init.sh) generates, its own key, published for members of other organisations, no
Redis credentials; the member nodes submit through it and verify it with the generated CA. The generated
certificate is also used for real: init.sh's output served by the relayer's TLS context and verified by the member's
client context."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from node.relay import client_tls_context
from tests.ledger.dev.test_compose_redis import compose, targets
from tests.support import REPO
from worker.relay_http import tls_context

__all__ = ["compose"]  # the module-scoped `docker-compose config` fixture

MEMBERS = ("node-1", "node-2", "node-3")


def test_the_relayer_serves_https_with_the_generated_certificate(compose: dict[str, Any]) -> None:
    relayer = compose["services"]["relayer"]
    assert "build" in relayer  # the same image as every meshprov role (Dockerfile, pyproject.toml)
    command = relayer["command"]
    assert command[:2] == ["worker", "relay"]
    assert command[command.index("--listen") + 1] == "0.0.0.0:8700"
    assert command[command.index("--tls-cert") + 1] == "/tls/server.crt"
    assert command[command.index("--tls-key") + 1] == "/tls/server.key"
    assert targets(relayer)["/tls"] == "relayer-tls:ro"
    assert relayer["depends_on"]["relayer-init"]["condition"] == "service_completed_successfully"
    assert "https://localhost:8700/healthz" in " ".join(relayer["healthcheck"]["test"])
    # Published beyond loopback on purpose (members of other organisations), and nothing else.
    (port,) = relayer["ports"]
    target = port["target"] if isinstance(port, dict) else str(port).split(":")[-1]
    assert int(str(target).split("/")[0]) == 8700


def test_the_relayer_has_its_own_key_and_no_redis_kubo_or_index_credentials(compose: dict[str, Any]) -> None:
    relayer = compose["services"]["relayer"]
    env = relayer["environment"]
    assert env["MESHPROV_PRIVATE_KEY_FILE"] == "/run/secrets/relayer_key"
    assert [s["source"] if isinstance(s, dict) else s for s in relayer["secrets"]] == ["relayer_key"]
    assert compose["secrets"]["relayer_key"]["file"].endswith("deploy/keys/relayer.key")
    others = {
        (REPO / "deploy/keys" / name).read_text().strip()
        for name in os.listdir(REPO / "deploy/keys")
        if name.endswith(".key") and name != "relayer.key"
    }
    mine = (REPO / "deploy/keys/relayer.key").read_text().strip()
    assert mine not in others  # a key of its own
    from eth_account import Account

    from ledger.chain.consortium import load_consortium

    c = load_consortium(REPO / "deploy/consortium.toml")
    roles = {c.admin, *c.aggregators, *c.validators, *c.contributors}
    assert Account.from_key(mine).address not in roles  # it only pays gas: no role on the ledger
    assert not any(k.startswith(("MESHPROV_REDIS", "MESHPROV_BROKER", "MESHPROV_CELERY")) for k in env)
    assert "MESHPROV_CONFIG" not in env
    assert "MESHPROV_INDEX_URL" not in env
    assert "MESHPROV_KUBO_API_URL" not in env
    mounts = targets(relayer)
    assert set(mounts) == {"/consortium", "/tls"}
    assert "redis" not in relayer.get("depends_on", {})
    init = compose["services"]["relayer-init"]
    assert init["entrypoint"][:4] == ["sh", "/init/init.sh", "/tls", "/relayer-ca"]
    assert init["restart"] == "no"
    assert set(targets(init)) == {"/init/init.sh", "/tls", "/relayer-ca"}
    assert not list((REPO / "deploy/relayer").glob("*.crt"))
    assert not list((REPO / "deploy/relayer").glob("*.key"))


def test_the_member_nodes_submit_through_the_relayer_and_verify_it(compose: dict[str, Any]) -> None:
    for name in MEMBERS:
        node = compose["services"][name]
        command = node["command"]
        assert "--relay" in command, name
        assert command[command.index("--relay-via") + 1] == "https://relayer:8700", name
        assert command[command.index("--relay-ca") + 1] == "/relayer-ca/ca.crt", name
        assert targets(node)["/relayer-ca"] == "relayer-ca:ro", name
        assert "/tls" not in targets(node), name  # the CA certificate only, never the relayer's key
        assert node["depends_on"]["relayer"]["condition"] == "service_healthy", name


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is missing: deploy/relayer/init.sh needs it")
    root = tmp_path_factory.mktemp("relayer-init")
    for _ in range(2):  # idempotent: the second run keeps the first run's certificate
        subprocess.run(
            [
                "sh",
                str(REPO / "deploy/relayer/init.sh"),
                str(root / "tls"),
                str(root / "ca"),
                "relayer",
                "localhost",
            ],
            env={"PATH": os.environ["PATH"], "RELAYER_NAMES": "relay.example.org,203.0.113.5"},
            check=True,
            capture_output=True,
        )
    return root / "tls", root / "ca"


def test_init_generates_a_certificate_the_members_ca_verifies(generated: tuple[Path, Path]) -> None:
    tls, ca = generated
    assert sorted(p.name for p in tls.iterdir()) == ["ca.crt", "server.crt", "server.key"]
    assert sorted(p.name for p in ca.iterdir()) == ["ca.crt"]  # no key where the members look
    assert (tls / "server.key").stat().st_mode & 0o077 == 0
    server = tls_context(tls / "server.crt", tls / "server.key")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept_one() -> None:
            conn, _ = listener.accept()
            with conn, server.wrap_socket(conn, server_side=True) as s:
                s.sendall(b"ok")

        def refuse_one() -> None:
            conn, _ = listener.accept()
            with conn, pytest.raises(OSError):  # ssl.SSLError is an OSError; the member hangs up
                server.wrap_socket(conn, server_side=True)

        for name in ("relayer", "localhost", "relay.example.org", "203.0.113.5", "127.0.0.1"):
            thread = threading.Thread(target=accept_one)
            thread.start()
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                client_tls_context(ca / "ca.crt").wrap_socket(raw, server_hostname=name) as s,
            ):
                assert s.version() in ("TLSv1.2", "TLSv1.3")
                assert s.recv(2) == b"ok", name
            thread.join(10)
        # A name that is not in the certificate is refused by the member.
        thread = threading.Thread(target=refuse_one)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            client_tls_context(ca / "ca.crt").wrap_socket(raw, server_hostname="elsewhere.example.org")
        thread.join(10)
