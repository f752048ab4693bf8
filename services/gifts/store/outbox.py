"""The audit outbox as its shipper sees it: events after a bookmark, and the bookmark itself.

The ledger writes events into `audit_outbox` in the same transaction as the money they
describe (`unit.py`). The shipper reads them here and moves its own bookmark: a tiny write
on a connection of its own, which SQLite serialises with the ledger's writer (that one
holds the lock only while committing). Nothing here touches ledger data.
"""

from __future__ import annotations

import json
from pathlib import Path

from libs.storage.sqlite import SqliteDatabase
from services.gifts.model.audit import RecordedAuditEvent
from services.gifts.store import rows
from services.gifts.store.schema import database_path


class AuditOutboxStore:
    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self._database = SqliteDatabase(path, synchronous=synchronous)

    @classmethod
    def of_service(cls, root: Path | None = None) -> AuditOutboxStore:
        return cls(database_path(root))

    def close(self) -> None:
        self._database.close()

    def events_after(self, sequence: int, limit: int) -> list[RecordedAuditEvent]:
        with self._database.reading() as connection:
            found = connection.execute("SELECT sequence, event FROM audit_outbox WHERE sequence > ? "
                                       "ORDER BY sequence LIMIT ?", (sequence, limit)).fetchall()
        return [RecordedAuditEvent(row[0], rows.audit_event(json.loads(row[1]))) for row in found]

    def log_id(self) -> str:
        """The outbox's own random name, fixed when the database was created."""
        with self._database.reading() as connection:
            return str(connection.execute("SELECT log_id FROM audit_delivery").fetchone()[0])

    def delivered_through(self) -> int:
        with self._database.reading() as connection:
            return int(connection.execute("SELECT delivered_through FROM audit_delivery").fetchone()[0])

    def mark_delivered(self, sequence: int) -> None:
        with self._database.transaction() as tx:
            tx.execute("UPDATE audit_delivery SET delivered_through = MAX(delivered_through, ?)", (sequence,))

    def set_aside(self, sequence: int, error: str) -> None:
        """Compliance refused this event for good: keep it aside with why, and go past it."""
        with self._database.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO audit_set_aside (sequence, error) VALUES (?, ?)", (sequence, error))
            tx.execute("UPDATE audit_delivery SET delivered_through = MAX(delivered_through, ?)", (sequence,))
