"""Network namespaces for a multi-host lab consortium: one namespace per host on a bridge the lab made.

Layout (nothing in the root namespace changes: no link, no address, no route is added there)::

    namespace <prefix>-switch          bridge <tag>br (no address)
        │ veth <tag>p<i>  ⟷  eth0 in namespace <prefix>-<host>, address 10.231.N.(i+2)/24, no default route

* The /24 is picked from 10.231.0.0/16: the first whose addresses and routes no namespace on this machine (the
  root one included) already uses. The choice and the creation happen under a lock file, so two labs started
  at once get two subnets.
* Every namespace made is recorded (``netns.json`` in the lab's control directory) before anything is put in it,
  so :func:`remove_recorded` can remove what a crashed run left. Deleting a namespace deletes its veth end, and
  the peer end with it; deleting the switch namespace deletes the bridge.
* Hosts reach each other's addresses only: no host has a default route and nothing forwards to the root
  namespace, so nothing in a host can dial out.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ledger.errors import MeshprovError

SUPERNET = ipaddress.IPv4Network("10.231.0.0/16")
LOCK = Path("/run/lock/meshprov-lab-netns.lock")
REGISTRY = "netns.json"
MAX_HOSTS = 200
"""Hosts get .2 … .201 of the /24 (.1 is left unused, .255 is broadcast)."""


class NamespacesUnavailable(MeshprovError):
    """This machine or user cannot make network namespaces (not root, no ``ip``)."""


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None when they can (root and ``ip``, ``unshare``, ``mount``)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run as root"
    for tool in ("ip", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (iproute2 / util-linux)"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise MeshprovError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip() or proc.returncode}")
    return proc


def existing_namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network an address or a route uses, in the root namespace and in every named namespace."""
    used: list[ipaddress.IPv4Network] = []
    views: list[list[str]] = [[]] + [["-n", ns] for ns in existing_namespaces()]
    for view in views:
        addrs = _ip(*view, "-4", "-o", "addr", "show", check=False).stdout
        for line in addrs.splitlines():
            words = line.split()
            if "inet" in words:
                used.append(ipaddress.IPv4Interface(words[words.index("inet") + 1]).network)
        routes = _ip(*view, "-4", "route", "show", "table", "all", check=False).stdout
        for line in routes.splitlines():
            first = line.split()[0] if line.split() else ""
            if first in ("broadcast", "local", "unicast", "multicast") and len(line.split()) > 1:
                first = line.split()[1]
            if first == "default" or not first[:1].isdigit():
                continue
            with contextlib.suppress(ValueError):
                used.append(ipaddress.IPv4Network(first, strict=False))
    return used


def pick_subnet(in_use: Sequence[ipaddress.IPv4Network] | None = None) -> ipaddress.IPv4Network:
    """The first /24 of 10.231.0.0/16 that overlaps no network in use."""
    used = list(_networks_in_use() if in_use is None else in_use)
    for candidate in SUPERNET.subnets(new_prefix=24):
        if not any(candidate.overlaps(n) for n in used):
            return candidate
    raise NamespacesUnavailable(f"every /24 of {SUPERNET} is in use on this machine")


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    interface: str = "eth0"


@dataclass
class Network:
    """The namespaces, bridge and links one lab made (see the module docstring)."""

    tag: str
    subnet: str
    switch: str
    bridge: str
    hosts: list[Host] = field(default_factory=list)
    registry: Path | None = None

    @property
    def namespaces(self) -> list[str]:
        return [self.switch, *(h.namespace for h in self.hosts)]

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def exec_prefix(self, host: str) -> list[str]:
        """argv prefix running a command in ``host``'s namespace."""
        return ["ip", "netns", "exec", self.host(host).namespace]

    def _record(self) -> None:
        if self.registry is not None:
            tmp = self.registry.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(self), default=str, indent=2))
            os.replace(tmp, self.registry)

    def link(self, host: str, up: bool) -> None:
        """Bring ``host``'s link up or down (a fault: the host is cut off, its processes keep running)."""
        h = self.host(host)
        _ip("-n", h.namespace, "link", "set", h.interface, "up" if up else "down")

    def remove(self) -> list[str]:
        """Stop whatever still runs in the namespaces, then delete them (links and bridge go with them)."""
        return remove_namespaces(self.namespaces)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def create_network(names: Sequence[str], registry: Path | None = None) -> Network:
    """Namespaces for ``names`` on a fresh bridge (module docstring). On any failure what was made is removed."""
    reason = unavailable_reason()
    if reason is not None:
        raise NamespacesUnavailable(reason)
    if not names or len(names) > MAX_HOSTS or len(set(names)) != len(names):
        raise MeshprovError(f"1..{MAX_HOSTS} distinct host names are needed, got {list(names)}")
    tag = secrets.token_hex(3)
    prefix = f"mp-{tag}"
    net: Network | None = None
    try:
        with _locked():
            subnet = pick_subnet()
            hosts_at = list(subnet.hosts())
            net = Network(tag, str(subnet), f"{prefix}-switch", f"mp{tag}br", registry=registry)
            net.hosts = [Host(name, f"{prefix}-{name}", str(hosts_at[i + 1])) for i, name in enumerate(names)]
            net._record()  # before anything exists: a crash from here on is cleaned up from the record
            _ip("netns", "add", net.switch)
            _ip("-n", net.switch, "link", "add", net.bridge, "type", "bridge")
            _ip("-n", net.switch, "link", "set", net.bridge, "up")
            for i, h in enumerate(net.hosts):
                _ip("netns", "add", h.namespace)
                _ip("-n", h.namespace, "link", "set", "lo", "up")
                # Both ends are made inside namespaces: the root namespace never sees a link of the lab's.
                peer = f"mp{tag}p{i}"
                _ip("-n", h.namespace, "link", "add", h.interface, "type", "veth", "peer", "name", peer,
                    "netns", net.switch)  # fmt: skip
                _ip("-n", net.switch, "link", "set", peer, "master", net.bridge, "up")
                _ip("-n", h.namespace, "addr", "add", f"{h.address}/{subnet.prefixlen}", "dev", h.interface)
                _ip("-n", h.namespace, "link", "set", h.interface, "up")
        return net
    except BaseException:
        if net is not None:
            net.remove()
        raise


def namespace_pids(namespace: str) -> list[int]:
    out = _ip("netns", "pids", namespace, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def remove_namespaces(namespaces: Sequence[str], timeout: float = 5.0) -> list[str]:
    """Kill what still runs inside ``namespaces`` (only processes in them: the lab's own), delete them; returns
    the namespaces that were there."""
    present = set(existing_namespaces())
    mine = [ns for ns in namespaces if ns in present]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [pid for ns in mine for pid in namespace_pids(ns)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline and any(namespace_pids(ns) for ns in mine):
            time.sleep(0.1)
    for ns in reversed(mine):  # hosts first, the switch (and its bridge) last
        _ip("netns", "del", ns, check=False)
    return mine


def remove_recorded(registry: Path) -> list[str]:
    """Remove the namespaces an earlier run recorded in ``registry`` (a crash, a kill -9)."""
    try:
        data = json.loads(registry.read_text())
    except (OSError, ValueError):
        return []
    names = [data.get("switch", "")] + [h.get("namespace", "") for h in data.get("hosts", [])]
    return remove_namespaces([n for n in names if isinstance(n, str) and n.startswith("mp-")])
