"""docker-compose.yml and the Dockerfile, validated without a Docker engine (`docker-compose config`)."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
MESHPROV_SERVICES = {
    "deployer",
    "indexer",
    "validator-1",
    "validator-2",
    "aggregator",
    "node-1",
    "node-2",
    "node-3",
    "dashboard",
}
INFRA = {"anvil", "kubo", "redis", "postgres"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is missing: `make setup` installs Debian's docker-compose package")
    result = subprocess.run(
        [binary, "-f", str(REPO / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_has_every_role(compose: dict[str, Any]) -> None:
    assert MESHPROV_SERVICES | INFRA | {"prometheus", "grafana"} <= set(compose["services"])


def test_every_published_port_is_bound_to_loopback(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_infrastructure_has_healthchecks(compose: dict[str, Any]) -> None:
    for name in INFRA | {"dashboard"}:
        assert compose["services"][name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_meshprov_services_wait_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    for name in MESHPROV_SERVICES - {"deployer"}:
        deps = compose["services"][name]["depends_on"]
        assert {d: deps[d]["condition"] for d in INFRA} == dict.fromkeys(INFRA, "service_healthy"), name
        assert deps["deployer"]["condition"] == "service_completed_successfully", name
    assert compose["services"]["deployer"]["depends_on"]["anvil"]["condition"] == "service_healthy"


def test_kubo_is_a_private_swarm(compose: dict[str, Any]) -> None:
    kubo = compose["services"]["kubo"]
    assert kubo["environment"]["LIBP2P_FORCE_PNET"] == "1"
    targets = {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in kubo["volumes"]}
    assert "/data/ipfs/swarm.key" in targets
    init = (REPO / "deploy/kubo/001-private-swarm.sh").read_text()
    assert "ipfs bootstrap rm --all" in init
    key = (REPO / "deploy/kubo/swarm.key").read_text().split()
    assert key[:2] == ["/key/swarm/psk/1.0.0/", "/base16/"]
    assert len(bytes.fromhex(key[2])) == 32


def test_members_read_their_keys_from_secrets(compose: dict[str, Any]) -> None:
    for name in MESHPROV_SERVICES - {"indexer", "dashboard"}:
        env = compose["services"][name]["environment"]
        assert env["MESHPROV_PRIVATE_KEY_FILE"].startswith("/run/secrets/"), name
        assert "MESHPROV_PRIVATE_KEY" not in env, name


def test_dockerfile_builds_from_pyproject() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY pyproject.toml" in dockerfile
    assert 'pip install ".[${EXTRAS}]"' in dockerfile
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    default = next(line for line in dockerfile.splitlines() if line.startswith("ARG EXTRAS="))
    assert set(default.split("=", 1)[1].split(",")) <= extras
    assert "torch==2.13.0" in dockerfile
