from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from libs.privacy.data_map import schema_after, undeclared_columns
from services.gifts.data_map import DATA_MAP
from services.gifts.store.legacy_outbox import DRAINED_TABLES
from services.gifts.store.room import ROOM_MIGRATIONS, open_room_database
from services.gifts.store.schema import MIGRATIONS, open_ledger_database


def test_every_personal_column_of_the_ledger_database_is_in_the_data_map(tmp_path: Path) -> None:
    # Gifts keeps two databases: the ledger's and the LIVE rooms' (store/room.py); one record covers both.
    schema = {**schema_after(MIGRATIONS, tmp_path / "ledger"), **schema_after(ROOM_MIGRATIONS, tmp_path / "room")}
    assert undeclared_columns(DATA_MAP, schema) == []


@pytest.mark.parametrize("database_engine", ["postgres"], indirect=True)
def test_the_postgresql_schema_has_the_tables_and_columns_of_the_sqlite_one(tmp_path: Path, database_engine: str) -> None:
    """So the data map (checked on SQLite above) covers PostgreSQL too, and no migration's two texts drifted apart."""
    for migrations, opened in ((MIGRATIONS, open_ledger_database(tmp_path)), (ROOM_MIGRATIONS, open_room_database(tmp_path))):
        try:
            with opened.reading() as tx:
                found = tx.execute("SELECT table_name, column_name FROM information_schema.columns "
                                   "WHERE table_schema = current_schema() AND table_name <> 'schema_version' "
                                   "ORDER BY table_name, ordinal_position").fetchall()
        finally:
            opened.close()
        columns: dict[str, list[str]] = {}
        for table, column in found:
            columns.setdefault(table, []).append(column)
        sqlite = schema_after(migrations, tmp_path / f"sqlite-{len(migrations)}")  # as migrated, before any drain
        assert columns == {table: names for table, names in sqlite.items() if table not in DRAINED_TABLES}


@pytest.mark.parametrize("database_engine", ["postgres"], indirect=True)
def test_the_postgresql_schema_has_the_indexes_of_the_sqlite_one(tmp_path: Path, database_engine: str) -> None:
    """The named indexes (the unique ones carry invariants: a pending transfer resolved once, one
    open LIVE per host, a session's feed numbered once) on both engines; constraints' own aside."""
    for migrations, opened in ((MIGRATIONS, open_ledger_database(tmp_path)), (ROOM_MIGRATIONS, open_room_database(tmp_path))):
        try:
            with opened.reading() as tx:
                on_postgres = {row[0] for row in tx.execute(
                    "SELECT index_class.relname FROM pg_index JOIN pg_class AS index_class "
                    "ON index_class.oid = pg_index.indexrelid JOIN pg_namespace ON pg_namespace.oid = index_class.relnamespace "
                    "WHERE pg_namespace.nspname = current_schema() "
                    "AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE pg_constraint.conindid = pg_index.indexrelid)")}
        finally:
            opened.close()
        scratch = tmp_path / f"indexes-{len(migrations)}"
        schema_after(migrations, scratch)
        with sqlite3.connect(scratch / "data-map-schema.db") as connection:
            on_sqlite = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
        connection.close()
        assert on_postgres == on_sqlite
