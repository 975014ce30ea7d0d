"""A throwaway PostgreSQL server on loopback, for a lake's catalog where there is none yet: the
lake demo (`make lake-demo`) and the lake tests (tests/postgres_support.py). Debian's `postgresql`
package (the binaries of /usr/lib/postgresql/N/bin; `make postgres` installs it), initdb in a
temporary folder, a free loopback port, password authentication, stopped and removed afterwards.

PostgreSQL refuses to run as root: then the server runs as the `postgres` user that the package
creates (through runuser), in a folder given to that user.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

USER = "smsledger"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message says why and what to install."""


@dataclasses.dataclass(frozen=True)
class PostgresServer:
    """A running server: libpq words without a password (`conninfo`), and the password, which a
    client passes through PGPASSWORD."""

    host: str
    port: int
    user: str
    password: str
    bindir: Path

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"dbname={dbname} host={self.host} port={self.port} user={self.user}"

    def env(self) -> dict[str, str]:
        """The environment of a client (psql, a subprocess of a test) of this server."""
        return {**os.environ, "PGPASSWORD": self.password}

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        psql = shutil.which("psql") or str(self.bindir / "psql")
        done = subprocess.run([psql, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", self.conninfo(dbname), "-c", sql],
                              env=self.env(), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def create_database(self, prefix: str = "lake") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.psql(f"create database {name}")
        return name


def find_bindir() -> Path:
    """The folder of initdb and pg_ctl: SMSLEDGER_PG_BINDIR, else the newest
    /usr/lib/postgresql/N/bin, else initdb on PATH."""
    if os.environ.get("SMSLEDGER_PG_BINDIR"):
        bindir = Path(os.environ["SMSLEDGER_PG_BINDIR"])
        if not (bindir / "initdb").exists():
            raise PostgresUnavailable(f"SMSLEDGER_PG_BINDIR={bindir} has no initdb")
        return bindir
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install -y postgresql")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a new server on a free loopback port and stop it (and remove its files) afterwards."""
    bindir = find_bindir()
    as_root = os.geteuid() == 0
    run_as: list[str] = []
    if as_root:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no `postgres` user to run the server as "
                                      "(Debian's postgresql package creates it)") from None
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root and there is no runuser to start the server as `postgres`")
        run_as = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="smsledger-pg-"))
    password = secrets.token_urlsafe(16)
    try:
        if as_root:
            os.chown(base, owner.pw_uid, owner.pw_gid)
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        if as_root:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        data = base / "data"
        # Local socket connections trusted (only the owner reaches the socket folder), TCP ones
        # by password: the tests' clients go over TCP, as a real deployment's do.
        init = subprocess.run(
            [*run_as, str(bindir / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(pwfile),
             "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C"],
            capture_output=True, text=True, timeout=120)
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip().splitlines()[-1:]}")
        pwfile.unlink()
        for _ in range(5):  # a free port can be taken between finding it and binding it
            port = _free_port()
            options = (f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
                       "-c max_connections=200 -c shared_buffers=32MB")
            start = subprocess.run(
                [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "-t", "60", "start"],
                capture_output=True, text=True, timeout=120)
            if start.returncode == 0:
                break
        else:
            log = (base / "log").read_text(errors="replace") if (base / "log").exists() else start.stderr
            raise PostgresUnavailable(f"pg_ctl start failed: {log.strip().splitlines()[-1:]}")
        try:
            yield PostgresServer("127.0.0.1", port, USER, password, bindir)
        finally:
            subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
    finally:
        shutil.rmtree(base, ignore_errors=True)
