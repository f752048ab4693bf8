from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from libs.storage.database import IntegrityError, Migration, MigrationError, open_database
from libs.storage.sqlite import SqliteDatabase

MIGRATIONS = [
    Migration(1, "CREATE TABLE account (id TEXT PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0));"),
    Migration(2, "ALTER TABLE account ADD COLUMN label TEXT NOT NULL DEFAULT '';\nCREATE INDEX account_label ON account(label);"),
]


def test_opens_in_wal_mode_and_applies_every_migration(tmp_path: Path) -> None:
    database = open_database("demo", MIGRATIONS, root=tmp_path)
    assert database.schema_version == 2
    with database.reading() as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (tmp_path / "demo" / "demo.db").exists()


def test_a_service_databases_directory_is_the_platform_users_alone(tmp_path: Path) -> None:
    """Whoever opens the store (not only the CLI, which sets a strict umask) gets an owner-only directory."""
    previous = os.umask(0o022)
    try:
        SqliteDatabase(tmp_path / "nested" / "demo" / "demo.db").close()
    finally:
        os.umask(previous)
    for directory in (tmp_path / "nested", tmp_path / "nested" / "demo"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_reopening_applies_only_new_migrations(tmp_path: Path) -> None:
    open_database("demo", MIGRATIONS[:1], root=tmp_path).close()
    database = open_database("demo", MIGRATIONS, root=tmp_path)
    with database.transaction() as tx:
        tx.execute("INSERT INTO account (id, balance, label) VALUES ('a', 1, 'x')")
    assert database.schema_version == 2


def test_refuses_a_database_newer_than_the_code(tmp_path: Path) -> None:
    open_database("demo", MIGRATIONS, root=tmp_path).close()
    with pytest.raises(MigrationError):
        open_database("demo", MIGRATIONS[:1], root=tmp_path)


def test_a_failed_migration_leaves_the_previous_schema(tmp_path: Path) -> None:
    broken = [MIGRATIONS[0], Migration(2, "ALTER TABLE account ADD COLUMN x TEXT;\nTHIS IS NOT SQL;")]
    database = SqliteDatabase(tmp_path / "x.db")
    with pytest.raises(sqlite3.OperationalError):
        database.migrate(broken)
    assert database.schema_version == 1
    with database.reading() as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(account)")]
    assert "x" not in columns


def test_a_transaction_rolls_back_when_a_constraint_fails(tmp_path: Path) -> None:
    database = open_database("demo", MIGRATIONS, root=tmp_path)
    with database.transaction() as tx:
        tx.execute("INSERT INTO account (id, balance) VALUES ('a', 5)")
    with pytest.raises(IntegrityError):
        with database.transaction() as tx:
            tx.execute("UPDATE account SET balance = balance + 3 WHERE id = 'a'")
            tx.execute("UPDATE account SET balance = balance - 10 WHERE id = 'a'")
    with database.reading() as connection:
        assert connection.execute("SELECT balance FROM account").fetchone()[0] == 5
