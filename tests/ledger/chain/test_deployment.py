"""docker-compose.yml and the Dockerfile, validated without a Docker engine (`docker-compose config`)."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO

MESHPROV_SERVICES = {
    "deployer",
    "indexer",
    "validator-1",
    "validator-2",
    "validator-3",
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
    """All but the HTTP relayer's, which members of other organisations reach (HTTPS only)."""
    for name, service in compose["services"].items():
        if name == "relayer":
            continue
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
    for name in MESHPROV_SERVICES - {"indexer", "dashboard"} | {"relayer"}:
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


# --- the meshprov commands the services run -------------------------------------------------------------------


def meshprov_commands(compose: dict[str, Any]) -> dict[str, list[list[str]]]:
    """Every meshprov command line of every service built from this repo: the `command:` (the image's entrypoint
    is `meshprov`), or each `meshprov …` line of a shell script when the entrypoint is a shell."""
    import shlex

    out: dict[str, list[list[str]]] = {}
    for name, service in compose["services"].items():
        if "build" not in service:
            continue
        command = service.get("command")
        assert command, f"{name} has no command"
        entrypoint = service.get("entrypoint")
        if entrypoint and entrypoint[0] == "sh":
            script = "\n".join(command) if isinstance(command, list) else command
            lines = [shlex.split(line) for line in script.splitlines() if line.strip()]
            assert all(words[0] == "meshprov" for words in lines), f"{name}: {lines}"
            out[name] = [words[1:] for words in lines]
        else:
            assert entrypoint is None, f"{name}: unexpected entrypoint {entrypoint}"
            out[name] = [list(command)]
    return out


def full_parse(args: list[str]) -> list[str]:
    """Parse ``meshprov ARGS`` with the real CLI down to the command (types, choices, required options) without
    running it; returns the command path. Raises the CLI's UsageError on anything `meshprov` would refuse."""

    from ledger.cli import app as root

    command: Any = root.root_command(args)  # with the node/worker/demo group loaded, as main() would
    ctx = command.make_context("meshprov", list(args))
    path = ["meshprov"]
    while hasattr(command, "resolve_command"):
        name, command, rest = command.resolve_command(ctx, [*getattr(ctx, "_protected_args", []), *ctx.args])
        ctx = command.make_context(name, rest, parent=ctx)
        path.append(name)
    return path


def test_every_meshprov_command_in_compose_parses_with_the_real_cli(compose: dict[str, Any]) -> None:
    import sys

    commands = meshprov_commands(compose)
    assert set(commands) == MESHPROV_SERVICES | {"relayer"}
    seen = set()
    for name, lines in commands.items():
        for args in lines:
            path = full_parse(args)
            assert len(path) >= 3, f"{name}: `meshprov {' '.join(args)}` is not a command"
            seen.add(" ".join(path[1:]))
            # And the installed entry point accepts it too (a fresh process, as the container runs it).
            done = subprocess.run(
                [sys.executable, "-m", "ledger.cli.app", *args, "--help"],
                capture_output=True, text=True, cwd=REPO, check=False, timeout=60,
            )  # fmt: skip
            assert done.returncode == 0, f"{name}: meshprov {' '.join(args)}\n{done.stderr}"
            assert f"Usage: meshprov {' '.join(path[1:])}" in " ".join(done.stdout.split())
    assert {
        "chain deploy",
        "node run",
        "node genesis",
        "worker run",
        "index follow",
        "dashboard serve",
        "worker relay",
    } <= seen


def test_a_command_the_cli_would_refuse_is_caught() -> None:
    from typer._click.exceptions import UsageError

    for bad in (
        ["node", "run", "--shard", "one"],
        ["node", "run", "--shrd", "1"],
        ["worker", "run"],
        ["nod", "run"],
    ):
        with pytest.raises(UsageError):
            full_parse(bad)


def test_the_consortium_file_matches_the_keys_the_genesis_and_the_spec(tmp_path: Path) -> None:
    from eth_account import Account

    from ledger.chain.consortium import load_consortium
    from ledger.content import cid_of_file, cid_to_digest
    from node.packaging import write_genesis

    consortium = load_consortium(REPO / "deploy/consortium.toml")

    def address(key_file: str) -> str:
        return str(Account.from_key((REPO / "deploy/keys" / key_file).read_text().strip()).address)

    assert consortium.admin == address("admin.key")
    assert consortium.aggregators == (address("aggregator.key"),)
    assert consortium.validators == tuple(address(f"validator-{i}.key") for i in (1, 2, 3))
    assert consortium.contributors == tuple(address(f"node-{i}.key") for i in (1, 2, 3))
    # The deployer puts exactly these files in IPFS before it deploys, so the task's digests name real content.
    genesis = write_genesis(tmp_path / "genesis.safetensors", "mlp", 0)
    assert consortium.task.genesis_digest == cid_to_digest(genesis.cid)
    assert consortium.task.spec_digest == cid_to_digest(cid_of_file(REPO / "deploy/task-spec.json"))


def test_the_deployer_seeds_the_store_then_deploys_idempotently(compose: dict[str, Any]) -> None:
    deployer = compose["services"]["deployer"]
    lines = meshprov_commands(compose)["deployer"]
    assert [words[:2] for words in lines] == [["node", "genesis"], ["store", "put"], ["chain", "deploy"]]
    assert "--if-absent" in lines[-1]  # a restarted stack keeps its ledger
    assert deployer["depends_on"]["kubo"]["condition"] == "service_healthy"
    assert deployer["entrypoint"] == ["sh", "-ec"]  # -e: a failed step fails the one-shot
