"""Fixtures that run a store's tests on both engines: SQLite, and a real PostgreSQL server
started for the test session.

A package's conftest imports them:

    from libs.storage.testing import database_engine, postgres_server  # noqa: F401

and a test (or a fixture that opens a store) that takes `database_engine` runs twice:
once on SQLite files under its `tmp_path`, once with `LIMELIGHT_DATABASE_URL` naming a
database of its own on the session's server.

The server is a throwaway cluster the fixture starts, or, when `LIMELIGHT_TEST_POSTGRES_URL`
names one, that server: `tools/test.sh` starts one for all Bazel targets (`python -m
libs.storage.testing`), because a test in Bazel's sandbox cannot run a process as the
`postgres` user PostgreSQL needs when we are root. Where no server can be had, the
PostgreSQL half is skipped with the reason, except under CI (`CI` set), where it fails:
CI must never pass without having run it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql

from libs.ports import free_port
from libs.storage.database import DATABASE_URL_ENV
from libs.storage.postgres_cluster import ClusterUnavailable, PostgresCluster, create_database

ENGINES = ("sqlite", "postgres")
TEST_SERVER_ENV = "LIMELIGHT_TEST_POSTGRES_URL"


@dataclass
class PostgresServer:
    url: str
    """A role on it that may create databases; the URL names its default database."""
    _recycled: list[str] = field(default_factory=list)

    def fresh_database(self) -> str:
        """The URL of an empty database for one test alone.

        Creating a database copies a template (half a second on a busy machine), so one whose
        test has finished is emptied and handed out again instead (`recycle`).
        """
        if self._recycled:
            return self._recycled.pop()
        name = f"test_{uuid.uuid4().hex[:16]}"
        create_database(self.url, name)
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def recycle(self, database_url: str) -> None:
        """Empty a test's database (every schema, and whatever connection it left open) for the next test."""
        name = database_url.rsplit("/", 1)[1]
        with psycopg.connect(database_url, autocommit=True) as connection:
            others = "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
            connection.execute(f"SELECT pg_terminate_backend(pid) {others}", (name,))
            deadline = time.monotonic() + 10
            # A terminated session lets go of its advisory locks only once its process is gone.
            while _count(connection, f"SELECT COUNT(*) {others}", name) and time.monotonic() < deadline:
                time.sleep(0.02)
            schemas = [row[0] for row in connection.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
                "AND nspname NOT IN ('information_schema', 'public')")]
            for schema in schemas:
                connection.execute(pgsql.SQL("DROP SCHEMA {} CASCADE").format(pgsql.Identifier(schema)))
        self._recycled.append(database_url)


@dataclass
class ThrowawayServer:
    """A cluster in a temporary directory, without fsync: fast to start and to write."""

    cluster: PostgresCluster
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls) -> ThrowawayServer:
        # Directly under /tmp: when we are root the server runs as `postgres`, which must reach it.
        root = Path(tempfile.mkdtemp(prefix="limelight-pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
        cluster = PostgresCluster(root=root, port=free_port(), durable=False)
        process: subprocess.Popen[bytes] | None = None
        try:
            cluster.initialise()
            process = subprocess.Popen(cluster.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
            cluster.wait_until_accepting(process)
            cluster.create_database()
        except BaseException:
            if process is not None:
                _stop(process)
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cls(cluster, process)

    def stop(self) -> None:
        _stop(self.process)
        shutil.rmtree(self.cluster.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    given = os.environ.get(TEST_SERVER_ENV)
    if given:
        yield PostgresServer(given)
        return
    try:
        server = ThrowawayServer.start()
    except (ClusterUnavailable, OSError, subprocess.CalledProcessError) as error:
        reason = f"PostgreSQL could not be started for the tests: {error}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield PostgresServer(server.cluster.url)
    finally:
        server.stop()


@pytest.fixture(params=ENGINES)
def database_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """'sqlite' or 'postgres'; on PostgreSQL, the stores this test opens live in a database of its own."""
    engine = str(request.param)
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    if engine == "sqlite":
        yield engine
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    database_url = server.fresh_database()
    monkeypatch.setenv(DATABASE_URL_ENV, database_url)
    yield engine
    server.recycle(database_url)


@contextmanager
def database_setting(database_url: str) -> Iterator[None]:
    """`LIMELIGHT_DATABASE_URL` set to `database_url` (unset when empty) inside the block only."""
    previous = os.environ.pop(DATABASE_URL_ENV, None)
    if database_url:
        os.environ[DATABASE_URL_ENV] = database_url
    try:
        yield
    finally:
        os.environ.pop(DATABASE_URL_ENV, None)
        if previous is not None:
            os.environ[DATABASE_URL_ENV] = previous


def _count(connection: psycopg.Connection[Any], query: str, name: str) -> int:
    row = connection.execute(query, (name,)).fetchone()
    return int(row[0]) if row else 0


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # The whole group (runuser and the server under it): SIGINT is PostgreSQL's fast shutdown,
    # which does not wait for the clients a throwaway server may still have.
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    """`python -m libs.storage.testing`: a throwaway server for a whole test run (tools/test.sh).
    Prints its URL on the first line, then serves until SIGTERM or SIGINT."""
    server = ThrowawayServer.start()
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    print(server.cluster.url, flush=True)
    try:
        stopping.wait()
    finally:
        server.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
