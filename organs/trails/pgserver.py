"""A throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl``) for the trail store's tests and benchmark.

``EmbeddedPostgres()`` finds the server binaries (``pg_ctl`` on PATH, then ``pg_config --bindir``,
then ``/usr/lib/postgresql/<version>/bin``, newest first, and ``/usr/local/pgsql/bin``), makes a
cluster in a fresh temporary folder, starts it on 127.0.0.1 and a free port with trust
authentication, and removes it all on ``close()``. PostgreSQL refuses to run as root, so under root
the cluster is made and run as the ``postgres`` user. ``create_database(name)`` returns the dsn of a
new, empty database. Nothing here touches a PostgreSQL the machine already runs.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from nervous.server import free_port

#: Folders (glob patterns) searched after PATH and pg_config, newest version first.
SEARCH_DIRS = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin")


class PostgresError(RuntimeError):
    """No PostgreSQL server binaries were found, or the cluster did not come up."""


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def find_bindir() -> Path:
    """The folder holding initdb and pg_ctl; PostgresError naming every place looked in."""
    candidates: list[Path] = []
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(Path(found).parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    for pattern in SEARCH_DIRS:
        candidates += [Path(p) for p in sorted(glob.glob(pattern), key=_version_key, reverse=True)]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    searched = ["pg_ctl on PATH", "pg_config --bindir", *SEARCH_DIRS]
    raise PostgresError(
        "no PostgreSQL server found (initdb and pg_ctl); looked in: " + ", ".join(searched)
        + "; install one, e.g. apt-get install postgresql"
    )


class EmbeddedPostgres:
    """One PostgreSQL cluster in a temporary folder, owned by this object."""

    def __init__(self, port: int | None = None, start_timeout_s: float = 60.0) -> None:
        self.bindir = find_bindir()
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresError(
                    "PostgreSQL refuses to run as root and there is no 'postgres' user to run it as"
                ) from None
            self.user = "postgres"
        self.root = Path(tempfile.mkdtemp(prefix="nimmerverse-pg-"))
        self.data = self.root / "data"
        self.running = False

    @property
    def dsn(self) -> str:
        """The dsn of the cluster's default database."""
        return self.database_dsn("postgres")

    def database_dsn(self, name: str) -> str:
        """The dsn of one database of this cluster."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, *args: str, timeout: float) -> None:
        kwargs: dict[str, Any] = {"user": self.user, "group": self.user} if self.user else {}
        try:
            done = subprocess.run(
                [str(self.bindir / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout,
                cwd=self.root, **kwargs,
            )
        except subprocess.TimeoutExpired:
            raise PostgresError(f"{args[0]} did not finish within {timeout:g} s") from None
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            raise PostgresError(f"{args[0]} failed (exit {done.returncode}): {lines[-1]}")

    def start(self) -> EmbeddedPostgres:
        """Make the cluster (first time) and start it; PostgresError with the reason if it fails."""
        if self.running:
            return self
        if self.user:
            shutil.chown(self.root, self.user, self.user)
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--no-instructions", timeout=120)
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-o", options,
                  "-w", "-t", str(int(self.start_timeout_s)), "start", timeout=self.start_timeout_s + 10)
        self.running = True
        return self

    def stop(self) -> None:
        """Stop the cluster (fast shutdown); safe to call twice."""
        if self.running:
            self.running = False
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=60)

    def create_database(self, name: str) -> str:
        """Create an empty database and return its dsn."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"database name {name!r}: lower-case letters, digits and '_' only")
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.database_dsn(name)

    def close(self) -> None:
        """Stop the cluster and remove its folder."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
