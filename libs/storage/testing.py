"""Fixtures that run a store's tests on both engines: SQLite, and a real PostgreSQL server
started for the test session.

A package's conftest imports them:

    from libs.storage.testing import database_engine, postgres_server  # noqa: F401

and a test (or a fixture that opens a store) that takes `database_engine` runs twice:
once on SQLite files under its `tmp_path`, once with `LIMELIGHT_DATABASE_URL` naming a
database of its own on the session's server. Where the server cannot be started the
PostgreSQL half is skipped with the reason, except under CI (`CI` set), where it fails:
CI must never pass without having run it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.ports import free_port
from libs.storage.database import DATABASE_URL_ENV
from libs.storage.postgres_cluster import ClusterUnavailable, PostgresCluster

ENGINES = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresCluster]:
    # Directly under /tmp: when we are root the server runs as `postgres`, which must reach it.
    root = Path(tempfile.mkdtemp(prefix="limelight-pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
    cluster = PostgresCluster(root=root, port=free_port(), durable=False)
    process: subprocess.Popen[bytes] | None = None
    try:
        cluster.initialise()
        process = subprocess.Popen(cluster.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        cluster.wait_until_accepting(process)
    except (ClusterUnavailable, OSError, subprocess.CalledProcessError) as error:
        _stop(process)
        shutil.rmtree(root, ignore_errors=True)
        reason = f"PostgreSQL could not be started for the tests: {error}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield cluster
    finally:
        _stop(process)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=ENGINES)
def database_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """'sqlite' or 'postgres'; on PostgreSQL, the stores this test opens live in a database of its own."""
    engine = str(request.param)
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    if engine == "postgres":
        server: PostgresCluster = request.getfixturevalue("postgres_server")
        name = f"test_{uuid.uuid4().hex[:16]}"
        server.create_database(name)
        monkeypatch.setenv(DATABASE_URL_ENV, server.url.rsplit("/", 1)[0] + f"/{name}")
    return engine


def _fresh(root: str) -> os.PathLike[str]:
    from pathlib import Path

    return Path(root) / "cluster"


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()  # SIGTERM: PostgreSQL's smart shutdown; a throwaway server has no clients left
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
