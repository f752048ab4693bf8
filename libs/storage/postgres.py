"""PostgreSQL behind the same store interface as SQLite (`libs.storage.database`).

Each store is one schema of the database `LIMELIGHT_DATABASE_URL` names, reached through
a psycopg 3 connection pool (`LIMELIGHT_DATABASE_POOL` connections per store and process,
default 4). psycopg 3 rather than asyncpg: the stores run their transactions on plain
threads (the group committer's writer, asyncio's executor for reads), which psycopg's
synchronous API and pool serve directly, while asyncpg would need an event loop per
thread; `tools/bench/postgres_driver.py` measures the two side by side.

- **Writers.** `transaction()` takes the transaction-scoped advisory lock of its schema
  first, so writers of one store run one at a time across every replica, as they do on
  SQLite. The lock goes with the transaction: a replica that dies mid-transaction frees
  it, and the next writer carries on.
- **Readers.** `reading()` is a REPEATABLE READ, READ ONLY transaction: one snapshot, and
  never a lock that a writer waits for.
- **SQL.** Store code writes SQLite's `?` placeholders; they are rewritten to psycopg's
  once per statement text. Statements run often are prepared by the server (psycopg
  prepares a statement text after its fifth use).
- **Migrations.** `<schema>.schema_version` holds the version; replicas starting together
  migrate one at a time under a session advisory lock.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import RowMaker
from psycopg_pool import ConnectionPool

from libs.storage.database import IntegrityError, Migration, MigrationError, Parameters, check_versions

POOL_SIZE_ENV = "LIMELIGHT_DATABASE_POOL"
DEFAULT_POOL_SIZE = 4
log = logging.getLogger(__name__)
_SCHEMA_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_MIGRATION_LOCK_SALT = 0x6D6967  # apart from the writers' lock of the same schema
_SESSION_LOCK_SALT = 0x736573
SESSION_LOCK_CHECK_SECONDS = 1.0


class Row(tuple[Any, ...]):
    """A result row read by position or by column name, like `sqlite3.Row`."""

    _columns: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._columns[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._columns)


def _row_factory(cursor: psycopg.Cursor[Any]) -> RowMaker[Row]:
    return _row_class(tuple(column.name for column in cursor.description or ()))


@lru_cache(maxsize=4096)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    columns: dict[str, int] = {}
    for index, name in enumerate(names):
        columns.setdefault(name, index)  # the first of two same-named columns, as sqlite3.Row
    return type("Row", (Row,), {"_columns": columns, "__slots__": ()})


@lru_cache(maxsize=4096)
def _pyformat(statement: str, named: bool) -> str:
    """SQLite's `?` (or `:name`) placeholders as psycopg's `%s` (or `%(name)s`); a literal `%` doubled.

    Quoted text ('...', "...") is left alone.
    """
    out: list[str] = []
    for index, part in enumerate(re.split(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")", statement)):
        if index % 2:  # a quoted literal or identifier
            out.append(part.replace("%", "%%"))
            continue
        part = part.replace("%", "%%")
        part = re.sub(r"(?<!:):([A-Za-z_]\w*)", r"%(\1)s", part) if named else part.replace("?", "%s")
        out.append(part)
    return "".join(out)


def _translate(statement: str, parameters: Parameters) -> str:
    return _pyformat(statement, isinstance(parameters, dict))


class PostgresTransaction:
    """One pooled connection inside an open transaction; it cannot commit on its own."""

    def __init__(self, connection: psycopg.Connection[Row]) -> None:
        self._connection = connection

    def execute(self, sql: str, parameters: Parameters = ()) -> psycopg.Cursor[Row]:
        try:
            return self._connection.execute(_translate(sql, parameters), parameters or None)
        except psycopg.errors.IntegrityError as error:
            raise IntegrityError(str(error)) from error

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> psycopg.Cursor[Row]:
        cursor = self._connection.cursor()
        try:
            cursor.executemany(_pyformat(sql, False), rows)
        except psycopg.errors.IntegrityError as error:
            raise IntegrityError(str(error)) from error
        return cursor


class PostgresDatabase:
    engine = "postgres"
    commit_failure_is_fatal = False

    def __init__(self, url: str, *, schema: str, pool_size: int | None = None) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"not a schema name: {schema!r}")
        self.schema = schema
        self._writer_lock_key = _lock_key(schema)
        self._url = url
        size = pool_size or int(os.environ.get(POOL_SIZE_ENV) or DEFAULT_POOL_SIZE)
        self._pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            url,
            min_size=1,
            max_size=size,
            kwargs={"autocommit": True, "row_factory": _row_factory, "options": f"-c search_path={schema}"},
            name=f"limelight-{schema}",
            open=False,
        )
        self._pool.open(wait=True, timeout=30.0)
        self._closed = threading.Event()

    @property
    def schema_version(self) -> int:
        with self._pool.connection() as connection:
            return _schema_version(connection)

    def migrate(self, migrations: Sequence[Migration]) -> int:
        check_versions(migrations)
        with self._pool.connection() as connection:
            migration_lock = self._writer_lock_key ^ _MIGRATION_LOCK_SALT
            connection.execute("SELECT pg_advisory_lock(%s)", (migration_lock,))
            try:
                # Once, under the lock: two replicas creating it at once would collide on its name.
                connection.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(self.schema)))
                connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
                current = _schema_version(connection)
                if current > len(migrations):
                    raise MigrationError(
                        f"schema {self.schema} is at version {current}, newer than this code ({len(migrations)})"
                    )
                for migration in migrations[current:]:
                    with connection.transaction():
                        connection.execute(migration.text_for(self.engine).encode())
                        connection.execute("DELETE FROM schema_version")
                        connection.execute("INSERT INTO schema_version VALUES (%s)", (migration.version,))
                return _schema_version(connection)
            finally:
                connection.execute("SELECT pg_advisory_unlock(%s)", (migration_lock,))

    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        """A write transaction, alone among this store's writers everywhere; it rolls back
        unless the block completes."""
        with self._pool.connection() as connection:
            connection.execute("BEGIN")
            try:
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (self._writer_lock_key,))
                yield PostgresTransaction(connection)
            except BaseException:
                _roll_back(connection)
                raise
            connection.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[PostgresTransaction]:
        with self._pool.connection() as connection:
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield PostgresTransaction(connection)
            finally:
                _roll_back(connection)

    def open_reader(self) -> PostgresDatabase:
        return self

    def session_lock(self, name: str) -> AdvisorySessionLock:
        return AdvisorySessionLock(self._url, _lock_key(f"{self.schema}:{name}") ^ _SESSION_LOCK_SALT)

    def reclaim_freed_space(self, table: str) -> None:
        """VACUUM marks the old row versions' space free for reuse (their bytes stay until it is
        reused, and in the WAL until it is recycled: see the privacy area's README)."""
        with self._pool.connection() as connection:  # autocommit: VACUUM runs outside a transaction
            connection.execute(pgsql.SQL("VACUUM {}").format(pgsql.Identifier(table)))

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._pool.close()


class AdvisorySessionLock:
    """A session-level advisory lock on a connection of its own, kept for the process's life.

    The lock lasts as long as that session, so when the holder's process dies (or its
    connection breaks) the server frees it and the next replica to ask takes it. `held()`
    asks the server at most once per `SESSION_LOCK_CHECK_SECONDS` (the holder whether its
    session lives, the others whether the lock is free), so a caller asking after every
    batch rarely pays a round trip, and a hand-over takes at most that long. A holder whose
    connection broke may believe itself the holder for up to that long while another took
    over: work done under the lock must tolerate that overlap (the audit log signs under
    the writer lock, and its schema refuses a checkpoint that does not grow the log).
    """

    def __init__(self, url: str, key: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._url, self._key, self._clock = url, key, clock
        self._connection: psycopg.Connection[tuple[Any, ...]] | None = None
        self._holding = False
        self._checked_at = 0.0

    def held(self) -> bool:
        now = self._clock()
        if self._connection is not None and now - self._checked_at < SESSION_LOCK_CHECK_SECONDS:
            return self._holding
        try:
            if self._connection is None or self._connection.closed:
                self._holding = False
                self._connection = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
            if self._holding:
                self._connection.execute("SELECT 1")  # still our session, so still our lock
            else:
                row = self._connection.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
                self._holding = bool(row and row[0])
        except psycopg.Error:
            log.warning("a session lock's connection failed; asking again later", exc_info=True)
            self.release()
            return False
        self._checked_at = now
        return self._holding

    def release(self) -> None:
        self._holding = False
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()


def _roll_back(connection: psycopg.Connection[Any]) -> None:
    if not connection.closed:
        connection.execute("ROLLBACK")


def _schema_version(connection: psycopg.Connection[Any]) -> int:
    exists = connection.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = connection.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def _lock_key(schema: str) -> int:
    """A stable 63-bit advisory lock key per schema (the same in every replica)."""
    return zlib.crc32(schema.encode()) | (0x4C49 << 32)
