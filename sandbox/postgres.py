"""A throw-away PostgreSQL server on 127.0.0.1, for the sandbox, tests and benchmarks.

It runs Debian's PostgreSQL binaries (``initdb``, ``pg_ctl``) on a data
directory of its own and a free port. PostgreSQL refuses to run as root, so
as root the server runs as the ``postgres`` user. It can be stopped and
started again on the same port and data, which is how the outage tests take
the store away and bring it back.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from .hubprocess import free_port


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def server_bin() -> Path:
    """The directory of PostgreSQL's server binaries (initdb, pg_ctl, postgres)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise PostgresUnavailable(
        "PostgreSQL's server is not installed (no initdb): `apt-get install postgresql`"
    )


class LocalPostgres:
    """``with LocalPostgres(directory) as pg: pg.url`` — a running server and a database."""

    def __init__(
        self, directory: Path | None = None, database: str = "audit", port: int | None = None
    ) -> None:
        # As root the server runs as `postgres`, which must be able to reach its
        # directory: pytest's and most private temp directories are root-only.
        self._owned = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="sovhub-pg-"))
        if self._owned:
            self.directory.chmod(0o755)
        self.data = self.directory / "data"
        self.sockets = self.directory / "run"
        self.database = database
        self.port = port or free_port()
        self.bin = server_bin()
        self.user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """A libpq URL of the database (trust authentication on loopback: no password)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)  # noqa: S603
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {(done.stderr or done.stdout).strip()}")
        return done

    def init(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if self.user:
            shutil.chown(self.directory, self.user)
            shutil.chown(self.sockets, self.user)
        if not (self.data / "PG_VERSION").exists():
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C.UTF-8",
            )  # fmt: skip

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.sockets}"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.directory / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        # pg_ctl -w returned once the server accepts connections.
        self.create_database(self.database)

    def create_database(self, name: str) -> str:
        """Create database ``name`` if it is missing; its URL."""
        made = subprocess.run(  # noqa: S603
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
             "-U", "postgres", name],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if made.returncode != 0 and "already exists" not in made.stderr:
            raise RuntimeError(f"createdb {name}: {made.stderr.strip()}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def require_password(self, role: str) -> None:
        """Make ``role`` authenticate with its password over TCP (SCRAM); others stay trusted."""
        hba = self.data / "pg_hba.conf"
        rule = f"host all {role} 127.0.0.1/32 scram-sha-256\n"
        text = hba.read_text()
        if rule not in text:
            hba.write_text(rule + text)  # the first matching line wins
            self._run("pg_ctl", "-D", str(self.data), "reload")
            time.sleep(0.5)  # the postmaster re-reads pg_hba.conf asynchronously

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def __enter__(self) -> LocalPostgres:
        self.init()
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
        if self._owned:
            shutil.rmtree(self.directory, ignore_errors=True)
