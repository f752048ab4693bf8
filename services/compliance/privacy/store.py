"""Privacy's keys in SQLite: `<data>/compliance/privacy.db`. The only SQL here.

Shredding overwrites the wrapped key with NULL under `secure_delete` (SQLite zeroes the freed
bytes) and then truncates the WAL, so the destroyed key survives in no page of the file.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from libs.storage.sqlite import Migration, SqliteDatabase
from libs.timestamps import epoch_us, from_epoch_us
from services.compliance.privacy.model import StoredDataKey

MIGRATIONS = (
    Migration(1, """
CREATE TABLE data_keys (
    subject TEXT PRIMARY KEY,
    key_id TEXT NOT NULL UNIQUE,
    wrapped BLOB,
    create_us INTEGER NOT NULL,
    shred_us INTEGER,
    CHECK ((wrapped IS NULL) = (shred_us IS NOT NULL))
);
"""),
)


class SqlitePrivacyStore:
    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database
        with database.reading() as connection:
            connection.execute("PRAGMA secure_delete=ON")

    @classmethod
    def open(cls, data_root: Path) -> SqlitePrivacyStore:
        database = SqliteDatabase(data_root / "compliance" / "privacy.db")
        database.migrate(MIGRATIONS)
        return cls(database)

    def close(self) -> None:
        self._db.close()

    def data_key(self, subject: str) -> StoredDataKey | None:
        with self._db.reading() as connection:
            row = connection.execute("SELECT subject, key_id, wrapped, create_us, shred_us FROM data_keys"
                                     " WHERE subject = ?", (subject,)).fetchone()
        return None if row is None else _stored(row)

    def add_data_key(self, key: StoredDataKey) -> StoredDataKey:
        with self._db.transaction() as tx:
            tx.execute("INSERT INTO data_keys (subject, key_id, wrapped, create_us, shred_us) VALUES (?, ?, ?, ?, ?)"
                       " ON CONFLICT (subject) DO NOTHING",
                       (key.subject, key.key_id, key.wrapped, epoch_us(key.create_time),
                        None if key.shred_time is None else epoch_us(key.shred_time)))
            row = tx.execute("SELECT subject, key_id, wrapped, create_us, shred_us FROM data_keys WHERE subject = ?",
                             (key.subject,)).fetchone()
        return _stored(row)

    def shred_data_key(self, subject: str, key_id: str, now: dt.datetime) -> bool:
        with self._db.transaction() as tx:
            shredded = tx.execute("UPDATE data_keys SET wrapped = NULL, shred_us = ? WHERE subject = ? AND key_id = ?"
                                  " AND wrapped IS NOT NULL", (epoch_us(now), subject, key_id)).rowcount == 1
        if shredded:
            self._truncate_wal()
        return shredded

    def _truncate_wal(self) -> None:
        # The WAL still holds the page as it was before the shred; checkpoint it away.
        connection = sqlite3.connect(str(self._db.path), timeout=30.0)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()


def _stored(row: sqlite3.Row) -> StoredDataKey:
    return StoredDataKey(row["subject"], row["key_id"], row["wrapped"], from_epoch_us(row["create_us"]),
                         None if row["shred_us"] is None else from_epoch_us(row["shred_us"]))
