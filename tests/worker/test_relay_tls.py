"""The HTTP relayer over TLS (`meshprov worker relay --tls-cert --tls-key`, the member's `--relay-ca`), with a CA
and certificates generated here: a member's submission over HTTPS lands on anvil; a member that does not trust the
relayer's certificate stops in the handshake, before its signed body is sent; a plain http:// relayer beyond
loopback is refused by the member unless allowed; a missing or mismatched certificate, key or CA file is a clear
error with a non-zero exit."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.cli.app import main as meshprov_main
from ledger.content import digest_to_cid
from ledger.errors import ConfigError
from node.relay import HttpRelay, RelayTLSError, submit_relayed_http
from tests.support import REPO
from tests.support.chain import fake_digest
from tests.support.node import NodeNet
from tests.support.relay import Relayer
from worker.relay_http import Limits, tls_context

RELAYER = 18  # dev account paying the relayer's gas (no role on the ledger)


# ─── certificates made at test time ──────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed the relayer's certificate
    other_ca: Path  # a CA that signed nothing of the relayer's
    cert: Path
    key: Path
    other_key: Path  # a key that is not the certificate's


def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: Any, path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _ca(name: str, path: Path) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    root = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _ca("meshprov relayer test CA", root / "ca.crt")
    _ca("somebody else's CA", root / "other-ca.crt")
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (root / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, root / "server.key")
    _write_key(_key(), root / "other.key")
    return Pki(
        ca=root / "ca.crt",
        other_ca=root / "other-ca.crt",
        cert=root / "server.crt",
        key=root / "server.key",
        other_key=root / "other.key",
    )


# ─── the relayer over HTTPS, in threads ──────────────────────────────────────────────────────────────────────


@pytest.fixture
def net(anvil: Any, tmp_path: Path, dev_keys: list[tuple[str, str]]) -> Iterator[NodeNet]:
    n = NodeNet.create(anvil.url, tmp_path, dev_keys, contributors=2)
    yield n
    n.close()


class TlsRelayer(Relayer):
    """``serve(..., tls=tls_context(cert, key))`` on 127.0.0.1; counts the submissions it admitted."""

    def __init__(self, net: NodeNet, key: str, pki: Pki) -> None:
        super().__init__(net, key, Limits(batch_wait_s=0.2), tls=tls_context(pki.cert, pki.key))
        self.admitted: list[bytes] = []
        admit = self.service.admit

        def counting(raw: bytes, peer: str) -> Any:
            self.admitted.append(raw)
            return admit(raw, peer)

        self.service.admit = counting  # type: ignore[method-assign]


@pytest.fixture
def relayer(net: NodeNet, dev_keys: list[tuple[str, str]], pki: Pki) -> Iterator[TlsRelayer]:
    r = TlsRelayer(net, dev_keys[RELAYER][1], pki)
    yield r
    r.close()


def submit(net: NodeNet, i: int, relay: HttpRelay) -> Any:
    _, key = net.contributor_keys[i]
    return submit_relayed_http(
        net.client(),
        relay,
        key,
        task=net.task_id,
        round_=1,
        cid=digest_to_cid(fake_digest("update", i)),
        num_samples=100,
        poll_s=0.05,
    )


@pytest.mark.anvil
def test_a_member_submission_over_https_lands_on_chain(
    net: NodeNet, relayer: TlsRelayer, pki: Pki, dev_keys: list[tuple[str, str]]
) -> None:
    assert relayer.url.startswith("https://127.0.0.1:")
    relay = HttpRelay(relayer.url, ca_file=pki.ca)
    result = submit(net, 0, relay)
    assert result.status == "submitted"
    me = net.contributor_keys[0][0]
    assert net.client().submission_of(net.task_id, 1, me).submitted
    (event,) = net.submissions(1)
    assert event.args["contributor"] == me
    assert event.args["relayer"] == dev_keys[RELAYER][0]  # relayed: the relayer's key paid
    assert len(relayer.admitted) == 1


@pytest.mark.anvil
def test_the_relayer_speaks_tls_1_2_or_later_only(relayer: TlsRelayer, pki: Pki) -> None:
    port = relayer.server.server_address[1]
    assert relayer.server.tls is not None
    assert relayer.server.tls.minimum_version == ssl.TLSVersion.TLSv1_2
    # Plain HTTP to the TLS port gets no answer, and the relayer keeps serving.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    ok = httpx.get(
        relayer.url + "/healthz", verify=ssl.create_default_context(cafile=str(pki.ca)), timeout=10
    )
    assert ok.json()["status"] == "ok"


@pytest.mark.anvil
def test_a_member_with_the_wrong_ca_stops_before_sending_its_signed_body(
    net: NodeNet, relayer: TlsRelayer, pki: Pki
) -> None:
    w3 = net.client().w3
    before = int(w3.eth.block_number)
    with pytest.raises(RelayTLSError, match="not trusted") as caught:
        submit(net, 0, HttpRelay(relayer.url, ca_file=pki.other_ca))
    assert "--relay-ca" in (caught.value.hint or "")
    assert relayer.admitted == []  # the handshake failed: no request reached the relayer
    assert not net.client().submission_of(net.task_id, 1, net.contributor_keys[0][0]).submitted
    assert int(w3.eth.block_number) == before
    # The system's CAs do not know the test CA either: the same refusal, not a silent retry.
    with pytest.raises(RelayTLSError):
        HttpRelay(relayer.url).post(b"{}")
    assert relayer.admitted == []


# ─── the member's refusals, no chain needed ──────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "url", ["http://relay.example.org:8700", "http://10.0.0.7:8700", "http://[fd00::1]:8700"]
)
def test_a_plain_http_relayer_beyond_loopback_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="plain-HTTP relayer") as caught:
        HttpRelay(url)
    assert "https://" in (caught.value.hint or "")
    assert HttpRelay(url, allow_http=True).url == url + "/v1/submissions"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8700", "http://localhost:8700", "http://[::1]:8700"])
def test_a_plain_http_relayer_on_loopback_is_allowed(url: str) -> None:
    assert HttpRelay(url).url == url + "/v1/submissions"


def test_a_ca_file_that_cannot_be_used_is_a_clear_error(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(ConfigError, match=r"CA file .*missing"):
        HttpRelay("https://relay.example.org:8700", ca_file=tmp_path / "missing")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="CA file"):
        HttpRelay("https://relay.example.org:8700", ca_file=junk)
    with pytest.raises(ConfigError, match="https:// relayer"):
        HttpRelay("http://127.0.0.1:8700", ca_file=pki.ca)


def test_node_run_refuses_a_plain_http_relayer_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESHPROV_PRIVATE_KEY", "0x" + "11" * 32)
    monkeypatch.setenv("MESHPROV_CHAIN_RPC_URL", "http://127.0.0.1:9")  # never dialled
    monkeypatch.setenv("MESHPROV_DATA_DIR", str(tmp_path))
    code = meshprov_main(["node", "run", "--relay", "--relay-via", "http://relay.example.org:8700"])
    assert code != 0
    err = capsys.readouterr().err
    assert "plain-HTTP relayer" in err
    assert "--relay-insecure-http" in err
    assert meshprov_main(["node", "run", "--relay", "--relay-ca", str(tmp_path / "x.pem")]) == 2
    assert "--relay-ca" in capsys.readouterr().err


def test_the_relayers_certificate_and_key_are_checked(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(ConfigError, match=r"certificate .*missing") as caught:
        tls_context(tmp_path / "missing.crt", pki.key)
    assert "--tls-cert" in (caught.value.hint or "")
    with pytest.raises(ConfigError, match=r"private key .*missing"):
        tls_context(pki.cert, tmp_path / "missing.key")
    with pytest.raises(ConfigError, match="cannot be used"):
        tls_context(pki.cert, pki.other_key)
    ctx = tls_context(pki.cert, pki.key)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--tls-cert", "CERT"], "--tls-key"),
        (["--tls-cert", "MISSING", "--tls-key", "KEY"], "cannot read the relayer's TLS certificate"),
        (["--tls-cert", "CERT", "--tls-key", "OTHER"], "cannot be used"),
    ],
)
def test_worker_relay_exits_non_zero_on_a_bad_certificate(
    args: list[str], expected: str, pki: Pki, tmp_path: Path
) -> None:
    paths = {"CERT": pki.cert, "KEY": pki.key, "OTHER": pki.other_key, "MISSING": tmp_path / "missing.crt"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.relay_cli",
            "--listen",
            "127.0.0.1:0",
            *(str(paths.get(a, a)) for a in args),
        ],
        env={
            "PATH": "/usr/bin:/bin",
            "MESHPROV_DATA_DIR": str(tmp_path),
            "MESHPROV_CHAIN_RPC_URL": "http://127.0.0.1:9",
        },
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert expected in done.stderr + done.stdout


@pytest.mark.anvil
def test_worker_relay_serves_https_as_a_process(
    net: NodeNet, pki: Pki, dev_keys: list[tuple[str, str]], tmp_path: Path
) -> None:
    """The command's wiring: `--tls-cert/--tls-key` reach the server; a member submits through it over HTTPS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHPROV_")}
    env.update(
        MESHPROV_CHAIN_RPC_URL=net.url,
        MESHPROV_DEPLOYMENT_FILE=str(net.deployment_file),
        MESHPROV_DATA_DIR=str(tmp_path / "relayer"),
        MESHPROV_PRIVATE_KEY=dev_keys[RELAYER][1],
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.relay_cli", "--listen", "127.0.0.1:0", "--batch-wait", "0.2",
         "--tls-cert", str(pki.cert), "--tls-key", str(pki.key)],
        env=env, cwd=REPO, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        url = None
        for line in proc.stderr:
            found = re.search(r"listening on (\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None, f"the relayer exited {proc.poll()} before listening"
        assert url.startswith("https://127.0.0.1:")
        health = httpx.get(
            url + "/healthz", verify=ssl.create_default_context(cafile=str(pki.ca)), timeout=10
        )
        assert health.json()["relayer"] == dev_keys[RELAYER][0]
        result = submit(net, 1, HttpRelay(url, ca_file=pki.ca))
        assert result.status == "submitted"
        (event,) = net.submissions(1)
        assert event.args["relayer"] == dev_keys[RELAYER][0]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)  # drains and closes the pipe
