"""A PostgreSQL server of our own in a data directory: for `limelight up` without a
`LIMELIGHT_DATABASE_URL`, and for the tests' throwaway servers.

Debian's `postgresql` package provides the binaries (`/usr/lib/postgresql/<version>/bin`).
The server listens on loopback only, on a port of our choosing, with its Unix socket in
the data directory; its one role authenticates by SCRAM password, which is kept in an
owner-only file beside the data. PostgreSQL refuses to run as root, so when we are root
the cluster belongs to the package's `postgres` user.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

ROLE = "limelight"
DATABASE = "limelight"
START_TIMEOUT = 60.0


class ClusterUnavailable(RuntimeError):
    """PostgreSQL's server programs are not installed here, or the server did not start."""


def server_binaries() -> Path:
    """The newest installed PostgreSQL's bin directory."""
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                       key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0)
    if installed:
        return installed[-1].parent
    found = shutil.which("postgres")
    if found is None:
        raise ClusterUnavailable("PostgreSQL's server is not installed (Debian: apt-get install postgresql)")
    return Path(found).parent


@dataclass
class PostgresCluster:
    """A data-directory cluster: made by `initdb` on first use, then started as a child process."""

    root: Path
    port: int
    durable: bool = True  # False (tests): no fsync, so a throwaway server starts and writes fast
    max_connections: int = 400

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    @property
    def url(self) -> str:
        password = quote(self.password_file.read_text().strip(), safe="")
        return f"postgresql://{ROLE}:{password}@127.0.0.1:{self.port}/{DATABASE}"

    def command(self) -> list[str]:
        """The server in the foreground (the caller supervises it), as the cluster's owner."""
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "max_connections": str(self.max_connections),
            "fsync": "on" if self.durable else "off",
            "synchronous_commit": "on" if self.durable else "off",
            "full_page_writes": "on" if self.durable else "off",
        }
        options = [f"--{name}={value}" for name, value in settings.items()]
        return [*_as_owner(), str(server_binaries() / "postgres"), "-D", str(self.data_dir), *options]

    @classmethod
    def for_platform(cls, data_root: Path, port: int) -> PostgresCluster:
        """The platform's own cluster: `<data>/postgres`, or, when we are root (and the cluster
        belongs to `postgres`, who may not reach into the private data directory), a directory
        of its own under that user's home, named after the data directory."""
        if os.geteuid() != 0:
            return cls(root=data_root / "postgres", port=port)
        digest = hashlib.sha256(str(data_root.resolve()).encode()).hexdigest()[:16]
        home = Path(pwd.getpwnam("postgres").pw_dir) / "limelight"
        if not home.exists():
            home.mkdir(mode=0o700, parents=True)
            shutil.chown(home, "postgres", "postgres")
        return cls(root=home / digest, port=port)

    def initialise(self) -> None:
        """`initdb` once; later calls find the cluster made and do nothing."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.password_file.write_text(secrets.token_urlsafe(24))
        os.chmod(self.password_file, 0o600)
        _give_to_owner(self.root)
        subprocess.run(
            [*_as_owner(), str(server_binaries() / "initdb"), "-D", str(self.data_dir), "-U", ROLE,
             f"--pwfile={self.password_file}", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
             *([] if self.durable else ["--no-sync"])],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def create_database(self) -> None:
        """The platform's database, made on first use."""
        create_database(self.url, DATABASE)

    def accepting(self) -> bool:
        ready = [str(server_binaries() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(ready, check=False).returncode == 0

    def wait_until_accepting(self, process: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not self.accepting():
            if process is not None and process.poll() is not None:
                raise ClusterUnavailable(f"postgres exited with status {process.returncode} while starting")
            if time.monotonic() > deadline:
                raise ClusterUnavailable(f"postgres did not accept connections within {START_TIMEOUT:.0f} s")
            time.sleep(0.1)


def _as_owner() -> list[str]:
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise ClusterUnavailable("running as root without runuser to start PostgreSQL as its own user")
    return [runuser, "-u", "postgres", "--"]


def _give_to_owner(root: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(root / "password", "postgres", "postgres")


def create_database(server_url: str, name: str) -> None:
    """Create the database `name` on the server `server_url` reaches, unless it exists."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"not a database name: {name!r}")
    with psycopg.connect(server_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')
