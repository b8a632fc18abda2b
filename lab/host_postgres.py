"""The operator host's own PostgreSQL for its event index (issue 15 item 1), made and removed by `meshprov lab hosts`.

The cluster lives in the operator's directory and listens only on the operator's namespace address. Its one role
(``meshprov``, a superuser) has a generated password kept in the operator's directory; ``pg_hba.conf`` asks every
TCP client for it (SCRAM-SHA-256), so the other hosts of the lab subnet can reach the port but not the data (the
isolation probe checks this from a member host). PostgreSQL refuses to run as root: the server and ``initdb`` run
as the ``postgres`` system user when there is one (Debian's server package makes it), else as ``nobody``, after
the cluster's directory was handed to that user, with only the capability to read and traverse directories (the
lab's directory may sit under one private to root).

The server binaries are found in ``MESHPROV_POSTGRES_BIN`` (a directory), on PATH, or in Debian's
``/usr/lib/postgresql/<major>/bin`` (the newest major). Without them the lab falls back to SQLite and says so.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

PORT = 5432
ROLE = "meshprov"
DATABASE = "meshprov_index"
_NEEDED = ("initdb", "postgres", "pg_isready", "createdb")


def server_binaries(environ: dict[str, str] | None = None) -> Path | None:
    """The directory holding ``initdb``, ``postgres``, ``pg_isready`` and ``createdb``, or None."""
    env = os.environ if environ is None else environ
    candidates: list[Path] = []
    if env.get("MESHPROV_POSTGRES_BIN"):
        candidates.append(Path(env["MESHPROV_POSTGRES_BIN"]))
    on_path = shutil.which("initdb", path=env.get("PATH"))
    if on_path:
        candidates.append(Path(on_path).parent)
    debian = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if re.fullmatch(r"\d+", p.parent.name)),
        key=lambda p: int(p.parent.name),
        reverse=True,
    )
    candidates += debian
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in _NEEDED):
            return directory
    return None


def unavailable_reason() -> str | None:
    """Why the lab cannot run its own PostgreSQL here (None: it can)."""
    if server_binaries() is None:
        return (
            "no PostgreSQL server binaries (initdb, postgres, pg_isready, createdb) in MESHPROV_POSTGRES_BIN, on "
            "PATH or in /usr/lib/postgresql/*/bin (Debian: apt install postgresql)"
        )
    if os.geteuid() == 0 and _server_user() is None:
        return "PostgreSQL will not run as root and there is neither a `postgres` nor a `nobody` user"
    return None


def _server_user() -> pwd.struct_passwd | None:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


@dataclass(frozen=True)
class OperatorPostgres:
    """One cluster under ``directory``, served on ``address``:``port``."""

    bindir: Path
    directory: Path
    address: str
    subnet: str
    password: str
    port: int = PORT

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{ROLE}:{self.password}@{self.address}:{self.port}/{DATABASE}"

    @property
    def public_url(self) -> str:
        """The URL without its password (for logs and the summary)."""
        return f"postgresql+psycopg://{ROLE}@{self.address}:{self.port}/{DATABASE}"

    def prepare(self) -> None:
        """The cluster's directories and password file, owned by the server's user (no server started)."""
        self.data.mkdir(parents=True)
        pwfile = self.directory / "password"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        user = _server_user() if os.geteuid() == 0 else None
        if user is not None:
            for path in (self.directory, self.data, pwfile):
                os.chown(path, user.pw_uid, user.pw_gid)
        self.data.chmod(0o700)

    def _as_server_user(self, argv: list[str]) -> list[str]:
        user = _server_user() if os.geteuid() == 0 else None
        if user is None:
            return argv
        # CAP_DAC_READ_SEARCH (read and traverse, never write) lets it reach its directory under a parent that is
        # private to root (a 0700 home or temporary directory) without loosening that parent's mode.
        return [
            "setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--", *argv,
        ]  # fmt: skip

    def initdb_argv(self) -> list[str]:
        return self._as_server_user([
            str(self.bindir / "initdb"), "--pgdata", str(self.data), "--username", ROLE,
            "--pwfile", str(self.directory / "password"), "--auth", "scram-sha-256",
            "--encoding", "UTF8", "--locale", "C", "--no-instructions",
        ])  # fmt: skip

    def hba_line(self) -> str:
        """Every host of the lab subnet may try; each must give the role's password."""
        return f"host all all {self.subnet} scram-sha-256\n"

    def allow_subnet(self) -> None:
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("# meshprov lab hosts: the lab subnet, password required\n" + self.hba_line())

    def server_argv(self) -> list[str]:
        """TCP on the operator's address only; no Unix socket (a path under the lab's directory can exceed the
        107 bytes a socket path may have, and nothing on the host needs one)."""
        return self._as_server_user([
            str(self.bindir / "postgres"), "-D", str(self.data), "-h", self.address, "-p", str(self.port),
            "-k", "", "-c", "max_connections=40", "-c", "shared_buffers=32MB",
        ])  # fmt: skip

    def ready_argv(self) -> list[str]:
        return [str(self.bindir / "pg_isready"), "-q", "-h", self.address, "-p", str(self.port), "-U", ROLE]

    def createdb_argv(self) -> list[str]:
        return [str(self.bindir / "createdb"), "-h", self.address, "-p", str(self.port), "-U", ROLE, DATABASE]

    def client_env(self) -> dict[str, str]:
        """For the client tools (``createdb``): the password without a command line that shows it."""
        return {"PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "5"}
