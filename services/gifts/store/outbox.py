"""The gifts database's audit outbox as the shared shipper reads it (`libs.audit.outbox`).

The ledger writes events into the outbox in the same transaction as the money they
describe (`unit.py`). The shipper reads them here and moves what compliance acknowledged
into the archive of delivered events, on a connection of its own: SQLite serialises those small writes with the
ledger's writer, which holds the lock only while committing and may live in another
process (the ledger process), so they cannot go through its committer. On PostgreSQL every
replica's shipper reads the one outbox: two may send the same event, which compliance takes
once by its id, and acknowledging it twice moves it once.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from libs.audit.outbox import DatabaseAuditOutbox
from libs.clock import Clock, utc_now
from libs.storage.database import Database
from services.gifts.store.schema import open_ledger_database


class GiftsAuditOutbox(DatabaseAuditOutbox):
    """The shared outbox, except that an acknowledged event moves into `audit_delivered`
    instead of vanishing: gifts keeps every audit record it wrote (schema migration 2)."""

    def __init__(self, database: Database, *, clock: Clock = utc_now) -> None:
        self._own_database = database
        self._delivery_clock = clock
        super().__init__(self._own_database, clock=clock)

    def acknowledge(self, event_ids: Collection[str]) -> None:
        delivered_at = self._delivery_clock().isoformat()
        with self._own_database.transaction() as tx:
            for event_id in event_ids:
                tx.execute("INSERT INTO audit_delivered (event_id, record, delivered_at) "
                           "SELECT event_id, record, ? FROM audit_outbox WHERE event_id = ? "
                           "ON CONFLICT (event_id) DO NOTHING", (delivered_at, event_id))
                tx.execute("DELETE FROM audit_outbox WHERE event_id = ?", (event_id,))

    @classmethod
    def of_service(cls, root: Path | None = None) -> GiftsAuditOutbox:
        return cls(open_ledger_database(root))

    def close(self) -> None:
        self._own_database.close()
