"""What a store needs of its database, whichever engine is underneath.

Two engines satisfy it: SQLite in WAL mode (`libs.storage.sqlite`), the embedded default,
one file per store under the data directory; and PostgreSQL (`libs.storage.postgres`),
chosen by one setting, `LIMELIGHT_DATABASE_URL`, with one schema per store, so several
replicas of a service share their state. `open_database` picks the engine.

Store code writes one SQL text for both (`?` placeholders, `INSERT ... ON CONFLICT`,
`RETURNING`); what differs between the engines (column types, triggers) lives in each
`Migration`'s two texts. Both engines give store code the same two guarantees:

- **One writer at a time per store.** A write transaction (`transaction()`) excludes every
  other writer of the same store, in this process and, on PostgreSQL, in every replica
  (SQLite's BEGIN IMMEDIATE; a transaction-scoped advisory lock on PostgreSQL). What a
  writer reads stays true until it commits, so a decision made on a read and written in
  the same transaction is safe: there is never a read-then-write race between replicas.
- **Consistent reads.** `reading()` sees one committed snapshot and never blocks writers.

Invariants that belong to the data (no negative balance, no oversold stock, one effect
per request id) are constraints and triggers in the schema, on both engines.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from libs.storage.paths import data_dir

DATABASE_URL_ENV = "LIMELIGHT_DATABASE_URL"

Parameters = Sequence[object] | dict[str, object]


@dataclass(frozen=True)
class Migration:
    """One schema step. Versions start at 1 and increase by one; never edit a landed step.

    `sql` is SQLite's text; `postgres` is PostgreSQL's, when the two differ (types, triggers).
    """

    version: int
    sql: str
    postgres: str | None = None

    def text_for(self, engine: str) -> str:
        if engine == "postgres":
            if self.postgres is None:
                raise MigrationError(f"migration {self.version} has no PostgreSQL text")
            return self.postgres
        return self.sql


def check_versions(migrations: Sequence[Migration]) -> None:
    if [m.version for m in migrations] != list(range(1, len(migrations) + 1)):
        raise MigrationError(f"migration versions must be 1..{len(migrations)} in order")


class MigrationError(RuntimeError):
    pass


class IntegrityError(Exception):
    """A constraint or trigger of the schema refused a write (UNIQUE, CHECK, append-only).

    Raised by both engines in place of their drivers' own classes. On PostgreSQL the
    transaction can only go on after `ROLLBACK TO` a savepoint taken before the statement.
    """


class Row(Protocol):
    """One result row: by position or by column name."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> list[str]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...  # Row | None: both drivers type their rows loosely

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Transaction(Protocol):
    """The connection as seen inside one transaction; it cannot commit on its own."""

    def execute(self, sql: str, parameters: Parameters = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> Cursor: ...


class SessionLock(Protocol):
    def held(self) -> bool:
        """Whether this process holds the lock now: taken if free, checked if held."""
        ...

    def release(self) -> None:
        """Give it up (the process is stopping)."""
        ...


class HeldAlone:
    """The session lock of an engine whose store one process owns (SQLite): always held."""

    def held(self) -> bool:
        return True

    def release(self) -> None:
        pass


class Database(Protocol):
    engine: str
    """'sqlite' or 'postgres'."""

    commit_failure_is_fatal: bool
    """Whether a failed COMMIT leaves the connection unusable for good (SQLite after a failed
    fsync: the page cache may no longer match the disk) rather than for that one batch."""

    @property
    def schema_version(self) -> int: ...

    def migrate(self, migrations: Sequence[Migration]) -> int: ...

    def transaction(self) -> AbstractContextManager[Transaction]: ...

    def reading(self) -> AbstractContextManager[Transaction]: ...

    def open_reader(self) -> Database:
        """A handle for reads that never wait behind this one's writer (SQLite: a second
        connection to the file; PostgreSQL: the same pool)."""
        ...

    def session_lock(self, name: str) -> SessionLock:
        """A lock one process of all the store's replicas holds at a time, for as long as it lives
        (electing the one replica that does some work: the audit log's signer)."""
        ...

    def reclaim_freed_space(self, table: str) -> None:
        """Make what was deleted or overwritten in `table` unreadable from the files, as far as the
        engine allows (crypto-shredding): SQLite checkpoints its WAL away; PostgreSQL VACUUMs."""
        ...

    def close(self) -> None: ...


def database_url() -> str:
    return os.environ.get(DATABASE_URL_ENV, "")


def open_database(
    service: str, migrations: Sequence[Migration], *, area: str = "", synchronous: str = "FULL",
    root: Path | None = None,
) -> Database:
    """A service's store (`area`: one of several stores of one service), its schema brought up to date.

    SQLite: `<root (the data directory)>/<service>/<area or service>.db`. PostgreSQL (`LIMELIGHT_DATABASE_URL`):
    the schema `<service>` or `<service>_<area>` of that database (a `-` in the area becomes
    `_`), created if needed.
    """
    url = database_url()
    database: Database
    if url:
        from libs.storage.postgres import PostgresDatabase

        database = PostgresDatabase(url, schema=f"{service}_{area}".replace("-", "_") if area else service)
    else:
        from libs.storage.sqlite import SqliteDatabase

        database = SqliteDatabase((root or data_dir()) / service / f"{area or service}.db", synchronous=synchronous)
    try:
        database.migrate(migrations)
    except BaseException:
        database.close()
        raise
    return database
