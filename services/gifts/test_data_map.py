from __future__ import annotations

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
