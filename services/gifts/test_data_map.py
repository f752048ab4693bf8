from __future__ import annotations

from pathlib import Path

from libs.privacy.data_map import schema_after, undeclared_columns
from services.gifts.data_map import DATA_MAP
from services.gifts.store.room import ROOM_MIGRATIONS
from services.gifts.store.schema import MIGRATIONS


def test_every_personal_column_of_the_ledger_database_is_in_the_data_map(tmp_path: Path) -> None:
    # Gifts keeps two databases: the ledger's and the LIVE rooms' (store/room.py); one record covers both.
    schema = {**schema_after(MIGRATIONS, tmp_path / "ledger"), **schema_after(ROOM_MIGRATIONS, tmp_path / "room")}
    assert undeclared_columns(DATA_MAP, schema) == []
